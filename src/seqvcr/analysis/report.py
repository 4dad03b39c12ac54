"""``seqvcr report RUN_DIR... --out DIR``: one Markdown report with the paper's figures and tables.

For every run, on one test file (``--data``, default: the run's ``task.test_file``; ``--limit N``: its
first N problems), the report measures exact match and accuracy per answer position by greedy decoding
(what ``seqvcr eval`` prints), the matrix entropy of every layer (what ``seqvcr entropy`` prints; also at
each snapshot of ``train.snapshot_steps``) and the decoding throughput (best of 5, the runs interleaved;
T_norm relative to the vanilla run), and reads the run's ``metrics.jsonl``, ``config.yaml`` and
``result.json``. A saved result that is up to date (``seqvcr.outputs``: the same weights, data,
settings and seqvcr version) is reused and named in the report: one in the run directory, one an
earlier report kept next to it (:func:`saved_analysis`), or one in ``DIR/analysis/<run>/``.

Every input is checked before anything is written; each file is then written atomically as soon as it
is made, ``report.md`` last, so an interrupted report never looks complete and the same command picks
up its measurements. ``seqvcr.reporting.run.OUTPUTS`` is what DIR gets; other files there are left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqvcr import config as C
from seqvcr import outputs
from seqvcr.analysis.layer_entropy import compute_layer_entropy, sample_indices, write_entropy
from seqvcr.atomic import write_json_atomic
from seqvcr.errors import DataError, RunDirError
from seqvcr.outputs import ENTROPY_JSON
from seqvcr.reporting.run import (
    OUTPUTS,
    PER_RUN_DIR,
    REPORT_FILE,
    RunAnalysis,
    majority_baseline,
    write_figures_and_tables,
    write_report,
)
from seqvcr.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    load_run_config,
    read_result,
    saved_snapshot_steps,
    snapshot_file,
    weights_file,
)

__all__ = ["OUTPUTS", "REPORT_FILE", "RunAnalysis", "analyze_run", "build_report", "check_out_dir",
           "majority_baseline", "read_metrics"]

RUN_EVAL = "eval.json"  # DIR/analysis/<run>/eval.json: the run's evaluation ...
RUN_PREDICTIONS = "predictions.jsonl"  # ... and its predictions, one JSON object per example
TEST_EVAL = "test_eval.json"  # a published run's re-scoring (seqvcr.experiments.publish)


def _report_progress(progress: bool, text: str) -> None:
    if progress:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (a truncated last line, from a killed run, is skipped)."""
    p = Path(run_dir) / METRICS_FILE
    out = []
    for line in p.read_text(errors="replace").splitlines() if p.is_file() else []:
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def check_out_dir(out: str | os.PathLike[str], force: bool) -> Path:
    """Refuse an output directory that already holds a report (unless ``force``) or is a file."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise RunDirError(f"{p}: exists and is not a directory")
    if (p / REPORT_FILE).exists() and not force:
        raise RunDirError(f"{p}: already holds a report ({REPORT_FILE}); use --force to overwrite it")
    return p


def _unique_names(run_dirs: Sequence[Path]) -> list[str]:
    """A name per run: its directory's, prefixed with its parent's (and numbered) where two share it."""
    names = [rd.resolve().name for rd in run_dirs]
    counts, seen, out = Counter(names), Counter[str](), []
    for rd, n in zip(run_dirs, names):
        cand = f"{rd.resolve().parent.name}-{n}" if counts[n] > 1 else n
        seen[cand] += 1
        out.append(cand if counts[n] == 1 or seen[cand] == 1 else f"{cand}-{seen[cand]}")
    return out


def saved_analysis(rd: Path) -> list[Path]:
    """Where an earlier report next to the run kept its measurements: ``OUT/analysis/NAME/`` for a run at
    ``OUT/runs/NAME`` (the layout of ``seqvcr demo``)."""
    home = rd.resolve()
    kept = home.parent.parent / PER_RUN_DIR / home.name
    return [kept] if home.parent.name == "runs" and kept.is_dir() else []


def _snapshot_entropy(step: int) -> str:
    """Where a report keeps the entropy of a run's snapshot of ``step``, under the run's analysis dir."""
    return f"snapshots/step_{step:06d}.entropy.json"


def _check_run(rd: Path, data_file: str | None) -> None:
    """Everything a run's analysis reads, read once before anything is written: its config, its weights
    (a truncated file is an error now, not after other runs were measured) and its test file."""
    from seqvcr.datafiles import resolve_data_path
    from seqvcr.runs import load_run
    from seqvcr.tasks import read_examples

    data = _data_file(rd, load_run_config(rd), data_file)
    read_examples(load_run(rd).task, resolve_data_path(data))


def _data_file(rd: Path, cfg: C.Config, data_file: str | None) -> str:
    """``data_file``, else the run's ``task.test_file`` (a DataError when it has none)."""
    data = data_file or cfg.task.test_file
    if not data:
        raise DataError(f"{rd}: the run's config has no task.test_file; pass --data FILE")
    return data


