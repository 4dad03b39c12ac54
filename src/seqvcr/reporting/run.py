"""The run report's summary and its rendering: :class:`RunAnalysis` (what ``seqvcr.analysis.report``
measured of one run), :func:`summarize` (every number, ``summary.json``), the figures and tables
(``run_figures``, ``run_tables``) and ``report.md`` (:func:`render_report`: one small template per section).
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqvcr.atomic import write_json_atomic, write_text_atomic
from seqvcr.reporting.run_figures import (
    Series,
    plot_entropy_hist,
    plot_entropy_per_layer,
    plot_entropy_vs_step,
    plot_loss_curves,
    plot_position_accuracy,
)
from seqvcr.reporting.run_tables import (
    accuracy_table,
    entropy_steps_table,
    entropy_table,
    method_label,
    position_table,
    throughput_table,
)
from seqvcr.reporting.tables import Table, fmt_seconds, markdown_table, padded, write_table
from seqvcr.runs import CONFIG_FILE, describe_machine, machine_info

if TYPE_CHECKING:
    from seqvcr.config import Config

__all__ = ["OUTPUTS", "REPORT_FILE", "majority_baseline", "render_report", "summarize",
           "write_figures_and_tables", "write_report"]

Run = dict[str, Any]
REPORT_MARK = "<!-- seqvcr run report -->"
REPORT_FILE = "report.md"
SUMMARY_FILE = "summary.json"
PER_RUN_DIR = "analysis"  # DIR/analysis/<run>/: the per-run measurements
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
    config: Config
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
        label = method_label(self.method, self.pauses)
        return label if self.name == self.method else f"{self.name} ({label})"


def majority_baseline(predictions: Sequence[dict[str, Any]]) -> list[float]:
    """Accuracy per answer position of always answering that position's most frequent token."""
    targets = [str(p["target"]).split() for p in predictions]
    width = max((len(t) for t in targets), default=0)
    out = []
    for k in range(width):
        col = [t[k] for t in targets if k < len(t)]
        out.append(Counter(col).most_common(1)[0][1] / len(col) if col else 0.0)
    return out


def summarize(runs: Sequence[RunAnalysis], thr: Table | None, *, command: str | None, title: str | None,
              seconds: float, throughput: bool, baseline: list[float] | None) -> dict[str, Any]:
    """Every number of the report (``summary.json``): the report's facts, one entry per run, the
    majority-class ``baseline``; report.md is rendered from it (:func:`render_report`)."""
    e0 = runs[0].entropy
    return {
        "title": title or f"Seq-VCR report: {', '.join(dict.fromkeys(r.entropy['task'] for r in runs))}",
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": describe_machine(machine_info()),
        "seconds": seconds,
        "runs": [_run_summary(r, thr) for r in runs],
        "majority_baseline": baseline,
        "throughput_measured": throughput,
        "position_note": _position_note(runs),
        "entropy": {k: e0[k] for k in ("alpha", "normalized", "tokens", "n", "sample")},
    }


def _run_summary(r: RunAnalysis, thr: Table | None) -> dict[str, Any]:
    """One run's entry of the summary: the run, its training, its evaluation, its entropy per layer."""
    res, ent = r.result or {}, r.entropy
    per_layer = {key: [L[key_in_layer] for L in ent["layers"]] for key, key_in_layer in (
        ("entropy_mean", "mean"), ("entropy_ci95_half", "ci95_half"),
        ("entropy_mean_normalized", "mean_normalized"), ("entropy_dataset", "dataset"))}
    return {
        "name": r.name, "run_dir": str(r.run_dir), "config_file": str(r.run_dir / CONFIG_FILE),
        "task": ent["task"], "method": r.method, "label": method_label(r.method, r.pauses),
        "model": _model_text(r), "configuration": _config_text(r), "seed": r.config.train.seed,
        "steps": res.get("steps", r.eval.get("step")), "params": r.params,
        "train_time_s": res.get("train_time_s"), "trained_on": res.get("machine_description"),
        "trained_by": res.get("command"), "data": r.data_file,
        **{k: r.eval[k] for k in ("exact_match", "n", "position_accuracy")},
        "examples_per_s": (r.throughput or r.eval)["examples_per_s"], "throughput": r.throughput,
        "T_norm": next((row[4] for row in thr.rows if row[0] == r.name), None) if thr else None,
        **per_layer, "tokens_per_sequence": ent["tokens_per_sequence"], "entropy_n": ent["n"],
        "entropy_steps": [{"step": k, "entropy_mean": [L["mean"] for L in e["layers"]]} for k, e in r.steps],
        "limit": r.limit, "reused": r.reused,
    }


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
    """The settings of a run that tell configurations apart, as one line."""
    c, s, t = r.config, r.config.seqvcr, r.config.task
    parts = [f"method {c.method.name}" + (f" ({c.method.num_pauses} pauses)" if c.method.num_pauses else ""),
             f"lr {c.optim.lr:g}", f"batch {c.optim.batch_size}",
             f"{c.optim.schedule} schedule, warm-up {c.optim.warmup:g}",
             f"weight decay {c.optim.weight_decay:g}", f"dropout {c.model.dropout:g}"]
    if c.method.seqvcr:
        parts.append(f"Seq-VCR lambda1 {s.lambda1:g} lambda2 {s.lambda2:g} eta {s.eta:g} proj {s.proj_dim} "
                     f"layer {s.layer} over {s.over}")
    parts.append(f"train data {t.train_file or f'{t.train_size} generated (data seed {t.data_seed})'}")
    return "; ".join(parts)


