"""The report of a sweep or published study over seeds (docs/sweeps.md, "Reports").

The directory is read once into a ``seqvcr.reporting.study.SweepSummary`` (:func:`collect`), so a copied
directory reports the same anywhere, and rendered from it by ``seqvcr.reporting``: :func:`report_sweep`
writes ``SWEEP_DIR/report`` (``study_report``), :func:`print_tables` prints what ``seqvcr report STUDY
--table ... / --rank-test A B`` asks for (``study_tables``, ``study_figures``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from seqvcr.analysis.probe import PROBE_JSON
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
from seqvcr.reporting.study_report import REPORT_FILE, REPORT_MARK, write_study_report
from seqvcr.runs import METRICS_FILE, RESULT_FILE

__all__ = ["Stats", "collect", "print_tables", "report_sweep", "summarize", "t_quantile"]



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
                 value_plot: str | Path | None = None, correlation_plot: str | Path | None = None,
                 exclude: Sequence[str] = ()) -> None:
    """Print the Markdown ``tables`` (names of ``seqvcr.reporting.study_tables.PRINTED``, or ``main``)
    of every study of every directory on stdout; with several studies, the tables again over all their
    runs pooled (settings named ``directory: label``), so that, e.g., a correlation spans every study;
    ``exclude`` leaves the settings of these labels out of every table. The rank test goes with each
    study holding both of its groups or, where none does, with the pooled settings (groups named
    ``directory: label``). Draw the lambda / value plots of each study, and the correlation plot of the
    last table printed (the pooled settings, or the one study). Everything is checked before anything is
    printed."""
    summaries = [(Path(d), collect(d)) for d in sweep_dirs]
    labels = {s.label for _, summary in summaries for st in summary.studies for s in st.settings}
    if unknown := [x for x in exclude if x not in labels]:
        raise RunDirError(f"--exclude: no setting {unknown[0]!r}; settings: {', '.join(sorted(labels))}")
    studies = [(d, replace(st, settings=[s for s in st.settings if s.label not in exclude]))
               for d, summary in summaries for st in summary.studies]
    printed = [st for _, st in studies]
    if len(studies) > 1 and "lambda" not in tables:
        settings = [replace(s, label=f"{d.name}: {s.label}") for d, st in studies for s in st.settings]
        printed.append(StudySummary("all", f"the {len(studies)} studies above, pooled", None, [], settings))
    tested = _rank_tested(printed, len(studies), rank_test)
    texts = [T.study_tables_text(st, tables, rank_test if any(st is t for t in tested) else None)
             for st in printed]
    sys.stdout.write("".join(texts))
    for _, st in studies:
        if lambda_plot is not None:
            save_figure(F.lambda_figure(st.settings), lambda_plot, dpi=120)
        if value_plot is not None:
            save_figure(F.value_figure(st.settings, st.xlabel), value_plot, dpi=120)
    if correlation_plot is not None:
        last = printed[-1]  # the pooled settings when there are several studies, else the one
        pooled = len(printed) > len(studies)
        title = ", ".join(d.name for d, _ in summaries) + (": every run pooled" if pooled else "")
        title += f" (left out: {', '.join(exclude)})" if exclude else ""
        fig = F.correlation_figure(last.settings, title)
        save_figure(fig, correlation_plot, dpi=120, bbox_inches="tight")


def _rank_tested(printed: list[StudySummary], n_single: int,
                 rank_test: tuple[str, str] | None) -> list[StudySummary]:
    """The studies the rank test ``rank_test`` goes with: each of the first ``n_single`` (single studies)
    that holds both groups or, where none does, the pooled one after them; a one-line error when none
    holds them."""
    if rank_test is None:
        return []
    singles, pooled = printed[:n_single], printed[n_single:]
    holding = [st for st in singles if T.holds_groups(st.settings, *rank_test)]
    holding = holding or [st for st in pooled if T.holds_groups(st.settings, *rank_test)]
    if not holding:
        names = "; ".join(f"{st.name}: {', '.join(s.label for s in st.settings)}" for st in singles)
        across = " (across directories: 'directory: label')" if pooled else ""
        raise RunDirError(f"--rank-test: no study has every setting of {rank_test[0]!r} and "
                          f"{rank_test[1]!r}; settings by study{across}: {names}")
    return holding


def report_sweep(sweep_dir: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """Write the report of a sweep into ``out`` (default SWEEP_DIR/report), replacing a report written there
    before (a folder that holds something else only with ``force``); returns report.md's path."""
    sweep = Path(sweep_dir)
    summary = collect(sweep)
    dest = Path(out) if out is not None else sweep / "report"
    md_file = dest / REPORT_FILE
    ours = md_file.is_file() and REPORT_MARK in md_file.read_text()[:400]  # a report written before
    if dest.exists() and any(dest.iterdir()) and not force and not ours:
        raise RunDirError(f"{dest}: exists and does not hold a sweep report; use --force or another --out")
    write_study_report(dest, summary, sweep.name, S.STATUSES)
    return md_file
