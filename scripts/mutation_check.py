"""Mutation check: change one critical line of ``src/seqvcr`` at a time and require the tests to fail.

Each mutation below names a file, a text that must occur in it exactly once, its replacement, what the
change would do to users' results, and the test files that must catch it. The whole working tree is
copied once into a temporary directory (``src/`` in place is never touched, so an interruption cannot
leave the source broken); for each mutation the copy's file is changed, the listed test files run
against the copy (``PYTHONPATH=COPY/src``, checked through ``seqvcr.__file__`` before anything runs)
and the file is restored. A mutation is *killed* when a test fails (pytest exit status 1) and
*survived* when they all pass; any other outcome (collection error, timeout) is an *error*. First the
unmutated copy must pass every listed test file, else no result would mean anything.

    python scripts/mutation_check.py                    # every mutation; Markdown table on stdout
    python scripts/mutation_check.py --only em-always-true,hinge-no-relu
    python scripts/mutation_check.py --list             # the mutations, nothing run
    python scripts/mutation_check.py --out /tmp/mutation.md        # the table also in a file

Exit status 0 when every mutation is killed, 1 when one survives or errs, 2 when an original text is
not found exactly once (the list has gone stale). Tests run with one thread (``OMP_NUM_THREADS=1``)
and no cache, every listed test to the end (the table says how many of them fail). Uses the Python it
runs with: run it with the project's virtual environment (``.venv/bin/python
scripts/mutation_check.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: What is copied into the temporary tree: everything the tests read (sources, tests, configs, plans,
#: scripts, docs and examples, the README); not the virtual environment, git metadata or outputs.
COPY = ("src", "tests", "configs", "plans", "scripts", "docs", "examples", "results", "README.md",
        "pyproject.toml", "CITATION.cff", "LICENSE")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info")


@dataclass(frozen=True)
class Mutation:
    """One changed line: ``original`` (exactly once in ``file``) becomes ``replacement``."""

    id: str
    file: str  # relative to src/seqvcr
    original: str
    replacement: str
    what: str  # what the change would do to users' results
    tests: tuple[str, ...]  # test files or node ids (relative to tests/) of which one must fail


EVAL_TESTS = ("test_scores.py", "test_results_exact.py")
#: The tests that score trained runs (training, ``seqvcr eval``, a sweep, ``seqvcr report``, the demo)
#: against naive greedy decoding scored by hand (``tests/oracles.py``).
RUN_TESTS = ("test_training.py::test_train_writes_a_complete_run_dir",
             "test_training.py::test_cli_train_eval_roundtrip",
             "test_experiments.py::test_run_one_is_idempotent_and_resumes",
             "test_analysis.py::test_report_figures_tables_and_numbers",
             "test_demo.py::test_demo_smoke_end_to_end")
_TRAINED = ("    trained = (target_pos[None, :] >= prompt[:, None]) & "
            "(target_pos[None, :] < lengths[:, None])\n")
_FLOPS = "        return 6 * self.num_params(non_embedding=True) + 12 * cfg.n_layer * cfg.n_head * Q * T\n"
SEQVCR_TESTS = ("test_objectives.py",)
CI_TESTS = ("test_experiments.py::test_t_quantile_matches_tables",
            "test_experiments.py::test_report_aggregates_over_seeds")

MUTATIONS: tuple[Mutation, ...] = (
    # ---- exact match and accuracy per answer position (evaluation.score)
    Mutation("em-always-true", "evaluation.py",
             "        correct = list(pred) == list(gold)\n",
             "        correct = True\n",
             "every example correct: exact match 1.0 for any model", EVAL_TESTS + RUN_TESTS),
    Mutation("em-prefix-match", "evaluation.py",
             "        correct = list(pred) == list(gold)\n",
             "        correct = list(gold)[: len(pred)] == list(pred)\n",
             "a truncated answer (a prefix of the reference) counts as right", EVAL_TESTS + RUN_TESTS),
    Mutation("position-long-enough", "evaluation.py",
             "            hits[k] += k < len(pred) and pred[k] == g\n",
             "            hits[k] += k < len(pred)\n",
             "a position counts as right whenever the prediction is long enough (Fig. 6)",
             EVAL_TESTS + RUN_TESTS),
    Mutation("decode-drops-eos", "evaluation.py",
             "                row = row[: row.index(eos) + 1]\n",
             "                row = row[: row.index(eos)]\n",
             "decoded outputs lose their closing `<eos>`: no answer ever counts", EVAL_TESTS),
    # ---- reading the answer (SequenceFormat.extract_answer)
    Mutation("answer-first-cot-end", "sequences.py",
             "            last = len(toks) - 1 - toks[::-1].index(self.task.cot_end)\n",
             "            last = toks.index(self.task.cot_end)\n",
             "the answer is read after the first CoT separator, not the last (arithmetic CoT)", EVAL_TESTS),
    Mutation("answer-without-eos", "sequences.py",
             "        if eos not in toks:\n            return []\n",
             "        if eos not in toks:\n            toks = [*toks, eos]\n",
             "an output cut at the decoding budget counts as an answer", EVAL_TESTS),
    Mutation("answer-without-cot-end", "sequences.py",
             "                return toks if self.task.cot_end == self.task.question_end else []\n",
             "                return toks\n",
             "a multiplication CoT output without `####` counts as an answer", EVAL_TESTS),
    # ---- which tokens are trained and which states enter Seq-VCR (sequences.make_batch, seqvcr_positions)
    Mutation("lm-mask-prompt", "sequences.py",
             _TRAINED,
             _TRAINED.replace(">= prompt[:, None]", ">= prompt[:, None] - 1"),
             "the LM loss also trains the last prompt token (question end / pause end)",
             ("test_training.py",)),
    Mutation("lm-mask-padding", "sequences.py",
             _TRAINED,
             "    trained = target_pos[None, :] >= prompt[:, None]\n",
             "the LM loss trains the padding after `<eos>`", ("test_training.py",)),
    Mutation("seqvcr-mask-final-eos", "sequences.py",
             "    mask = torch.arange(x.shape[1], device=ids.device)[None, :] < (lengths - 1)[:, None]\n",
             "    mask = torch.arange(x.shape[1], device=ids.device)[None, :] < lengths[:, None]\n",
             "the final `<eos>` of shorter sequences enters the Seq-VCR statistics", ("test_training.py",)),
    Mutation("seqvcr-answer-positions", "sequences.py",
             "    answer = y != IGNORE_INDEX  # (B, T) states that predict a trained token\n",
             "    answer = mask  # (B, T) states that predict a trained token\n",
             "`seqvcr.positions=answer` regularises every position", ("test_training.py",)),
    # ---- the training objective (terms.py, summed by training.TrainModule)
    Mutation("loss-half-seqvcr", "terms.py",
             "        return TermValue(sv.loss, logs)\n",
             "        return TermValue(0.5 * sv.loss, logs)\n",
             "training adds 0.5 * Seq-VCR loss: the paper's objective changed",
             ("test_training.py", "test_bench.py::test_the_step_benchmark_times_the_training_objective")),
    Mutation("loss-positions-ignored", "terms.py",
             "        sv = self.seqvcr(h, counted, gather=self.gather)\n",
             "        sv = self.seqvcr(h, mask, gather=self.gather)\n",
             "`seqvcr.positions` has no effect", ("test_training.py",)),
    Mutation("loss-padding-in-seqvcr", "terms.py",
             "        sv = self.seqvcr(h, counted, gather=self.gather)\n",
             "        sv = self.seqvcr(h, None, gather=self.gather)\n",
             "padding and the final `<eos>` enter the Seq-VCR statistics in training", ("test_training.py",)),
    Mutation("running-sum-no-carry", "terms.py",
             "        carry = c // 10\n",
             "        carry = 0\n",
             "the running-sum targets lose the carry: the auxiliary loss regresses the wrong quantity",
             ("test_controls.py",)),
    Mutation("running-sum-wrong-layer", "terms.py",
             "        h = out.hidden_states[self.layer]  # (B, T, n_embd)\n",
             "        h = out.hidden_states[-1]  # (B, T, n_embd)\n",
             "`running_sum.layer` has no effect: the head always reads the last layer",
             ("test_controls.py",)),
    Mutation("running-sum-unweighted", "terms.py",
             "        return TermValue(self.weight * mse, {\"running_sum_mse\": mse})\n",
             "        return TermValue(mse, {\"running_sum_mse\": mse})\n",
             "`running_sum.weight` has no effect", ("test_controls.py",)),
    Mutation("icot-keeps-separator", "curriculum.py",
             "    removed = torch.where(to_remove >= n_cot, n_cot + 1, to_remove)  # (B,)\n",
             "    removed = torch.minimum(to_remove, n_cot)  # (B,)\n",
             "ICoT-SI never removes the CoT separator: training ends on a format evaluation never sees",
             ("test_controls.py",)),
    Mutation("icot-no-optimizer-reset", "curriculum.py",
             "        return self.reset and grew and self.scheduled(step - 1) < self.longest_cot\n",
             "        return False\n",
             "`curriculum.reset_optimizer` has no effect: AdamW keeps its state as CoT tokens go",
             ("test_controls.py",)),
    Mutation("icot-no-smoothing", "curriculum.py",
             "        to_remove = (self.scheduled(step) + offset).to(self.data.ids.device)\n",
             "        to_remove = (self.scheduled(step) + 0 * offset).to(self.data.ids.device)\n",
             "removal smoothing (the random extra offset) has no effect", ("test_controls.py",)),
    Mutation("probe-biased-prediction", "analysis/probe.py",
             "    pred = (x_test - mx) @ w + my  # (m,)\n",
             "    pred = (x_test - mx) @ w + my + 0.5 * y_test.std()  # (m,)\n",
             "the probe's R^2 is computed from biased predictions", ("test_controls.py",)),
    Mutation("lm-loss-mean-over-all", "model.py",
             "            count = (targets != IGNORE_INDEX).sum().clamp(min=1)\n",
             "            count = targets.new_tensor(targets.numel())\n",
             "the LM loss is averaged over every position, ignored ones included",
             ("test_model.py", "test_training.py")),
    # ---- Seq-VCR, Eq. 3-4 (objectives)
    Mutation("cov-biased-normaliser", "objectives.py",
             "    denom = (n - 1.0).clamp(min=1.0)  # (T,)\n",
             "    denom = n.clamp(min=1.0)  # (T,)\n",
             "covariance with 1/N instead of the unbiased 1/(N-1)", SEQVCR_TESTS),
    Mutation("hinge-no-relu", "objectives.py",
             "    var_pos = torch.relu(1.0 - torch.sqrt(var + eta)).sum(-1)  # (T,)\n",
             "    var_pos = (1.0 - torch.sqrt(var + eta)).sum(-1)  # (T,)\n",
             "the variance hinge loses its max(0, .): large variances are rewarded", SEQVCR_TESTS),
    Mutation("hinge-halved", "objectives.py",
             "    var_pos = torch.relu(1.0 - torch.sqrt(var + eta)).sum(-1)  # (T,)\n",
             "    var_pos = torch.relu(1.0 - torch.sqrt(var + eta)).sum(-1) / 2  # (T,)\n",
             "VICReg's halved variance term instead of Eq. 3", SEQVCR_TESTS),
    Mutation("hinge-on-variance", "objectives.py",
             "    var_pos = torch.relu(1.0 - torch.sqrt(var + eta)).sum(-1)  # (T,)\n",
             "    var_pos = torch.relu(1.0 - (var + eta)).sum(-1)  # (T,)\n",
             "the hinge on the variance instead of the standard deviation", SEQVCR_TESTS),
    Mutation("norm-cov-1-over-T", "objectives.py",
             "    return var_pos.sum() / (t_eff * d), cov_pos.sum() / (t_eff * d)\n",
             "    return var_pos.sum() / (t_eff * d), cov_pos.sum() / t_eff\n",
             "the covariance term normalised by 1/T instead of 1/(T*d)", SEQVCR_TESTS),
    Mutation("norm-var-1-over-d", "objectives.py",
             "    return var_pos.sum() / (t_eff * d), cov_pos.sum() / (t_eff * d)\n",
             "    return var_pos.sum() / d, cov_pos.sum() / (t_eff * d)\n",
             "the variance term normalised by 1/d instead of 1/(T*d)", SEQVCR_TESTS),
    Mutation("norm-T-all-positions", "objectives.py",
             "        t_eff = counted.sum().clamp(min=1).to(x.dtype)  # no host sync\n",
             "        t_eff = float(t_len)\n",
             "T counts positions with fewer than 2 real tokens (padding rule)", SEQVCR_TESTS),
    Mutation("cov-keeps-diagonal", "objectives.py",
             "        return gram.pow(2).sum((-1, -2)) / denom.pow(2) - var.pow(2).sum(-1)  # (B,)\n",
             "        return gram.pow(2).sum((-1, -2)) / denom.pow(2)  # (B,)\n",
             "the covariance term includes the squared variances (the diagonal)", SEQVCR_TESTS),
    Mutation("mask-count-all-rows", "objectives.py",
             "        n = valid.sum(1).squeeze(-1).to(x.dtype)  # (T,) valid samples per position\n",
             "        n = torch.full((t_len,), float(n_seq), dtype=x.dtype, device=x.device)  # (T,)\n",
             "padded rows count in the mean and the 1/(n-1) of each position", SEQVCR_TESTS),
    Mutation("batch-time-norm", "objectives.py",
             "    covariance = _offdiag_sq_sum(xc, denom, var).sum() / d\n",
             "    covariance = _offdiag_sq_sum(xc, denom, var).sum() / (d * t_len)\n",
             "`over=batch_time`: the covariance term normalised by 1/(T*d) instead of 1/d", SEQVCR_TESTS),
    Mutation("lambdas-swapped", "objectives.py",
             "        loss = self.lambda1 * variance + self.lambda2 * covariance\n",
             "        loss = self.lambda2 * variance + self.lambda1 * covariance\n",
             "SeqVCR weighs the variance with lambda2 and the covariance with lambda1",
             ("test_objectives.py", "test_hf.py")),
    # ---- the Hugging Face plug-in (hf.SeqVCRPlugin)
    Mutation("plugin-ignores-mask", "hf.py",
             "        out = self.seqvcr(h, attention_mask)  # SeqVCROutput(loss, variance, covariance), "
             "scalars\n",
             "        out = self.seqvcr(h, None)  # SeqVCROutput(loss, variance, covariance), scalars\n",
             "the plug-in ignores `attention_mask`: padding enters the covariance", ("test_hf.py",)),
    Mutation("plugin-ignores-layer", "hf.py",
             "        h = hidden[self.layer]\n",
             "        h = hidden[-1]\n",
             "the plug-in always regularises the last layer", ("test_hf.py",)),
    # ---- entropy, Eq. 2 (entropy.matrix_entropy)
    Mutation("entropy-log2", "entropy.py",
             "            entropy = -torch.xlogy(p, p).sum(-1)  # 0 log 0 = 0\n",
             "            entropy = -torch.xlogy(p, p).sum(-1) / math.log(2)  # 0 log 0 = 0\n",
             "entropy in bits instead of the natural log", ("test_entropy.py", "test_analysis.py")),
    Mutation("entropy-no-trace", "entropy.py",
             "        p = eig / torch.where(total > 0, total, 1.0)  # (..., m) sums to 1 (or all 0)\n",
             "        p = eig  # (..., m) sums to 1 (or all 0)\n",
             "entropy of the raw eigenvalues, not divided by the trace",
             ("test_entropy.py", "test_analysis.py")),
    Mutation("entropy-normalised-bound", "entropy.py",
             "        bound = min(n - 1, d) if center else min(n, d)\n",
             "        bound = min(n - 1, d) if center else max(n, d)\n",
             "normalised entropy divided by log(max(n, d))", ("test_entropy.py", "test_analysis.py")),
    # ---- confidence intervals (reporting.stats)
    Mutation("ci-normal-not-t", "reporting/stats.py",
             "    half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)\n",
             "    half = Z95 * std / math.sqrt(n)\n",
             "the CI over a few seeds uses 1.96 instead of Student's t", CI_TESTS),
    Mutation("ci-dof-n", "reporting/stats.py",
             "    half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)\n",
             "    half = t_quantile(0.5 + confidence / 2.0, n) * std / math.sqrt(n)\n",
             "Student's t with n degrees of freedom instead of n - 1", CI_TESTS),
    Mutation("ci-std-biased", "reporting/stats.py",
             "    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))\n",
             "    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / n)\n",
             "the std over seeds with 1/n instead of 1/(n-1)", CI_TESTS),
    Mutation("ci-t-one-sided", "reporting/stats.py",
             "    target = 2.0 * p - 1.0  # two-sided mass\n",
             "    target = p  # two-sided mass\n",
             "t_quantile solves for the wrong tail mass", CI_TESTS),
    Mutation("ci-describe-sqrt-n", "reporting/stats.py",
             "    half = Z95 * std / math.sqrt(n)\n",
             "    half = Z95 * std / n\n",
             "the entropy CI (normal approximation) divides by n, not sqrt(n)", ("test_analysis.py",)),
    # ---- FLOPs (model.GPT.flops_per_token, used by the MFU benchmark)
    Mutation("flops-causal-halved", "model.py",
             _FLOPS,
             _FLOPS.replace("+ 12 *", "+ 6 *"),
             "the attention FLOPs halved: MFU wrong", ("test_model.py",)),
)


def check_originals(root: Path = ROOT) -> list[str]:
    """Problems with the list: an unknown id twice, a missing test file, or an original text that does
    not occur exactly once in its file (the source changed and the mutation no longer applies)."""
    problems = []
    seen = set()
    for m in MUTATIONS:
        if m.id in seen:
            problems.append(f"{m.id}: the id is used twice")
        seen.add(m.id)
        path = root / "src" / "seqvcr" / m.file
        count = path.read_text().count(m.original) if path.is_file() else 0
        if count != 1:
            problems.append(f"{m.id}: the original text occurs {count} times in src/seqvcr/{m.file}")
        if m.original == m.replacement:
            problems.append(f"{m.id}: the replacement is the original")
        for t in m.tests:
            if not (root / "tests" / t.split("::")[0]).is_file():
                problems.append(f"{m.id}: no test file tests/{t}")
    return problems


def line_of(m: Mutation, root: Path = ROOT) -> int:
    """The line number of the mutation's original text in its file."""
    text = (root / "src" / "seqvcr" / m.file).read_text()
    return text[: text.index(m.original)].count("\n") + 1


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _check_import(copy: Path) -> None:
    """Fail unless ``import seqvcr`` in the test environment reads the copy, not the installed tree."""
    out = subprocess.run([sys.executable, "-c", "import seqvcr; print(seqvcr.__file__)"], cwd=copy,
                         env=_env(copy), capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to((copy / "src").resolve()):
        raise SystemExit(f"mutation_check: the tests would import {out}, not the copy in {copy}")


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str, float]:
    """Run the tests in the copy; (pytest exit status, what failed -- the number of failed tests out of
    those run and the first of them -- or the last line of the output, seconds)."""
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rf",
           *(f"tests/{t}" for t in tests)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "timeout", time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.MULTILINE)
    if failed:
        counts = {k: int(v) for v, k in re.findall(r"(\d+) (failed|passed)", proc.stdout)}
        ran = counts.get("failed", 0) + counts.get("passed", 0)
        first = failed[0].removeprefix("tests/")
        return proc.returncode, f"{len(failed)}/{ran} failed, first `{first}`", seconds
    last = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, last[-1] if last else "", seconds