def render_report(summary: dict[str, Any], made: dict[str, Table], intro: str) -> str:
    """The Markdown of the report: ``summary`` (:func:`summarize`), the tables ``made`` (accuracy,
    positions, entropy, and entropy_steps / throughput when made) and the Markdown ``intro``."""
    sections = [_header(summary, intro), _runs(summary["runs"]), _accuracy(summary, made["accuracy"]),
                _positions(summary, made["positions"]), _entropy(summary, made["entropy"]),
                _steps(made.get(STEP_TABLE)), _CURVES, _throughput(summary, made.get("throughput")),
                _commands(summary), _files("throughput" in made, STEP_TABLE in made)]
    return "\n".join(line for section in sections for line in section)


def _header(summary: dict[str, Any], intro: str) -> list[str]:
    made_by = summary["command"] or "seqvcr.analysis.report.build_report"
    md = [REPORT_MARK, f"# {summary['title']}", "",
          f"Written {summary['generated']} by `{made_by}` on {summary['machine']} "
          f"(evaluation, entropy and figures took {fmt_seconds(summary['seconds'])}).", ""]
    reused = [(r["name"], what, where) for r in summary["runs"] for what, where in r["reused"].items()]
    if reused:
        md += ["Reused, not measured again (saved earlier and up to date: the same weights, data, settings "
               "and seqvcr version): "
               + "; ".join(f"{name} {what} from `{where}`" for name, what, where in reused) + ".", ""]
    return md + ([intro.rstrip(), ""] if intro else [])


def _runs(runs: list[Run]) -> list[str]:
    header = ["run", "task", "configuration", "model", "seed", "steps", "training time", "trained on"]
    rows = [[r["name"], r["task"], r["label"], r["model"], r["seed"], "-" if r["steps"] is None
             else r["steps"], fmt_seconds(r["train_time_s"]), r["trained_on"] or "-"] for r in runs]
    return ["## Runs", "", markdown_table(header, rows), "",
            f"Configuration of each run (the complete config is in `{PER_RUN_DIR}/<run>/config.yaml`):", "",
            *(f"- **{r['name']}**: {r['configuration']}" for r in runs)]


def _accuracy(summary: dict[str, Any], table: Table) -> list[str]:
    datas = ", ".join(dict.fromkeys(r["data"] for r in summary["runs"]))
    n_eval = ", ".join(sorted({str(r["n"]) for r in summary["runs"]}))
    return ["", "## Exact match (Table 1 layout)", "",
            f"Greedy decoding on `{datas}` ({n_eval} examples); an answer counts only if every token is "
            "right.", "", table.to_markdown()]


def _positions(summary: dict[str, Any], table: Table) -> list[str]:
    note = " (multiplication: position 1 is the least significant digit)" if summary["position_note"] else ""
    return ["## Accuracy per answer position (Fig. 6)", "",
            f"Fraction of test examples whose k-th answer token is right{note}. The grey dashed line is the "
            "majority-class baseline: always answering the most frequent token of that position in the test "
            "file (the chance level).", "",
            "![accuracy per answer position](position_accuracy.png)", "", table.to_markdown()]


