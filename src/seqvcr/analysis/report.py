"""``seqvcr report RUN_DIR... --out DIR``: one Markdown report with the paper's figures and tables.

For every run the report (re-)measures, on one test file (``--data``, default: the run's
``task.test_file``):

* exact match and accuracy per answer position by greedy decoding (``seqvcr.evaluation.evaluate_file``,
  exactly what ``seqvcr eval`` prints; the per-example predictions are kept),
* per-sequence and dataset-level matrix entropy of every layer
  (``seqvcr.analysis.layer_entropy.compute_layer_entropy``, exactly what ``seqvcr entropy`` prints),
* decoding throughput (examples/s of the evaluation above) and T_norm relative to the vanilla run,

and reads from the run directory the training curves (``metrics.jsonl``), the configuration
(``config.yaml``) and the run's facts (``result.json``: steps, seed, time, machine, command).

Output layout (``DIR``)::

    report.md               the report (written last: the report is complete iff it exists)
    summary.json            every number of the report, machine readable
    *.png                   entropy_per_layer, entropy_hist, position_accuracy, loss_curves
    *.md / *.csv            accuracy (Table 1 layout), positions, entropy, throughput
    analysis/<run>/         eval.json, predictions.jsonl, entropy.json/.csv, entropy_values.csv, config.yaml

Everything is first written to a temporary sibling directory, then moved into ``DIR`` with
``report.md`` last, so an interrupted report never looks complete. Other files in ``DIR`` are left
alone (the demo keeps its data, configs and runs next to its report). A ``DIR`` that already holds a
``report.md`` is refused unless ``force``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seqvcr import config as C
from seqvcr.analysis import plots, tables
from seqvcr.analysis.layer_entropy import compute_layer_entropy, write_entropy
from seqvcr.atomic import write_json_atomic
from seqvcr.errors import DataError, RunDirError
from seqvcr.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    describe_machine,
    load_run_config,
    machine_info,
    read_result,
)

__all__ = ["REPORT_FILE", "RunAnalysis", "analyze_run", "build_report", "check_out_dir", "read_metrics"]

REPORT_FILE = "report.md"
SUMMARY_FILE = "summary.json"
REPORT_MARK = "<!-- seqvcr run report -->"
PER_RUN_DIR = "analysis"  # DIR/analysis/<run>/: the per-run measurements
FIGURES = ("entropy_per_layer.png", "entropy_hist.png", "position_accuracy.png", "loss_curves.png")
TABLES = ("accuracy", "positions", "entropy", "throughput")
#: every entry a report writes into its directory
OUTPUTS = (
    REPORT_FILE,
    SUMMARY_FILE,
    PER_RUN_DIR,
    *FIGURES,
    *(f"{t}.{e}" for t in TABLES for e in ("md", "csv")),
)


@dataclass
class RunAnalysis:
    """Everything the report shows about one run."""

    name: str
    run_dir: Path
    config: C.Config
    result: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    eval: dict[str, Any]
    entropy: dict[str, Any]
    predictions: list[dict[str, Any]]
    data_file: str
    params: int | None
    throughput: dict[str, Any] | None = None  # best-of-k decoding speed (measure_throughput)

    @property
    def method(self) -> str:
        return self.config.method.name

    @property
    def pauses(self) -> int:
        return self.config.method.num_pauses or self.config.method.pauses

    @property
    def label(self) -> str:
        return (
            f"{self.name} ({tables.method_label(self.method, self.pauses)})"
            if self.name != self.method
            else tables.method_label(self.method, self.pauses)
        )


def _say(progress: bool, text: str) -> None:
    if progress:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (a truncated last line, from a killed run, is skipped)."""
    p = Path(run_dir) / METRICS_FILE
    if not p.is_file():
        return []
    out = []
    for line in p.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
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
    names = [rd.resolve().name for rd in run_dirs]
    counts = Counter(names)
    out: list[str] = []
    seen: Counter[str] = Counter()
    for rd, n in zip(run_dirs, names):
        if counts[n] > 1:
            cand = f"{rd.resolve().parent.name}-{n}"
            seen[cand] += 1
            out.append(cand if seen[cand] == 1 else f"{cand}-{seen[cand]}")
        else:
            out.append(n)
    return out