def make_copy(dest: Path) -> Path:
    """Copy what the tests need into ``dest/tree``."""
    tree = dest / "tree"
    tree.mkdir()
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=IGNORE)
        elif src.is_file():
            shutil.copy2(src, tree / name)
    return tree


def _machine() -> str:
    import torch

    return (f"{os.cpu_count()}-core {platform.machine()} CPU, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--only", default="", help="comma-separated mutation ids (default: all)")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per test run (default 900)")
    p.add_argument("--no-baseline", action="store_true", help="skip the run of the unmutated copy")
    p.add_argument("--out", default=None, help="also write the Markdown table to this file")
    args = p.parse_args(argv)

    problems = check_originals()
    if problems:
        print("mutation_check: the list is stale:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    chosen = list(MUTATIONS)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = sorted(set(wanted) - {m.id for m in MUTATIONS})
        if unknown:
            print(f"mutation_check: unknown id(s) {', '.join(unknown)}", file=sys.stderr)
            return 2
        chosen = [m for m in MUTATIONS if m.id in wanted]
    if args.list:
        for m in chosen:
            print(f"{m.id:26} src/seqvcr/{m.file}:{line_of(m)}  {m.what}  [{', '.join(m.tests)}]")
        return 0

    rows = []
    bad = 0
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seqvcr-mutation-") as tmp:
        copy = make_copy(Path(tmp))
        _check_import(copy)
        if not args.no_baseline:
            files = tuple(sorted({t for m in chosen for t in m.tests}))
            print(f"mutation_check: baseline: {len(files)} test files and tests on the unmutated copy",
                  file=sys.stderr)
            rc, detail, seconds = run_tests(copy, files, args.timeout)
            if rc != 0:
                print(f"mutation_check: the unmutated tests do not pass ({detail}); nothing is checked",
                      file=sys.stderr)
                return 1
            print(f"mutation_check: baseline passed in {seconds:.0f} s", file=sys.stderr)
        for m in chosen:
            path = copy / "src" / "seqvcr" / m.file
            original = path.read_text()
            path.write_text(original.replace(m.original, m.replacement, 1))
            try:
                rc, detail, seconds = run_tests(copy, m.tests, args.timeout)
            finally:
                path.write_text(original)
            result = {0: "SURVIVED", 1: "killed"}.get(rc, f"ERROR (exit {rc})")
            bad += result != "killed"
            where = f"src/seqvcr/{m.file}"  # by file: a line number goes stale with any edit above it
            print(f"mutation_check: {m.id}: {result} in {seconds:.1f} s ({detail or 'nothing failed'})",
                  file=sys.stderr)
            rows.append((m, where, result, detail if rc == 1 else "-", seconds))
    total = time.perf_counter() - t_start

    lines = [
        f"{len(rows)} mutations, {len(rows) - bad} killed, {bad} not killed; {total / 60:.1f} min on "
        f"{_machine()}, {date.today().isoformat()}.",
        "",
        "| mutation | file | what it would do | tests run | result | failing tests | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, where, result, detail, seconds in rows:
        tests = ", ".join(m.tests)
        lines.append(f"| `{m.id}` | `{where}` | {m.what} | {tests} | {result} | {detail} | {seconds:.0f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