def _layer_table(runs: list[Run], key: str, first: str, first_cell: Callable[[Run], str]) -> list[str]:
    """One row per run, one column per layer, of the per-layer list ``key`` of the summary."""
    width = max(len(r["entropy_mean"]) for r in runs)
    rows = [[r["name"], first_cell(r), *padded(r[key], width)] for r in runs]
    return [markdown_table(["run", first, *[f"L{i}" for i in range(width)]], rows), ""]


def _t_range(r: Run) -> str:
    lo, hi = r["tokens_per_sequence"]["min"], r["tokens_per_sequence"]["max"]
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _entropy(summary: dict[str, Any], table: Table) -> list[str]:
    runs, e0 = summary["runs"], summary["entropy"]
    unit = "normalised by log(min(T, d))" if e0["normalized"] else "nats"
    t0 = runs[0]["tokens_per_sequence"]
    lens = {(r["tokens_per_sequence"]["min"], r["tokens_per_sequence"]["max"]) for r in runs}
    tokens = str(t0["min"]) if len(lens) == 1 and t0["min"] == t0["max"] else \
        "T (per run in the normalised table below)"
    return [
        "## Representation entropy per layer (Fig. 2)", "",
        f"Matrix entropy (Eq. 2, alpha = {e0['alpha']:g}, {unit}) of each sequence's token representations "
        f"(Gram over its {tokens} tokens, {e0['tokens']}), averaged over {e0['n']} sequences of the test "
        f"file ({e0['sample']}); error bars and +- are 95% confidence intervals of the mean. L0 is the "
        "embedding layer, the last layer is after the final LayerNorm. Middle panel: the same divided by its "
        "ceiling log min(T, d). Right panel: dataset-level entropy, one vector per sequence (the mean of its "
        "token representations).", "",
        "![entropy per layer](entropy_per_layer.png)", "", table.to_markdown(),
        "Normalised per-sequence entropy (mean of entropy / log min(T, d); T = tokens per sequence, "
        "d = width). Configurations with pause tokens or a chain of thought have longer sequences, hence a "
        "higher ceiling log T for the raw entropy; this table compares them on the same scale:", "",
        *_layer_table(runs, "entropy_mean_normalized", "T", _t_range),
        "Dataset-level entropy (one vector per sequence, the mean of its token representations; "
        "n = sequences):", "",
        *_layer_table(runs, "entropy_dataset", "n", lambda r: str(r["entropy_n"])),
        "", "## Entropy distribution per layer (Fig. 4)", "",
        "Histograms of the per-sequence entropy, one panel per layer, runs overlaid.", "",
        "![entropy histograms](entropy_hist.png)", "",
    ]


def _steps(table: Table | None) -> list[str]:
    if table is None:
        return []
    return ["## Entropy per layer during training (snapshots)", "",
            "Mean per-sequence entropy of every layer of the weights kept at each snapshot step "
            "(`train.snapshot_steps`) and of the final weights, on the same sequences as above.", "",
            f"![entropy per layer against step]({STEP_FIGURE})", "", table.to_markdown()]


_CURVES = ["## Learning curves (Fig. 5)", "",
           "Left: training next-token loss on the answer (and CoT) tokens, averaged over each logging "
           "interval, log scale. Middle: exact match on the validation probe during training. Right: "
           "accuracy on the same probe averaged over the answer positions.", "",
           "![learning curves](loss_curves.png)", ""]


def _throughput(summary: dict[str, Any], table: Table | None) -> list[str]:
    if table is None:
        return ["## Inference throughput (App. E)", "", "Not measured (`--no-throughput`).", ""]
    return ["## Inference throughput (App. E)", "",
            f"Examples per second of greedy decoding of the test file (batch 256, KV cache) on "
            f"{summary['machine']}: each run decoded it 5 times, the runs interleaved, and the fastest time "
            "counts (a busy moment of the machine then spoils no single run). T_norm = examples/s of the run "
            "/ that of the vanilla (no-CoT) run of the same task (the paper's App. E).", "",
            table.to_markdown()]


def _commands(summary: dict[str, Any]) -> list[str]:
    md = ["## Commands", ""]
    for r in summary["runs"]:
        rd = shlex.quote(r["run_dir"])
        cmd = r["trained_by"] or "(trained through the Python API, seqvcr.training.train)"
        md.append(f"- **{r['name']}** trained by: `{cmd}`; to re-run from its saved config: "
                  f"`seqvcr train {shlex.quote(r['config_file'])} --out {rd} --force`")
    for r in summary["runs"]:
        rd, data = shlex.quote(r["run_dir"]), shlex.quote(r["data"])
        limit = f" --limit {r['limit']}" if r["limit"] else ""
        md.append(f"- **{r['name']}** evaluated by the equivalent of `seqvcr eval {rd} --data {data}{limit}` "
                  f"and `seqvcr entropy {rd} --data {data} --n {r['entropy_n']}`")
    md.append(f"- this report: `{summary['command'] or 'seqvcr.analysis.report.build_report(...)'}`")
    return md