def analyze_run(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    data_file: str | None = None,
    n_sequences: int | None = 1000,
    device: str = "auto",
    progress: bool = True,
) -> RunAnalysis:
    """Evaluate one run and measure its layer entropy on ``data_file``; write the per-run files into
    ``out_dir`` (eval.json, predictions.jsonl, entropy.json/.csv, entropy_values.csv, config.yaml)."""
    from seqvcr.evaluation import evaluate_file

    rd = Path(run_dir)
    cfg = load_run_config(rd)
    name = name or rd.resolve().name
    data = data_file or cfg.task.test_file
    if not data:
        raise DataError(f"{rd}: the run's config has no task.test_file; pass --data FILE")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _say(progress, f"report: {name}: evaluating on {data}")
    ev = evaluate_file(str(rd), str(data), predictions=str(out / "predictions.jsonl"), device=device)
    write_json_atomic(out / "eval.json", ev)
    _say(
        progress,
        f"report: {name}: exact match {ev['exact_match']:.4f} on {ev['n']} examples "
        f"({ev['examples_per_s']:,.0f} examples/s); measuring layer entropy",
    )
    ent = compute_layer_entropy(str(rd), str(data), n_sequences=n_sequences, device=device)
    write_entropy(ent, out)
    shutil.copyfile(rd / CONFIG_FILE, out / CONFIG_FILE)
    lines = (out / "predictions.jsonl").read_text().splitlines()
    preds = [json.loads(line) for line in lines if line.strip()]
    result = read_result(rd)
    params = result.get("params") if result else None
    if params is None:
        from seqvcr.runs import load_run

        params = load_run(rd).model.num_params()
    means = ", ".join(f"L{L['layer']} {L['mean']:.3f}" for L in ent["layers"])
    _say(progress, f"report: {name}: entropy ({ent['n']} sequences, {ent['seconds']:.1f}s): {means}")
    return RunAnalysis(name, rd, cfg, result, read_metrics(rd), ev, ent, preds, str(data), params)


def measure_throughput(
    runs: Sequence[RunAnalysis],
    repeats: int = 5,
    batch_size: int = 256,
    device: str = "auto",
    progress: bool = True,
) -> None:
    """Decoding speed of every run on its test file: ``repeats`` timed greedy decodings per run, the
    runs interleaved (run 1, run 2, ..., run 1, ...) so that a busy moment of the machine does not
    fall on one run only; the fastest repeat counts (``run.throughput``). T_norm compares these."""
    from seqvcr.datafiles import resolve_data_path
    from seqvcr.evaluation import evaluate
    from seqvcr.runs import load_run, select_device
    from seqvcr.sequences import encode_examples
    from seqvcr.tasks import read_examples

    dev = select_device(device)
    prepared = []
    for r in runs:
        loaded = load_run(r.run_dir, device=dev)
        examples = read_examples(loaded.task, resolve_data_path(r.data_file))
        prepared.append((loaded, encode_examples(loaded.fmt, examples).to(dev)))
    times: list[list[float]] = [[] for _ in runs]
    for k in range(repeats):
        _say(progress, f"report: throughput, round {k + 1}/{repeats}")
        for i, (loaded, data) in enumerate(prepared):
            res = evaluate(
                loaded.model, loaded.fmt, data, batch_size=batch_size, precision=loaded.config.train.precision
            )
            times[i].append(res.seconds)
    for r, ts, (_, data) in zip(runs, times, prepared):
        best = min(ts)
        r.throughput = {
            "examples_per_s": len(data) / best if best > 0 else float("inf"),
            "seconds": ts,
            "repeats": repeats,
            "batch_size": batch_size,
            "n": len(data),
        }


