"""The report of a sweep or published study over seeds (docs/sweeps.md, "Reports").

The directory is read once into a ``seqvcr.reporting.study.SweepSummary`` (:func:`collect`), so a copied
directory reports the same anywhere, and rendered from it by ``seqvcr.reporting.study_tables`` (Markdown,
CSV) and ``study_figures`` (PNG): :func:`report_sweep` writes ``SWEEP_DIR/report``, :func:`print_tables`
prints what ``seqvcr report STUDY --table ... / --rank-test A B`` asks for.
"""

from __future__ import annotations

import sys
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from seqvcr.analysis.probe import PROBE_JSON
from seqvcr.atomic import write_text_atomic
from seqvcr.errors import RunDirError
from seqvcr.experiments import sweep as S
from seqvcr.reporting import study_figures as F
from seqvcr.reporting import study_tables as T
from seqvcr.reporting.figures import save_figure
from seqvcr.reporting.stats import Stats, summarize, t_quantile
from seqvcr.reporting.study import (
    RunRecord,
    StudySummary,
    SweepSummary,
    intermediate_mean,
    layer_means,
    summarize_sweep,
)
from seqvcr.runs import METRICS_FILE, RESULT_FILE

__all__ = ["Stats", "collect", "print_tables", "report_sweep", "summarize", "t_quantile"]

REPORT_MARK = "<!-- seqvcr sweep report -->"
LEGEND_OUTSIDE = ("layer_entropy", "position_accuracy", "learning_curves")  # saved with bbox "tight"


