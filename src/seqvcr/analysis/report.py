"""``seqvcr report RUN_DIR... --out DIR``: one Markdown report with the paper's figures and tables.

For every run the report measures, on one test file (``--data``, default: the run's
``task.test_file``; ``--limit N``: its first N problems):

* exact match and accuracy per answer position by greedy decoding (``seqvcr.evaluation.evaluate_file``,
  exactly what ``seqvcr eval`` prints; the per-example predictions are kept),
* per-sequence and dataset-level matrix entropy of every layer
  (``seqvcr.analysis.layer_entropy.compute_layer_entropy``, exactly what ``seqvcr entropy`` prints),
  and, for a run with snapshots (``train.snapshot_steps``), the same at every snapshot's step,
* decoding throughput (best of 5 timed decodings, the runs interleaved) and T_norm relative to the
  vanilla run (``--no-throughput`` leaves this out),

and reads from the run directory the training curves (``metrics.jsonl``), the configuration
(``config.yaml``) and the run's facts (``result.json``: steps, seed, time, machine, command).

An evaluation or entropy result that is already on disk and up to date (the same weights, data content,
settings and seqvcr version; see ``seqvcr.outputs``) is reused instead of measured again: one saved by
``seqvcr eval`` / ``seqvcr entropy`` in the run directory (``eval/``, ``entropy.json``, a published run's
``test_eval.json``), one an earlier report kept next to a run at ``OUT/runs/NAME`` (``seqvcr demo``:
``OUT/analysis/NAME/``), or one in ``DIR/analysis/<run>/`` from an earlier (possibly interrupted)
report. The report says which results it reused.

Output layout (``DIR``)::

    report.md               the report (written last: the report is complete iff it exists)
    summary.json            every number of the report, machine readable
    *.png                   entropy_per_layer, entropy_hist, position_accuracy, loss_curves
                            (+ entropy_vs_step with snapshots)
    *.md / *.csv            accuracy (Table 1 layout), positions, entropy, throughput (+ entropy_steps)
    analysis/<run>/         eval.json, predictions.jsonl, entropy.json/.csv, entropy_values.csv, config.yaml
                            (+ snapshots/step_<N>.entropy.json)

Every input is checked before anything is written. Each file is then written (atomically) as soon as it
is made, ``report.md`` last, so an interrupted report (Ctrl-C) keeps what it had finished, never looks
complete, and the same command picks up its measurements. Other files in ``DIR`` are left alone (the
demo keeps its data, configs and runs next to its report). A ``DIR`` that already holds a ``report.md``
is refused unless ``force``.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seqvcr import config as C
from seqvcr import outputs
from seqvcr.analysis import plots, tables
from seqvcr.analysis.layer_entropy import compute_layer_entropy, sample_indices, write_entropy
from seqvcr.atomic import write_json_atomic, write_text_atomic
from seqvcr.errors import DataError, RunDirError
from seqvcr.outputs import ENTROPY_JSON
from seqvcr.reporting.tables import fmt_seconds, markdown_table, write_table
from seqvcr.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    describe_machine,
    load_run_config,
    machine_info,
    read_result,
    saved_snapshot_steps,
    snapshot_file,
    weights_file,
)

__all__ = ["REPORT_FILE", "RunAnalysis", "analyze_run", "build_report", "check_out_dir", "read_metrics"]

REPORT_FILE = "report.md"
SUMMARY_FILE = "summary.json"
REPORT_MARK = "<!-- seqvcr run report -->"
PER_RUN_DIR = "analysis"  # DIR/analysis/<run>/: the per-run measurements
RUN_EVAL = "eval.json"  # DIR/analysis/<run>/eval.json: the run's evaluation ...
RUN_PREDICTIONS = "predictions.jsonl"  # ... and its predictions, one JSON object per example
TEST_EVAL = "test_eval.json"  # a published run's re-scoring (seqvcr.experiments.publish)
FIGURES = ("entropy_per_layer.png", "entropy_hist.png", "position_accuracy.png", "loss_curves.png")
STEP_FIGURE = "entropy_vs_step.png"  # runs with snapshots only
TABLES = ("accuracy", "positions", "entropy", "throughput")
STEP_TABLE = "entropy_steps"  # runs with snapshots only
#: every entry a report writes into its directory
OUTPUTS = (
    REPORT_FILE,
    SUMMARY_FILE,
    PER_RUN_DIR,
    *FIGURES,
    STEP_FIGURE,
    *(f"{t}.{e}" for t in (*TABLES, STEP_TABLE) for e in ("md", "csv")),
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
    steps: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (step, entropy): snapshots
    reused: dict[str, str] = field(default_factory=dict)  # eval / entropy -> the file it came from
    limit: int = 0

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


def _report_progress(progress: bool, text: str) -> None:
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


def saved_analysis(rd: Path) -> list[Path]:
    """The per-run directories of earlier reports that sit next to the run: a run at ``OUT/runs/NAME``
    (the layout of ``seqvcr demo``) keeps its report's measurements in ``OUT/analysis/NAME/``. Their
    files are candidates like the run's own ``eval/`` and ``entropy.json``; only those whose source
    (SHA-256 of weights and data) and settings match are reused."""
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

    cfg = load_run_config(rd)
    data = data_file or cfg.task.test_file
    if not data:
        raise DataError(f"{rd}: the run's config has no task.test_file; pass --data FILE")
    run = load_run(rd)
    read_examples(run.task, resolve_data_path(data))


def analyze_run(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    data_file: str | None = None,
    n_sequences: int | None = 1000,
    device: str = "auto",
    progress: bool = True,
    limit: int = 0,
    reuse: bool = True,
) -> RunAnalysis:
    """Evaluate one run and measure its layer entropy (also at each of its snapshots) on ``data_file``;
    write the per-run files into ``out_dir`` (eval.json, predictions.jsonl, entropy.json/.csv,
    entropy_values.csv, config.yaml, snapshots/step_<N>.entropy.json) as each is made.

    With ``reuse``, an up-to-date saved result (``seqvcr.outputs``) in the run directory or in
    ``out_dir`` is taken instead of measuring again (``RunAnalysis.reused`` says which)."""
    from seqvcr.checkpoints import read_safetensors
    from seqvcr.datafiles import resolve_data_path
    from seqvcr.evaluation import evaluate_file
    from seqvcr.runs import build_task, precision_used, select_device
    from seqvcr.tasks import read_examples

    rd = Path(run_dir)
    cfg = load_run_config(rd)
    name = name or rd.resolve().name
    data = data_file or cfg.task.test_file
    if not data:
        raise DataError(f"{rd}: the run's config has no task.test_file; pass --data FILE")
    data_path = resolve_data_path(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reused: dict[str, str] = {}

    weights = weights_file(rd)
    step = int(read_safetensors(weights, "model", prefixes=())[1]["step"])  # the header only
    source = outputs.source(rd, weights, step, str(data), data_path)
    precision = precision_used(select_device(device), cfg.train.precision)

    # ---- evaluation: reused when up to date, else decoded now
    kept = saved_analysis(rd)
    places = [rd / outputs.EVAL_DIR, rd / TEST_EVAL, *(d / RUN_EVAL for d in kept), out / RUN_EVAL]
    found = outputs.find_eval(places, source, limit=limit, precision=precision) if reuse else None
    if found is not None:
        ev, ev_path, preds_path = found
        if preds_path.resolve() != (out / RUN_PREDICTIONS).resolve():
            shutil.copyfile(preds_path, out / RUN_PREDICTIONS)
        reused["eval"] = str(ev_path)
        _report_progress(progress, f"report: {name}: reusing the evaluation in {reused['eval']}")
    else:
        _report_progress(progress, f"report: {name}: evaluating on {data}"
                         + (f" (first {limit})" if limit else ""))
        ev = evaluate_file(str(rd), str(data), predictions=str(out / RUN_PREDICTIONS), device=device,
                           limit=limit, progress=progress)
    ev = {**ev, "predictions_file": RUN_PREDICTIONS}
    ev.pop("saved", None)
    write_json_atomic(out / RUN_EVAL, ev)
    _report_progress(
        progress,
        f"report: {name}: exact match {ev['exact_match']:.4f} on {ev['n']} examples "
        f"({ev['examples_per_s']:,.0f} examples/s); measuring layer entropy",
    )

    # ---- entropy of the final weights, then of each snapshot
    task = build_task(cfg)
    n_lines = len(read_examples(task, data_path))
    indices = sample_indices(n_lines, n_sequences, 0)

    def entropy_at(
        at_step: int | None, places: list[Path], src: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """The entropy of the final weights (``at_step`` None) or of a snapshot, and the file it was
        reused from ("" when measured now)."""
        hit = None
        if reuse:
            hit = outputs.find_entropy(places, src, indices=indices, alpha=1.0, normalize=False)
        if hit is not None:
            return hit[0], str(hit[1])
        res = compute_layer_entropy(str(rd), str(data), n_sequences=n_sequences, device=device,
                                    progress=progress, step=at_step)
        return res, ""

    ent, where = entropy_at(None, [rd / ENTROPY_JSON, *(d / ENTROPY_JSON for d in kept), out / ENTROPY_JSON],
                            source)
    if where:
        reused["entropy"] = where
        _report_progress(progress, f"report: {name}: reusing the entropy in {where}")
    if not (where and Path(where).resolve() == (out / ENTROPY_JSON).resolve()):
        write_entropy(ent, out)
    shutil.copyfile(rd / CONFIG_FILE, out / CONFIG_FILE)
    lines = (out / RUN_PREDICTIONS).read_text().splitlines()
    preds = [json.loads(line) for line in lines if line.strip()]
    result = read_result(rd)
    params = result.get("params") if result else None
    if params is None:
        from seqvcr.runs import load_run

        params = load_run(rd).model.num_params()
    means = ", ".join(f"L{L['layer']} {L['mean']:.3f}" for L in ent["layers"])
    _report_progress(progress,
                     f"report: {name}: entropy ({ent['n']} sequences, {ent['seconds']:.1f}s): {means}")

    steps: list[tuple[int, dict[str, Any]]] = []
    snaps = [k for k in saved_snapshot_steps(rd) if k != step]
    for k in snaps:
        here = out / _snapshot_entropy(k)
        src = outputs.source(rd, snapshot_file(rd, k), k, str(data), data_path)
        res, where_k = entropy_at(k, [outputs.analysis_home(rd, k) / ENTROPY_JSON,
                                      *(d / _snapshot_entropy(k) for d in kept), here], src)
        if where_k:
            reused[f"entropy step {k}"] = where_k
        if not (where_k and Path(where_k).resolve() == here.resolve()):
            here.parent.mkdir(exist_ok=True)
            write_json_atomic(here, res)
        steps.append((k, res))
        _report_progress(progress, f"report: {name}: entropy at step {k}" + (" (reused)" if where_k else ""))
    if steps:
        steps.append((step, ent))
        steps.sort(key=lambda p: p[0])
    return RunAnalysis(name, rd, cfg, result, read_metrics(rd), ev, ent, preds, str(data), params,
                       steps=steps, reused=reused, limit=limit)


def measure_throughput(
    runs: Sequence[RunAnalysis],
    repeats: int = 5,
    batch_size: int = 256,
    device: str = "auto",
    progress: bool = True,
    limit: int = 0,
) -> None:
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


def _run_row(r: RunAnalysis) -> list[Any]:
    """The run's row of the report's table of runs."""
    res = r.result or {}
    label = tables.method_label(r.method, r.pauses)
    return [r.name, r.entropy["task"], label, _model_text(r), r.config.train.seed,
            res.get("steps", r.eval.get("step", "-")), fmt_seconds(res.get("train_time_s")),
            res.get("machine_description", "-")]


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
    limit: int = 0,
    throughput: bool = True,
    reuse: bool = True,
) -> Path:
    """Analyse ``run_dirs`` and write the report into ``out``; returns the path of report.md.

    ``data_file`` (default: each run's ``task.test_file``) is the file every run is evaluated on and its
    entropy measured on (its first ``limit`` problems are evaluated when ``limit`` > 0);
    ``n_sequences`` sequences of it enter the entropy. ``throughput=False`` leaves out the timed
    decodings (the throughput table and T_norm). ``reuse=False`` measures everything afresh.
    ``command`` is recorded as the command that made the report; ``intro`` is Markdown placed under the
    title and ``extra(runs)`` Markdown computed from the analysed runs, placed after it (the demo's
    intro and findings).
    """
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
    made = _write_figures_and_tables(out_dir, runs)
    if throughput:
        _report_progress(progress, "report: measuring decoding throughput (best of 5, runs interleaved)")
        measure_throughput(runs, device=device, progress=progress, limit=limit)
    if extra is not None:
        intro = (intro.rstrip() + "\n\n" if intro else "") + extra(runs)
    _write_report(
        out_dir, runs, made, command=command, title=title, intro=intro, seconds=time.perf_counter() - t0,
        throughput=throughput,
    )
    _report_progress(progress, f"report: wrote {out_dir / REPORT_FILE}")
    return out_dir / REPORT_FILE


def _context(runs: Sequence[RunAnalysis]) -> tuple[list[str], list[str], str, list[float] | None]:
    """Tasks, data files, a caption suffix and the majority-class baseline (one data file only)."""
    tasks_seen = list(dict.fromkeys(r.entropy["task"] for r in runs))
    datas = list(dict.fromkeys(r.data_file for r in runs))
    on = f"{', '.join(tasks_seen)}, {', '.join(datas)}"
    baseline = majority_baseline(runs[0].predictions) if len(datas) == 1 else None
    return tasks_seen, datas, on, baseline


def _write_figures_and_tables(out: Path, runs: Sequence[RunAnalysis]) -> dict[str, tables.Table]:
    """Every figure and table that needs no throughput, each written as soon as it is made."""
    series = lambda data: [plots.Series(r.label, r.method, d) for r, d in zip(runs, data)]  # noqa: E731
    _, _, on, baseline = _context(runs)
    plots.plot_entropy_per_layer(
        series([r.entropy for r in runs]),
        out / "entropy_per_layer.png",
        title=f"Representation entropy per layer ({on})",
    )
    plots.plot_entropy_hist(
        series([r.entropy for r in runs]),
        out / "entropy_hist.png",
        title=f"Per-sequence entropy per layer ({on})",
    )
    plots.plot_position_accuracy(
        series([r.eval["position_accuracy"] for r in runs]),
        out / "position_accuracy.png",
        baseline=baseline,
        title=f"Accuracy per answer position ({on})",
        position_note=_position_note(runs),
    )
    plots.plot_loss_curves(
        series([r.metrics for r in runs]), out / "loss_curves.png", title="Learning curves"
    )
    with_steps = [r for r in runs if r.steps]
    if with_steps:
        plots.plot_entropy_vs_step(
            [plots.Series(r.label, r.method, r.steps) for r in with_steps],
            out / STEP_FIGURE,
            title=f"Entropy per layer during training, from the snapshots ({on})",
        )

    made: dict[str, tables.Table] = {
        "accuracy": tables.accuracy_table(
            [
                {
                    "method": r.method,
                    "pauses": r.pauses,
                    "task": r.entropy["task"],
                    "exact_match": r.eval["exact_match"],
                }
                for r in runs
            ]
        ),
        "positions": tables.position_table(
            [{"run": r.name, "position_accuracy": r.eval["position_accuracy"]} for r in runs],
            baseline=baseline,
        ),
        "entropy": tables.entropy_table([{"run": r.name, "entropy": r.entropy} for r in runs]),
    }
    if with_steps:
        made[STEP_TABLE] = tables.entropy_steps_table(
            [{"run": r.name, "steps": r.steps} for r in with_steps]
        )
    for stem, t in made.items():
        write_table(out, stem, t)
    return made


def _write_report(
    out: Path,
    runs: Sequence[RunAnalysis],
    made: dict[str, tables.Table],
    *,
    command: str | None,
    title: str | None,
    intro: str,
    seconds: float,
    throughput: bool,
) -> None:
    """The throughput table (when measured), summary.json and, last, report.md, into ``out``."""
    tasks_seen, datas, _, baseline = _context(runs)
    heading = title or f"Seq-VCR report: {', '.join(tasks_seen)}"
    acc, pos, ent = made["accuracy"], made["positions"], made["entropy"]
    thr = None
    if throughput:
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
        write_table(out, "throughput", thr)

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
                "T_norm": next((row[4] for row in thr.rows if row[0] == r.name), None) if thr else None,
                "entropy_mean": [L["mean"] for L in r.entropy["layers"]],
                "entropy_ci95_half": [L["ci95_half"] for L in r.entropy["layers"]],
                "entropy_mean_normalized": [L["mean_normalized"] for L in r.entropy["layers"]],
                "tokens_per_sequence": r.entropy["tokens_per_sequence"],
                "entropy_dataset": [L["dataset"] for L in r.entropy["layers"]],
                "entropy_n": r.entropy["n"],
                "entropy_steps": [
                    {"step": k, "entropy_mean": [L["mean"] for L in e["layers"]]} for k, e in r.steps
                ],
                "limit": r.limit,
                "reused": r.reused,
            }
            for r in runs
        ],
        "majority_baseline": baseline,
        "throughput_measured": throughput,
    }
    write_json_atomic(out / SUMMARY_FILE, summary)

    md: list[str] = [REPORT_MARK, f"# {heading}", ""]
    md.append(
        f"Written {now} by `{command or 'seqvcr.analysis.report.build_report'}` on {here} "
        f"(evaluation, entropy and figures took {fmt_seconds(seconds)})."
    )
    md.append("")
    reused = [(r.name, what, where) for r in runs for what, where in r.reused.items()]
    if reused:
        md += [
            "Reused, not measured again (saved earlier and up to date: the same weights, data, settings "
            "and seqvcr version): "
            + "; ".join(f"{name} {what} from `{where}`" for name, what, where in reused) + ".",
            "",
        ]
    if intro:
        md += [intro.rstrip(), ""]
    runs_header = ["run", "task", "configuration", "model", "seed", "steps", "training time", "trained on"]
    md += ["## Runs", "", markdown_table(runs_header, [_run_row(r) for r in runs])]
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
        header = ["run", first, *[f"L{i}" for i in range(width)]]
        rows = []
        for r in runs:
            cells = [f"{L[key]:.3f}" for L in r.entropy["layers"]]
            rows.append([r.name, first_cell(r), *cells, *["-"] * (width - len(cells))])
        return [markdown_table(header, rows), ""]

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
    if STEP_TABLE in made:
        md += [
            "## Entropy per layer during training (snapshots)",
            "",
            "Mean per-sequence entropy of every layer of the weights kept at each snapshot step "
            "(`train.snapshot_steps`) and of the final weights, on the same sequences as above.",
            "",
            f"![entropy per layer against step]({STEP_FIGURE})",
            "",
            made[STEP_TABLE].to_markdown(),
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
    if thr is not None:
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
    else:
        md += ["## Inference throughput (App. E)", "", "Not measured (`--no-throughput`).", ""]

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
            f"--data {shlex.quote(r.data_file)}{f' --limit {r.limit}' if r.limit else ''}` and "
            f"`seqvcr entropy {shlex.quote(str(r.run_dir))} --data {shlex.quote(r.data_file)} "
            f"--n {r.entropy['n']}`"
        )
    md.append(f"- this report: `{command or 'seqvcr.analysis.report.build_report(...)'}`")
    md += [
        "",
        "## Files",
        "",
        "`summary.json` (every number above), `accuracy.csv`, `positions.csv`, `entropy.csv`"
        + (", `throughput.csv`" if thr is not None else "")
        + (f", `{STEP_TABLE}.csv`" if STEP_TABLE in made else "")
        + f"; per run in `{PER_RUN_DIR}/<run>/`: `eval.json`, `predictions.jsonl`, "
        "`entropy.json`, `entropy.csv`, `entropy_values.csv` (every sequence's entropy per layer), "
        "`config.yaml`" + (", `snapshots/step_<N>.entropy.json`" if STEP_TABLE in made else "") + ".",
        "",
    ]
    write_text_atomic(out / REPORT_FILE, "\n".join(md))
