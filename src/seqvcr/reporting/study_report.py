"""The report of a study over seeds, ``report.md`` with its CSVs and figures, rendered from a
:class:`~seqvcr.reporting.study.SweepSummary` (``seqvcr.experiments.aggregate`` reads the directory
into it): the overview, then per study its table over seeds, the means per layer and per answer
position, per run the steps to 0.5 / 0.9 validation exact match and the running-sum probe's R^2 (where
the runs were probed during training or with ``seqvcr probe``), its figures and the runs that are not in
the table.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from seqvcr.atomic import write_text_atomic
from seqvcr.reporting import study_figures as F
from seqvcr.reporting import study_tables as T
from seqvcr.reporting.figures import save_figure
from seqvcr.reporting.run import REPORT_FILE
from seqvcr.reporting.study import StudySummary, SweepSummary

__all__ = ["REPORT_FILE", "REPORT_MARK", "write_study_report"]

REPORT_MARK = "<!-- seqvcr sweep report -->"
LEGEND_OUTSIDE = ("layer_entropy", "position_accuracy", "learning_curves", "collapse")  # bbox "tight"


def write_study_report(dest: Path, summary: SweepSummary, directory: str, statuses: Sequence[str]) -> None:
    """Write ``dest/report.md``, the CSVs and the PNGs of ``summary`` (of the directory named
    ``directory``; run statuses counted in the order of ``statuses``); older PNGs in ``dest`` go."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.png"):
        old.unlink()
    md = [REPORT_MARK, f"# Sweep report: {summary.name}", ""] + _overview(directory, summary, statuses)
    for study in summary.studies:
        md += _study_section(study, summary, dest)
    T.write_study_csvs(dest, summary)
    write_text_atomic(dest / REPORT_FILE, "\n".join(md).rstrip() + "\n")


def _overview(directory: str, summary: SweepSummary, statuses: Sequence[str]) -> list[str]:
    """The lines under the report's title: the sweep, its runs, and how the statistics are made."""
    counts = Counter(r.status for r in summary.runs)
    machines = sorted({r.machine for r in summary.runs if r.machine})
    md: list[str] = []
    if summary.description:
        md += [summary.description, ""]
    md += [
        f"- sweep directory: `{directory}` ({len(summary.runs)} runs: "
        + ", ".join(f"{counts[k]} {k}" for k in statuses if k in counts) + ")",
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
    """One study: its table over seeds, the means per layer and per answer position, the per-run curves
    and probe tables where their data exist, its plots (written into ``dest``) and the runs that are not
    in the table."""
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
    done = [r for s in settings for r in s.done]
    present = {"curves": any(r.valid_curve for r in done), "probe": any(r.probe_r2 for r in done)}
    for name in (n for n, has in present.items() if has):  # as `seqvcr report STUDY --table NAME` prints
        caption, render = T.PRINTED[name]
        md += [caption.strip(), "", render(settings), ""]
    if _correlated(settings):
        md += ["Does collapse predict failure? " + T.correlation_text(settings), ""]
    for file, alt in _study_plots(study, metrics, dest):
        md += [f"![{alt}]({file})", ""]
    notes = {f"- {s.label}, seed {r.seed} (`runs/{r.id}`): {r.status}" + (f": {r.error}" if r.error else "")
             for s in settings for r in s.runs if r.status != "done"}
    if notes:
        md += ["Runs not in the table:", ""] + sorted(notes) + [""]
    return md


def _correlated(settings: T.Study) -> bool:
    """Whether the study has the 3 finished runs with exact match and entropy that a rank correlation
    needs (its section then says and draws how exact match follows entropy and the probe)."""
    return sum(entropy is not None for _, _, entropy, _ in T.run_points(settings)) >= 3


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
    if _correlated(settings):
        figures.append(("collapse", "exact match against entropy and probe R^2, per run",
                        F.correlation_figure(settings, title)))
    plots = []
    for stem, alt, fig in figures:
        if fig is not None:
            tight = {"bbox_inches": "tight"} if stem in LEGEND_OUTSIDE else {}
            save_figure(fig, dest / f"{slug}_{stem}.png", dpi=120, **tight)
            plots.append((f"{slug}_{stem}.png", alt))
    return plots