def read_curves(
    metrics_file: Path,
) -> tuple[list[tuple[int, float]], list[tuple[int, float]], dict[str, float]]:
    """The learning curves of a run's ``metrics.jsonl`` (a torn last line is skipped): validation exact
    match and training LM loss, and the numeric fields of its last training record (the loss terms at
    the end of training)."""
    from seqvcr.analysis.report import read_metrics  # torch-free callers of the sweep report stay so

    records = read_metrics(metrics_file.parent) if metrics_file.is_file() else []
    valid = [(int(r["step"]), float(r["exact_match"])) for r in records
             if r.get("kind") == "eval" and r.get("split") == "valid" and "exact_match" in r]
    train = [r for r in records if r.get("kind") == "train" and "lm_loss" in r]
    final = {k: float(v) for k, v in (train[-1] if train else {}).items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return valid, [(int(r["step"]), float(r["lm_loss"])) for r in train], final


def read_run(sweep: Path, run: dict[str, Any]) -> RunRecord:
    """The record of one run of the manifest: its status, and for a finished run the numbers of its
    result.json, eval.json, entropy.json and metrics.jsonl."""
    rd = S.run_path(sweep, run)
    status = S.run_status(sweep, run["id"], rd)
    rec = RunRecord(run["id"], int(run["seed"]), status)
    if status == "skipped":
        rec.error = run.get("skip") or (S.read_json(rd / S.SPEC) or {}).get("skip")
    if (rd / S.ERROR).is_file() and status != "done":
        rec.error = (rd / S.ERROR).read_text().splitlines()[0] if (rd / S.ERROR).stat().st_size else "error"
    if status != "done":
        return rec
    result = S.read_json(rd / RESULT_FILE) or {}
    rec.steps = result.get("steps")
    rec.train_time_s = result.get("train_time_s")
    rec.machine = result.get("machine_description")
    ev = S.read_json(rd / S.EVAL)
    if ev:
        rec.exact_match = ev.get("exact_match")
        rec.position_accuracy = ev.get("position_accuracy")
        rec.eval_n = ev.get("n")
    ent = S.read_json(rd / S.ENTROPY)
    if ent:
        rec.layer_entropy = layer_means(ent)
        rec.entropy_intermediate = intermediate_mean(rec.layer_entropy)
    rec.valid_curve, rec.loss_curve, rec.final_train = read_curves(rd / METRICS_FILE)
    probe = S.read_json(rd / PROBE_JSON)
    if probe and isinstance(probe.get("r2"), list):
        rec.probe_r2 = [[float(v) for v in row] for row in probe["r2"]]
    return rec


def collect(sweep_dir: str | Path) -> SweepSummary:
    """The summary of a sweep (or published study) directory: every run read once, every setting
    summarised over its seeds, in plan order."""
    sweep = Path(sweep_dir)
    manifest = S.load_manifest(sweep)
    records = {r["id"]: read_run(sweep, r) for r in manifest["runs"]}
    return summarize_sweep(manifest, records)


def print_tables(sweep_dirs: Sequence[str | Path], tables: list[str], *,
                 rank_test: tuple[str, str] | None = None, lambda_plot: str | Path | None = None,
                 value_plot: str | Path | None = None, exclude: Sequence[str] = ()) -> None:
    """Print the Markdown ``tables`` (names of ``seqvcr.reporting.study_tables.PRINTED``, or ``main``)
    and the rank test of every study of every directory on stdout; with several studies, the tables
    again over all their runs pooled (settings named ``directory: label``), so that, e.g., a correlation
    spans every study; ``exclude`` leaves the settings of these labels out of every table. Draw the
    lambda / value plots. Everything is checked before anything is printed."""
    summaries = [(Path(d), collect(d)) for d in sweep_dirs]
    labels = {s.label for _, summary in summaries for st in summary.studies for s in st.settings}
    if unknown := [x for x in exclude if x not in labels]:
        raise RunDirError(f"--exclude: no setting {unknown[0]!r}; settings: {', '.join(sorted(labels))}")
    studies = [(d, replace(st, settings=[s for s in st.settings if s.label not in exclude]))
               for d, summary in summaries for st in summary.studies]
    texts = [T.study_tables_text(st, tables, rank_test) for _, st in studies]
    if len(studies) > 1 and "lambda" not in tables:
        pooled = [replace(s, label=f"{d.name}: {s.label}") for d, st in studies for s in st.settings]
        part = f"the {len(studies)} studies above, pooled"
        texts.append(T.study_tables_text(StudySummary("all", part, None, [], pooled), tables, None))
    sys.stdout.write("".join(texts))
    for _, st in studies:
        if lambda_plot is not None:
            save_figure(F.lambda_figure(st.settings), lambda_plot, dpi=120)
        if value_plot is not None:
            save_figure(F.value_figure(st.settings, st.xlabel), value_plot, dpi=120)


def report_sweep(sweep_dir: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """Write the report of a sweep into ``out`` (default SWEEP_DIR/report), replacing a report written there
    before (a folder that holds something else only with ``force``); returns report.md's path."""
    sweep = Path(sweep_dir)
    summary = collect(sweep)
    dest = Path(out) if out is not None else sweep / "report"
    md_file = dest / "report.md"
    ours = md_file.is_file() and REPORT_MARK in md_file.read_text()[:400]  # a report written before
    if dest.exists() and any(dest.iterdir()) and not force and not ours:
        raise RunDirError(f"{dest}: exists and does not hold a sweep report; use --force or another --out")
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.png"):
        old.unlink()
    md = [REPORT_MARK, f"# Sweep report: {summary.name}", ""] + _overview(sweep, summary)
    for study in summary.studies:
        md += _study_section(study, summary, dest)
    T.write_study_csvs(dest, summary)
    write_text_atomic(md_file, "\n".join(md).rstrip() + "\n")
    return md_file


def _overview(sweep: Path, summary: SweepSummary) -> list[str]:
    """The lines under the report's title: the sweep, its runs, and how the statistics are made."""
    counts = Counter(r.status for r in summary.runs)
    machines = sorted({r.machine for r in summary.runs if r.machine})
    md: list[str] = []
    if summary.description:
        md += [summary.description, ""]
    md += [
        f"- sweep directory: `{sweep.name}` ({len(summary.runs)} runs: "
        + ", ".join(f"{counts[k]} {k}" for k in S.STATUSES if k in counts) + ")",
        f"- seeds: {', '.join(map(str, summary.seeds))}; metrics: {', '.join(summary.metrics)}",
        f"- base config: `{summary.base or '(inline)'}`; eval data: "
        + (f"`{summary.eval_data}`" if summary.eval_data else "each setting's task.test_file, "
           "else its held-out validation set")
        + (f" (first {summary.eval_limit} examples)" if summary.eval_limit else ""),
    ]
    if machines:
        md.append(f"- measured on: {'; '.join(machines)}")
    md += [
        "- statistics over seeds: mean ± sample std; 95% CI = mean ± t(0.975, n-1)·std/√n (Student's t; "
        "shown clipped to [0, 1] for exact match and normalised entropy, unclipped in summary.csv); "
        "one seed gives no CI; plots show mean ± std",
        "- entropy: matrix entropy (Eq. 2, von Neumann) of each sequence's token representations per layer, "
        + ("divided by log(min(T, d)) (values in [0, 1], comparable across sequence lengths), "
           if summary.entropy_normalize else "in nats, ")
        + f"mean over {summary.entropy_sequences} sequences; the summary column averages the "
        "intermediate layers L1..L(N-1)",
        "",
    ]
    return md


def _study_section(study: StudySummary, summary: SweepSummary, dest: Path) -> list[str]:
    """One study: its table over seeds, the means per layer and per answer position, its plots (written
    into ``dest``) and the runs that are not in the table."""
    metrics, settings = summary.metrics, study.settings
    md = [f"## {study.name}", ""]
    if study.part:
        md += [f"Ablated part: {study.part} (action: {study.action})", ""]
    md += [T.setting_table(settings, metrics, summary.entropy_normalize), ""]
    if "matrix_entropy" in metrics and any(s.layer_entropy for s in settings):
        width = max(len(s.layer_entropy) for s in settings)
        md += [f"Entropy per layer (mean over seeds; L0 = embeddings, L{width - 1} = last layer):", ""]
        md += [T.means_table(settings, "layer", "L", 3), ""]
    if "position_accuracy" in metrics and any(s.position_accuracy for s in settings):
        md += ["Accuracy per answer position (mean over seeds; position 1 = the first answer token "
               "of the file's order, for multiplication the least significant digit):", ""]
        md += [T.means_table(settings, "position", "p", 2), ""]
    for file, alt in _study_plots(study, metrics, dest):
        md += [f"![{alt}]({file})", ""]
    notes = {f"- {s.label}, seed {r.seed} (`runs/{r.id}`): {r.status}" + (f": {r.error}" if r.error else "")
             for s in settings for r in s.runs if r.status != "done"}
    if notes:
        md += ["Runs not in the table:", ""] + sorted(notes) + [""]
    return md


def _slug(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return keep.strip("_") or "study"


def _study_plots(study: StudySummary, metrics: list[str], dest: Path) -> list[tuple[str, str]]:
    """Draw the study's plots into ``dest``; returns (file, alt text) of those that have data."""
    slug, settings = _slug(study.name), study.settings
    title = "\n".join(textwrap.wrap(study.part or study.name, 72))
    figures = []
    if "exact_match" in metrics:
        figures.append(("accuracy", "exact match vs ablated value",
                        F.vs_value_figure(settings, "exact_match", "exact match", title, study.xlabel)))
    if "matrix_entropy" in metrics:
        figures.append(("entropy", "entropy vs ablated value", F.vs_value_figure(
            settings, "entropy", "entropy of layers L1..L(N-1)", title, study.xlabel)))
        figures.append(("layer_entropy", "entropy per layer", F.lines_figure(
            settings, "layer", "layer", "matrix entropy (mean ± std over seeds)", title)))
    if "position_accuracy" in metrics:
        figures.append(("position_accuracy", "accuracy per answer position", F.lines_figure(
            settings, "position", "answer position", "accuracy (mean ± std over seeds)", title)))
    figures.append(("learning_curves", "learning curves", F.curves_figure(settings, title)))
    plots = []
    for stem, alt, fig in figures:
        if fig is not None:
            tight = {"bbox_inches": "tight"} if stem in LEGEND_OUTSIDE else {}
            save_figure(fig, dest / f"{slug}_{stem}.png", dpi=120, **tight)
            plots.append((f"{slug}_{stem}.png", alt))
    return plots