@dataclass
class _Measure:
    """One run's measurements on one data file, reused where an up-to-date result is saved (the run
    directory, an earlier report next to it, ``out``) and else made now, each written into ``out``."""

    rd: Path
    out: Path
    name: str
    data: str
    data_path: Path
    device: str
    progress: bool
    reuse: bool
    n_sequences: int | None
    kept: list[Path] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    reused: dict[str, str] = field(default_factory=dict)

    def say(self, text: str) -> None:
        _report_progress(self.progress, f"report: {self.name}: {text}")

    def evaluation(self, source: dict[str, Any], limit: int, precision: str) -> dict[str, Any]:
        """The evaluation (reused when up to date, else decoded now), written with its predictions."""
        from seqvcr.evaluation import evaluate_file

        rd, out = self.rd, self.out
        places = [rd / outputs.EVAL_DIR, rd / TEST_EVAL, *(d / RUN_EVAL for d in self.kept), out / RUN_EVAL]
        found = outputs.find_eval(places, source, limit=limit, precision=precision) if self.reuse else None
        if found is not None:
            ev, ev_path, preds_path = found
            if preds_path.resolve() != (out / RUN_PREDICTIONS).resolve():
                shutil.copyfile(preds_path, out / RUN_PREDICTIONS)
            self.reused["eval"] = str(ev_path)
            self.say(f"reusing the evaluation in {ev_path}")
        else:
            self.say(f"evaluating on {self.data}" + (f" (first {limit})" if limit else ""))
            ev = evaluate_file(str(rd), self.data, predictions=str(out / RUN_PREDICTIONS), device=self.device,
                               limit=limit, progress=self.progress)
        ev = {**ev, "predictions_file": RUN_PREDICTIONS}
        ev.pop("saved", None)
        write_json_atomic(out / RUN_EVAL, ev)
        self.say(f"exact match {ev['exact_match']:.4f} on {ev['n']} examples "
                 f"({ev['examples_per_s']:,.0f} examples/s); measuring layer entropy")
        return ev

    def entropy(self, step: int | None, places: list[Path], source: dict[str, Any]
                ) -> tuple[dict[str, Any], str]:
        """The entropy of the final weights (``step`` None) or of a snapshot, and the file it was
        reused from ("" when measured now)."""
        hit = None
        if self.reuse:
            hit = outputs.find_entropy(places, source, indices=self.indices, alpha=1.0, normalize=False)
        if hit is not None:
            return hit[0], str(hit[1])
        return compute_layer_entropy(str(self.rd), self.data, n_sequences=self.n_sequences,
                                     device=self.device, progress=self.progress, step=step), ""

    def final_entropy(self, source: dict[str, Any]) -> dict[str, Any]:
        """The entropy of the final weights, written into ``out`` unless it was reused from there."""
        rd, out = self.rd, self.out
        ent, where = self.entropy(None, [rd / ENTROPY_JSON, *(d / ENTROPY_JSON for d in self.kept),
                                         out / ENTROPY_JSON], source)
        if where:
            self.reused["entropy"] = where
            self.say(f"reusing the entropy in {where}")
        if not (where and Path(where).resolve() == (out / ENTROPY_JSON).resolve()):
            write_entropy(ent, out)
        means = ", ".join(f"L{L['layer']} {L['mean']:.3f}" for L in ent["layers"])
        self.say(f"entropy ({ent['n']} sequences, {ent['seconds']:.1f}s): {means}")
        return ent

    def snapshot_entropies(self, final_step: int, final: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        """(step, entropy) of every snapshot and of the final weights, by step; [] without snapshots."""
        steps: list[tuple[int, dict[str, Any]]] = []
        for k in [k for k in saved_snapshot_steps(self.rd) if k != final_step]:
            here = self.out / _snapshot_entropy(k)
            src = outputs.source(self.rd, snapshot_file(self.rd, k), k, self.data, self.data_path)
            res, where = self.entropy(k, [outputs.analysis_home(self.rd, k) / ENTROPY_JSON,
                                          *(d / _snapshot_entropy(k) for d in self.kept), here], src)
            if where:
                self.reused[f"entropy step {k}"] = where
            if not (where and Path(where).resolve() == here.resolve()):
                here.parent.mkdir(exist_ok=True)
                write_json_atomic(here, res)
            steps.append((k, res))
            self.say(f"entropy at step {k}" + (" (reused)" if where else ""))
        return sorted(steps + [(final_step, final)], key=lambda p: p[0]) if steps else []


def analyze_run(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, name: str | None = None,
                data_file: str | None = None, n_sequences: int | None = 1000, device: str = "auto",
                progress: bool = True, limit: int = 0, reuse: bool = True) -> RunAnalysis:
    """Evaluate one run and measure its layer entropy (also at each snapshot) on ``data_file``, writing
    the per-run files into ``out_dir`` as each is made; with ``reuse``, up-to-date saved results are
    taken instead (``RunAnalysis.reused`` says which)."""
    from seqvcr.checkpoints import read_safetensors
    from seqvcr.datafiles import resolve_data_path
    from seqvcr.runs import build_task, load_run, precision_used, select_device
    from seqvcr.tasks import read_examples

    rd = Path(run_dir)
    cfg = load_run_config(rd)
    data = _data_file(rd, cfg, data_file)
    data_path = resolve_data_path(data)
    m = _Measure(rd, Path(out_dir), name or rd.resolve().name, str(data), data_path, device, progress, reuse,
                 n_sequences, kept=saved_analysis(rd))
    m.out.mkdir(parents=True, exist_ok=True)
    weights = weights_file(rd)
    step = int(read_safetensors(weights, "model", prefixes=())[1]["step"])  # the header only
    source = outputs.source(rd, weights, step, str(data), data_path)
    ev = m.evaluation(source, limit, precision_used(select_device(device), cfg.train.precision))
    m.indices = sample_indices(len(read_examples(build_task(cfg), data_path)), n_sequences, 0)
    ent = m.final_entropy(source)
    shutil.copyfile(rd / CONFIG_FILE, m.out / CONFIG_FILE)
    lines = (m.out / RUN_PREDICTIONS).read_text().splitlines()
    result = read_result(rd)
    params = (result or {}).get("params")
    params = load_run(rd).model.num_params() if params is None else params
    return RunAnalysis(m.name, rd, cfg, result, read_metrics(rd), ev, ent,
                       [json.loads(line) for line in lines if line.strip()], m.data, params,
                       steps=m.snapshot_entropies(step, ent), reused=m.reused, limit=limit)


def measure_throughput(runs: Sequence[RunAnalysis], repeats: int = 5, batch_size: int = 256,
                       device: str = "auto", progress: bool = True, limit: int = 0) -> None:
    """Decoding speed of every run on its test file (its first ``limit`` problems with a limit):
    ``repeats`` timed greedy decodings per run, the runs interleaved (run 1, run 2, ..., run 1, ...) so
    that a busy moment of the machine does not fall on one run only; the fastest repeat counts
    (``run.throughput``). T_norm compares these."""
    from seqvcr.datafiles import resolve_data_path
    from seqvcr.evaluation import evaluate
    from seqvcr.progress import ProgressBar
    from seqvcr.runs import load_run, select_device
    from seqvcr.sequences import encode_examples
    from seqvcr.tasks import read_examples

    dev = select_device(device)
    prepared = []
    for r in runs:
        loaded = load_run(r.run_dir, device=dev)
        examples = read_examples(loaded.task, resolve_data_path(r.data_file))
        if limit:
            examples = examples[:limit]
        prepared.append((loaded, encode_examples(loaded.fmt, examples).to(dev)))
    times: list[list[float]] = [[] for _ in runs]
    total = repeats * sum(len(d) for _, d in prepared)
    with ProgressBar(total, "throughput", unit="examples", enabled=progress) as bar:
        for _ in range(repeats):
            for i, (loaded, data) in enumerate(prepared):
                res = evaluate(
                    loaded.model, loaded.fmt, data, batch_size=batch_size,
                    precision=loaded.config.train.precision, on_batch=bar.update,
                )
                times[i].append(res.seconds)
    for r, ts, (_, data) in zip(runs, times, prepared):
        best = min(ts)
        r.throughput = {"examples_per_s": len(data) / best if best > 0 else float("inf"), "seconds": ts,
                        "repeats": repeats, "batch_size": batch_size, "n": len(data)}


def _clear(out: Path) -> None:
    """Remove an earlier report's outputs from ``out`` (report.md first, so the directory never looks
    complete); ``analysis/`` stays: its measurements are reused where they are up to date."""
    (out / REPORT_FILE).unlink(missing_ok=True)
    for name in OUTPUTS:
        p = out / name
        if name == PER_RUN_DIR or not p.exists():
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def build_report(run_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                 force: bool = False, data_file: str | None = None, n_sequences: int | None = 1000,
                 device: str = "auto", command: str | None = None, title: str | None = None, intro: str = "",
                 extra: Callable[[Sequence[RunAnalysis]], str] | None = None, progress: bool = True,
                 limit: int = 0, throughput: bool = True, reuse: bool = True) -> Path:
    """Analyse ``run_dirs`` and write the report into ``out`` (module docstring); returns report.md's path.
    ``command`` is recorded as what made the report; ``intro`` (Markdown) goes under the title, then
    ``extra(runs)``, Markdown computed from the analysed runs (the demo's findings)."""
    out_dir = check_out_dir(out, force)
    if not run_dirs:
        raise RunDirError("report: no run directories given")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise DataError(f"--limit: expected an integer >= 0 (0: every example), got {limit!r}")
    rds = [Path(p) for p in run_dirs]
    for rd in rds:
        if not rd.is_dir():
            raise RunDirError(f"{rd}: no such run directory")
    for rd in rds:  # every input, before anything is written
        _check_run(rd, data_file)
    names = _unique_names(rds)
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear(out_dir)
    runs = [
        analyze_run(rd, out_dir / PER_RUN_DIR / nm, name=nm, data_file=data_file, n_sequences=n_sequences,
                    device=device, progress=progress, limit=limit, reuse=reuse)
        for rd, nm in zip(rds, names)
    ]
    _report_progress(progress, "report: drawing figures and tables")
    made = write_figures_and_tables(out_dir, runs)
    if throughput:
        _report_progress(progress, "report: measuring decoding throughput (best of 5, runs interleaved)")
        measure_throughput(runs, device=device, progress=progress, limit=limit)
    if extra is not None:
        intro = (intro.rstrip() + "\n\n" if intro else "") + extra(runs)
    write_report(
        out_dir, runs, made, command=command, title=title, intro=intro, seconds=time.perf_counter() - t0,
        throughput=throughput,
    )
    _report_progress(progress, f"report: wrote {out_dir / REPORT_FILE}")
    return out_dir / REPORT_FILE