def majority_baseline(predictions: Sequence[dict[str, Any]]) -> list[float]:
    """Accuracy per answer position of always answering that position's most frequent token."""
    targets = [str(p["target"]).split() for p in predictions]
    width = max((len(t) for t in targets), default=0)
    out = []
    for k in range(width):
        col = [t[k] for t in targets if k < len(t)]
        out.append(Counter(col).most_common(1)[0][1] / len(col) if col else 0.0)
    return out


def _position_note(runs: Sequence[RunAnalysis]) -> str:
    if all(r.config.task.name == "mult" for r in runs):
        return "1 = least significant digit"
    return ""


def _model_text(r: RunAnalysis) -> str:
    m = r.config.model
    params = f"{r.params / 1e6:.2f}M params" if r.params else "? params"
    base = f"GPT {m.n_layer} layers x {m.n_embd} wide, {m.n_head} heads, {params}"
    return base + (f", from {m.init_from}" if m.init_from else "")


def _config_text(r: RunAnalysis) -> str:
    c = r.config
    parts = [
        f"method {c.method.name}" + (f" ({c.method.num_pauses} pauses)" if c.method.num_pauses else ""),
        f"lr {c.optim.lr:g}",
        f"batch {c.optim.batch_size}",
        f"{c.optim.schedule} schedule, warm-up {c.optim.warmup:g}",
        f"weight decay {c.optim.weight_decay:g}",
        f"dropout {c.model.dropout:g}",
    ]
    if c.method.seqvcr:
        s = c.seqvcr
        parts.append(
            f"Seq-VCR lambda1 {s.lambda1:g} lambda2 {s.lambda2:g} eta {s.eta:g} proj {s.proj_dim} "
            f"layer {s.layer} over {s.over}"
        )
    t = c.task
    data = t.train_file or f"{t.train_size} generated (data seed {t.data_seed})"
    parts.append(f"train data {data}")
    return "; ".join(parts)


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _commit(stage: Path, out: Path) -> None:
    """Move the staged report into ``out``: everything but report.md first, report.md last; a staged
    directory replaces its namesake entry by entry (``analysis/<run>``), other files in ``out`` stay."""
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).unlink(missing_ok=True)
    for item in sorted(stage.iterdir()):
        if item.name == REPORT_FILE:
            continue
        dest = out / item.name
        if dest.is_dir() and not dest.is_symlink():
            if item.is_dir():
                for sub in sorted(item.iterdir()):  # analysis/<run>: replace run by run, keep others
                    sd = dest / sub.name
                    if sd.is_dir():
                        shutil.rmtree(sd)
                    elif sd.exists():
                        sd.unlink()
                    os.replace(sub, sd)
                continue
            shutil.rmtree(dest)
        os.replace(item, dest)
    os.replace(stage / REPORT_FILE, out / REPORT_FILE)
    shutil.rmtree(stage, ignore_errors=True)