def _files(throughput: bool, steps: bool) -> list[str]:
    return ["", "## Files", "",
            "`summary.json` (every number above), `accuracy.csv`, `positions.csv`, `entropy.csv`"
            + (", `throughput.csv`" if throughput else "")
            + (f", `{STEP_TABLE}.csv`" if steps else "")
            + f"; per run in `{PER_RUN_DIR}/<run>/`: `eval.json`, `predictions.jsonl`, `entropy.json`, "
            "`entropy.csv`, `entropy_values.csv` (every sequence's entropy per layer), `config.yaml`"
            + (", `snapshots/step_<N>.entropy.json`" if steps else "") + ".", ""]


def _context(runs: Sequence[RunAnalysis]) -> tuple[str, list[float] | None]:
    """The figures' caption suffix (tasks, data files) and the majority-class baseline (one data file)."""
    datas = list(dict.fromkeys(r.data_file for r in runs))
    on = f"{', '.join(dict.fromkeys(r.entropy['task'] for r in runs))}, {', '.join(datas)}"
    return on, majority_baseline(runs[0].predictions) if len(datas) == 1 else None


def write_figures_and_tables(out: Path, runs: Sequence[RunAnalysis]) -> dict[str, Table]:
    """Every figure and table that needs no throughput, each written as soon as it is made."""
    series = lambda data: [Series(r.label, r.method, d) for r, d in zip(runs, data)]  # noqa: E731
    on, baseline = _context(runs)
    ent = series([r.entropy for r in runs])
    plot_entropy_per_layer(ent, out / "entropy_per_layer.png",
                           title=f"Representation entropy per layer ({on})")
    plot_entropy_hist(ent, out / "entropy_hist.png", title=f"Per-sequence entropy per layer ({on})")
    accuracy, note = series([r.eval["position_accuracy"] for r in runs]), _position_note(runs)
    plot_position_accuracy(accuracy, out / "position_accuracy.png", baseline, position_note=note,
                           title=f"Accuracy per answer position ({on})")
    plot_loss_curves(series([r.metrics for r in runs]), out / "loss_curves.png", title="Learning curves")
    with_steps = [r for r in runs if r.steps]
    made: dict[str, Table] = {
        "accuracy": accuracy_table([{"method": r.method, "pauses": r.pauses, "task": r.entropy["task"],
                                     "exact_match": r.eval["exact_match"]} for r in runs]),
        "positions": position_table(
            [{"run": r.name, "position_accuracy": r.eval["position_accuracy"]} for r in runs],
            baseline=baseline),
        "entropy": entropy_table([{"run": r.name, "entropy": r.entropy} for r in runs]),
    }
    if with_steps:
        plot_entropy_vs_step([Series(r.label, r.method, r.steps) for r in with_steps], out / STEP_FIGURE,
                             title=f"Entropy per layer during training, from the snapshots ({on})")
        made[STEP_TABLE] = entropy_steps_table([{"run": r.name, "steps": r.steps} for r in with_steps])
    for stem, table in made.items():
        write_table(out, stem, table)
    return made


def write_report(out: Path, runs: Sequence[RunAnalysis], made: dict[str, Table], *, command: str | None,
                 title: str | None, intro: str, seconds: float, throughput: bool) -> None:
    """The throughput table (when measured), summary.json and, last, report.md, into ``out``."""
    thr = None
    if throughput:
        thr = throughput_table([
            {"run": r.name, "method": r.method, "pauses": r.pauses, "task": r.entropy["task"],
             "examples_per_s": (r.throughput or r.eval)["examples_per_s"]} for r in runs
        ])
        write_table(out, "throughput", thr)
        made = {**made, "throughput": thr}
    summary = summarize(runs, thr, command=command, title=title, seconds=seconds, throughput=throughput,
                        baseline=_context(runs)[1])
    write_json_atomic(out / SUMMARY_FILE, summary)
    write_text_atomic(out / REPORT_FILE, render_report(summary, made, intro))