def build_report(
    run_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    data_file: str | None = None,
    n_sequences: int | None = 1000,
    device: str = "auto",
    command: str | None = None,
    title: str | None = None,
    intro: str = "",
    extra: Callable[[Sequence[RunAnalysis]], str] | None = None,
    progress: bool = True,
) -> Path:
    """Analyse ``run_dirs`` and write the report into ``out``; returns the path of report.md.

    ``data_file`` (default: each run's ``task.test_file``) is the file every run is evaluated on and its
    entropy measured on; ``n_sequences`` sequences of it enter the entropy. ``command`` is recorded as
    the command that made the report; ``intro`` is Markdown placed under the title and ``extra(runs)``
    Markdown computed from the analysed runs, placed after it (the demo's intro and findings).
    """
    out_dir = check_out_dir(out, force)
    if not run_dirs:
        raise RunDirError("report: no run directories given")
    rds = [Path(p) for p in run_dirs]
    for rd in rds:
        if not rd.is_dir():
            raise RunDirError(f"{rd}: no such run directory")
    names = _unique_names(rds)
    t0 = time.perf_counter()
    absolute = out_dir.resolve()
    absolute.parent.mkdir(parents=True, exist_ok=True)
    stage = absolute.parent / f".{absolute.name}.tmp-{os.getpid()}"  # same file system: renames are atomic
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        runs = [
            analyze_run(
                rd,
                stage / PER_RUN_DIR / nm,
                name=nm,
                data_file=data_file,
                n_sequences=n_sequences,
                device=device,
                progress=progress,
            )
            for rd, nm in zip(rds, names)
        ]
        _say(progress, "report: drawing figures and tables")
        _say(progress, "report: measuring decoding throughput (best of 5, runs interleaved)")
        measure_throughput(runs, device=device, progress=progress)
        if extra is not None:
            intro = (intro.rstrip() + "\n\n" if intro else "") + extra(runs)
        _write_report(
            stage, runs, command=command, title=title, intro=intro, seconds=time.perf_counter() - t0
        )
        _commit(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _say(progress, f"report: wrote {out_dir / REPORT_FILE}")
    return out_dir / REPORT_FILE


def _write_report(
    stage: Path,
    runs: Sequence[RunAnalysis],
    *,
    command: str | None,
    title: str | None,
    intro: str,
    seconds: float,
) -> None:
    """Figures, tables, summary.json and report.md for analysed runs, into ``stage``."""
    series = lambda data: [plots.Series(r.label, r.method, d) for r, d in zip(runs, data)]  # noqa: E731
    tasks_seen = list(dict.fromkeys(r.entropy["task"] for r in runs))
    datas = list(dict.fromkeys(r.data_file for r in runs))
    heading = title or f"Seq-VCR report: {', '.join(tasks_seen)}"
    on = f"{', '.join(tasks_seen)}, {', '.join(datas)}"

    baseline = majority_baseline(runs[0].predictions) if len(datas) == 1 else None
    plots.plot_entropy_per_layer(
        series([r.entropy for r in runs]),
        stage / "entropy_per_layer.png",
        title=f"Representation entropy per layer ({on})",
    )
    plots.plot_entropy_hist(
        series([r.entropy for r in runs]),
        stage / "entropy_hist.png",
        title=f"Per-sequence entropy per layer ({on})",
    )
    plots.plot_position_accuracy(
        series([r.eval["position_accuracy"] for r in runs]),
        stage / "position_accuracy.png",
        baseline=baseline,
        title=f"Accuracy per answer position ({on})",
        position_note=_position_note(runs),
    )
    plots.plot_loss_curves(
        series([r.metrics for r in runs]), stage / "loss_curves.png", title="Learning curves"
    )

    acc = tables.accuracy_table(
        [
            {
                "method": r.method,
                "pauses": r.pauses,
                "task": r.entropy["task"],
                "exact_match": r.eval["exact_match"],
            }
            for r in runs
        ]
    )
    pos = tables.position_table(
        [{"run": r.name, "position_accuracy": r.eval["position_accuracy"]} for r in runs], baseline=baseline
    )
    ent = tables.entropy_table([{"run": r.name, "entropy": r.entropy} for r in runs])
    thr = tables.throughput_table(
        [
            {
                "run": r.name,
                "method": r.method,
                "pauses": r.pauses,
                "task": r.entropy["task"],
                "examples_per_s": (r.throughput or r.eval)["examples_per_s"],
            }
            for r in runs
        ]
    )
    for stem, t in zip(TABLES, (acc, pos, ent, thr)):
        _write(stage / f"{stem}.md", t.to_markdown())
        _write(stage / f"{stem}.csv", t.to_csv())

    here = describe_machine(machine_info())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = {
        "title": heading,
        "generated": now,
        "command": command,
        "machine": here,
        "seconds": seconds,
        "runs": [
            {
                "name": r.name,
                "run_dir": str(r.run_dir),
                "task": r.entropy["task"],
                "method": r.method,
                "seed": r.config.train.seed,
                "steps": (r.result or {}).get("steps", r.eval.get("step")),
                "params": r.params,
                "train_time_s": (r.result or {}).get("train_time_s"),
                "trained_on": (r.result or {}).get("machine_description"),
                "data": r.data_file,
                "exact_match": r.eval["exact_match"],
                "n": r.eval["n"],
                "position_accuracy": r.eval["position_accuracy"],
                "examples_per_s": (r.throughput or r.eval)["examples_per_s"],
                "throughput": r.throughput,
                "T_norm": next((row[4] for row in thr.rows if row[0] == r.name), None),
                "entropy_mean": [L["mean"] for L in r.entropy["layers"]],
                "entropy_ci95_half": [L["ci95_half"] for L in r.entropy["layers"]],
                "entropy_mean_normalized": [L["mean_normalized"] for L in r.entropy["layers"]],
                "tokens_per_sequence": r.entropy["tokens_per_sequence"],
                "entropy_dataset": [L["dataset"] for L in r.entropy["layers"]],
                "entropy_n": r.entropy["n"],
            }
            for r in runs
        ],
        "majority_baseline": baseline,
    }
    write_json_atomic(stage / SUMMARY_FILE, summary)

    md: list[str] = [REPORT_MARK, f"# {heading}", ""]
    md.append(
        f"Written {now} by `{command or 'seqvcr.analysis.report.build_report'}` on {here} "
        f"(evaluation, entropy and figures took {_fmt_seconds(seconds)})."
    )
    md.append("")
    if intro:
        md += [intro.rstrip(), ""]
    md += [
        "## Runs",
        "",
        "| run | task | configuration | model | seed | steps | training time | trained on |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        res = r.result or {}
        md.append(
            f"| {r.name} | {r.entropy['task']} | {tables.method_label(r.method, r.pauses)} | "
            f"{_model_text(r)} | {r.config.train.seed} | {res.get('steps', r.eval.get('step', '-'))} | "
            f"{_fmt_seconds(res.get('train_time_s'))} | {res.get('machine_description', '-')} |"
        )
    md += [
        "",
        f"Configuration of each run (the complete config is in `{PER_RUN_DIR}/<run>/config.yaml`):",
        "",
    ]
    md += [f"- **{r.name}**: {_config_text(r)}" for r in runs]

    n_eval = ", ".join(sorted({str(r.eval["n"]) for r in runs}))
    md += [
        "",
        "## Exact match (Table 1 layout)",
        "",
        f"Greedy decoding on `{', '.join(datas)}` ({n_eval} examples); an answer counts only if every "
        "token is right.",
        "",
        acc.to_markdown(),
    ]

    md += [
        "## Accuracy per answer position (Fig. 6)",
        "",
        "Fraction of test examples whose k-th answer token is right"
        + (" (multiplication: position 1 is the least significant digit)" if _position_note(runs) else "")
        + ". The grey dashed line is the majority-class baseline: always answering the most frequent "
        "token of that position in the test file (the chance level).",
        "",
        "![accuracy per answer position](position_accuracy.png)",
        "",
        pos.to_markdown(),
    ]

    e0 = runs[0].entropy
    unit = "normalised by log(min(T, d))" if e0["normalized"] else "nats"
    tmin, tmax = e0["tokens_per_sequence"]["min"], e0["tokens_per_sequence"]["max"]
    lens = {(r.entropy["tokens_per_sequence"]["min"], r.entropy["tokens_per_sequence"]["max"]) for r in runs}
    tokens = str(tmin) if len(lens) == 1 and tmin == tmax else "T (per run in the normalised table below)"
    md += [
        "## Representation entropy per layer (Fig. 2)",
        "",
        f"Matrix entropy (Eq. 2, alpha = {e0['alpha']:g}, {unit}) of each sequence's token "
        f"representations (Gram over its {tokens} tokens, {e0['tokens']}), averaged over "
        f"{e0['n']} sequences of the test file ({e0['sample']}); error bars and +- are 95% confidence "
        "intervals of the mean. L0 is the embedding layer, the last layer is after the final LayerNorm. "
        "Middle panel: the same divided by its ceiling log min(T, d). Right panel: dataset-level "
        "entropy, one vector per sequence (the mean of its token representations).",
        "",
        "![entropy per layer](entropy_per_layer.png)",
        "",
        ent.to_markdown(),
    ]
    width = max(len(r.entropy["layers"]) for r in runs)

    def layer_table(key: str, first: str, first_cell: Callable[[RunAnalysis], str]) -> list[str]:
        rows = [
            "| run | " + first + " | " + " | ".join(f"L{i}" for i in range(width)) + " |",
            "|---|---|" + "|".join("---" for _ in range(width)) + "|",
        ]
        for r in runs:
            cells = [f"{L[key]:.3f}" for L in r.entropy["layers"]]
            cells += ["-"] * (width - len(cells))
            rows.append(f"| {r.name} | {first_cell(r)} | " + " | ".join(cells) + " |")
        return rows + [""]

    def t_range(r: RunAnalysis) -> str:
        lo, hi = r.entropy["tokens_per_sequence"]["min"], r.entropy["tokens_per_sequence"]["max"]
        return str(lo) if lo == hi else f"{lo}-{hi}"

    md += [
        "Normalised per-sequence entropy (mean of entropy / log min(T, d); T = tokens per sequence, "
        "d = width). Configurations with pause tokens or a chain of thought have longer sequences, hence "
        "a higher ceiling log T for the raw entropy; this table compares them on the same scale:",
        "",
    ]
    md += layer_table("mean_normalized", "T", t_range)
    md += [
        "Dataset-level entropy (one vector per sequence, the mean of its token representations; "
        "n = sequences):",
        "",
    ]
    md += layer_table("dataset", "n", lambda r: str(r.entropy["n"]))
    md += [
        "",
        "## Entropy distribution per layer (Fig. 4)",
        "",
        "Histograms of the per-sequence entropy, one panel per layer, runs overlaid.",
        "",
        "![entropy histograms](entropy_hist.png)",
        "",
    ]

    md += [
        "## Learning curves (Fig. 5)",
        "",
        "Left: training next-token loss on the answer (and CoT) tokens, averaged over each logging "
        "interval, log scale. Middle: exact match on the validation probe during training. Right: "
        "accuracy on the same probe averaged over the answer positions.",
        "",
        "![learning curves](loss_curves.png)",
        "",
    ]
    md += [
        "## Inference throughput (App. E)",
        "",
        f"Examples per second of greedy decoding of the test file (batch 256, KV cache) on {here}: "
        "each run decoded it 5 times, the runs interleaved, and the fastest time counts (a busy "
        "moment of the machine then spoils no single run). T_norm = examples/s of the run / that of "
        "the vanilla (no-CoT) run of the same task (the paper's App. E).",
        "",
        thr.to_markdown(),
    ]

    md += ["## Commands", ""]
    for r in runs:
        res = r.result or {}
        cmd = res.get("command") or "(trained through the Python API, seqvcr.training.train)"
        md.append(
            f"- **{r.name}** trained by: `{cmd}`; to re-run from its saved config: "
            f"`seqvcr train {shlex.quote(str(r.run_dir / CONFIG_FILE))} --out "
            f"{shlex.quote(str(r.run_dir))} --force`"
        )
    for r in runs:
        md.append(
            f"- **{r.name}** evaluated by the equivalent of `seqvcr eval {shlex.quote(str(r.run_dir))} "
            f"--data {shlex.quote(r.data_file)}` and `seqvcr entropy {shlex.quote(str(r.run_dir))} "
            f"--data {shlex.quote(r.data_file)} --n {r.entropy['n']}`"
        )
    md.append(f"- this report: `{command or 'seqvcr.analysis.report.build_report(...)'}`")
    md += [
        "",
        "## Files",
        "",
        "`summary.json` (every number above), `accuracy.csv`, `positions.csv`, `entropy.csv`, "
        f"`throughput.csv`; per run in `{PER_RUN_DIR}/<run>/`: `eval.json`, `predictions.jsonl`, "
        "`entropy.json`, `entropy.csv`, `entropy_values.csv` (every sequence's entropy per layer), "
        "`config.yaml`.",
        "",
    ]
    _write(stage / REPORT_FILE, "\n".join(md))
