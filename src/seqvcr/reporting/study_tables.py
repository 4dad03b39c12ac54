"""Markdown tables and CSV files of a study summary (``seqvcr.reporting.study``): the sweep report's
(:func:`setting_table`, :func:`means_table`, :func:`write_study_csvs`) and those ``seqvcr report STUDY
--table ...`` prints (:data:`PRINTED`, :func:`rank_test_text`), each a small function from the summary
to text: the numbers are made once, in the summary, and only laid out here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqvcr.errors import SeqVCRError
from seqvcr.reporting.stats import Stats, exact_rank_test, spearman_test
from seqvcr.reporting.study import (
    SettingSummary,
    StudySummary,
    SweepSummary,
    curve_stats,
    first_step_at,
    middle_positions,
    probe_middle,
)
from seqvcr.reporting.tables import fmt, fmt_p, fmt_pm, markdown_table, padded, write_csv

__all__ = ["PRINTED", "TERMS", "correlation_text", "holds_groups", "is_lambda_study", "lambda_pair",
           "means_table", "rank_test_text", "rho_text", "run_points", "setting_table", "study_tables_text",
           "write_study_csvs"]

Study = list[SettingSummary]


def pm_cell(st: Stats, digits: int = 3) -> str:
    """``mean ± std`` over seeds (the mean alone for one seed, ``--`` for none)."""
    if st.n == 0:
        return "--"
    return fmt(st.mean, digits) if st.n == 1 else fmt_pm(st.mean, st.std, digits)


def interval_cell(st: Stats, digits: int = 3, bounds: tuple[float, float] | None = None) -> str:
    """The 95% CI; ``bounds`` clips it to the metric's range (accuracy: [0, 1]) for display."""
    if st.n < 2:
        return "--"
    lo, hi = st.ci_low, st.ci_high
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def ci_cell(st: Stats, digits: int = 3) -> str:
    """``mean ± half-width of the 95% CI`` (the half-width alone is enough to read a table)."""
    if st.n == 0:
        return "-"
    half = st.ci_high - st.mean
    return fmt(st.mean, digits) if st.n == 1 or math.isnan(half) else fmt_pm(st.mean, half, digits)


def range_cell(vals: list[float], digits: int) -> str:
    """``mean (min-max)`` of the values, the value alone for one, ``-`` for none."""
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table whose cells may hold ``|`` (setting labels of crossed studies): escaped."""
    return markdown_table(header, [[c.replace("|", "\\|") for c in row] for row in rows])


def setting_table(study: Study, metrics: list[str], normalized: bool) -> str:
    """The report's study table: one row per setting, mean ± std and 95% CI of each summary metric."""
    header = ["setting", "seeds"]
    if "exact_match" in metrics:
        header += ["exact match (mean ± std)", "95% CI"]
    if "matrix_entropy" in metrics:
        header += ["entropy L1..L(N-1) (mean ± std)", "95% CI"]
    rows = []
    for s in study:
        skipped = sum(r.status == "skipped" for r in s.runs) == s.planned  # the plan skips every seed
        row = [s.label, "skipped" if skipped else f"{len(s.done)}/{s.planned}"]
        if "exact_match" in metrics:
            row += [pm_cell(s.exact_match), interval_cell(s.exact_match, bounds=(0.0, 1.0))]
        if "matrix_entropy" in metrics:
            row += [pm_cell(s.entropy), interval_cell(s.entropy, bounds=(0.0, 1.0) if normalized else None)]
        rows.append(row)
    return _md_table(header, rows)


def means_table(study: Study, which: str, prefix: str, digits: int) -> str:
    """One row per setting, one column per layer (``which="layer"``) or answer position: the mean over
    seeds."""
    per = [s.layer_entropy if which == "layer" else s.position_accuracy for s in study]
    width = max(len(p) for p in per)
    rows = [[s.label] + [fmt(p[k].mean, digits, missing="") if k < len(p) else "" for k in range(width)]
            for s, p in zip(study, per)]
    first = 0 if which == "layer" else 1  # layers from L0 (the embeddings), answer positions from 1
    return _md_table(["setting"] + [f"{prefix}{k + first}" for k in range(width)], rows)


#: The columns of the report's CSV files (NaN, as for a standard deviation over one seed, is empty).
SUMMARY_COLUMNS = ["study", "setting", "value", "seeds_planned", "seeds_done", "seeds", "exact_match_mean",
                   "exact_match_std", "exact_match_ci95_low", "exact_match_ci95_high", "entropy_mean",
                   "entropy_std", "entropy_ci95_low", "entropy_ci95_high", "notes"]
STATS_COLUMNS = ["n", "mean", "std", "ci95_low", "ci95_high"]
RUN_COLUMNS = ["id", "study", "setting", "seed", "status", "exact_match", "entropy_intermediate",
               "eval_examples", "steps", "train_time_s", "error"]


def _stats_cells(st: Stats) -> list[Any]:
    return [st.n, st.mean, st.std, st.ci_low, st.ci_high]


def _summary_row(name: str, s: SettingSummary) -> list[Any]:
    em, ent = s.exact_match, s.entropy
    return [name, s.label, s.value if not isinstance(s.value, (dict, list)) else s.label,
            s.planned, len(s.done), ",".join(str(r.seed) for r in s.done),
            em.mean, em.std, em.ci_low, em.ci_high, ent.mean, ent.std, ent.ci_low, ent.ci_high,
            "; ".join(sorted({r.error for r in s.runs if r.error}))]


def write_study_csvs(dest: Path, sweep: SweepSummary) -> None:
    """summary.csv (a row per setting), layer_entropy.csv, position_accuracy.csv and learning_curves.csv
    (a row per setting and layer, position or logged step), runs.csv (a row per run)."""
    rows: dict[str, list[list[Any]]] = {"summary": [], "layer": [], "position": [], "curve": []}
    for st in sweep.studies:
        for s in st.settings:
            rows["summary"].append(_summary_row(st.name, s))
            rows["layer"] += [[st.name, s.label, k, *_stats_cells(x)] for k, x in enumerate(s.layer_entropy)]
            rows["position"] += [[st.name, s.label, k, *_stats_cells(x)]
                                 for k, x in enumerate(s.position_accuracy, 1)]
            for kind, curves in (("valid_exact_match", [r.valid_curve for r in s.done]),
                                 ("train_lm_loss", [r.loss_curve for r in s.done])):
                rows["curve"] += [[st.name, s.label, kind, step, *_stats_cells(x)]
                                  for step, x in curve_stats(curves)]
    run_rows = [[r.id, r.study, r.setting, r.seed, r.status, r.exact_match, r.entropy_intermediate, r.eval_n,
                 r.steps, r.train_time_s, r.error] for r in sweep.runs]
    write_csv(dest / "summary.csv", SUMMARY_COLUMNS, rows["summary"], blank_nan=True)
    for file, key, column in (("layer_entropy.csv", "layer", "layer"),
                              ("position_accuracy.csv", "position", "position")):
        write_csv(dest / file, ["study", "setting", column, *STATS_COLUMNS], rows[key], blank_nan=True)
    write_csv(dest / "learning_curves.csv", ["study", "setting", "curve", "step", *STATS_COLUMNS],
              rows["curve"], blank_nan=True)
    write_csv(dest / "runs.csv", RUN_COLUMNS, run_rows, blank_nan=True)


def hardest_positions(study: Study, k: int = 2) -> list[int]:
    """The ``k`` answer positions (0-based) with the lowest accuracy averaged over the settings."""
    width = max((len(s.position_accuracy) for s in study), default=0)
    means = []
    for p in range(width):
        vals = [s.position_accuracy[p].mean for s in study if p < len(s.position_accuracy) and s.done]
        means.append(sum(vals) / len(vals) if vals else math.inf)
    return sorted(sorted(range(width), key=lambda p: means[p])[:k])


def ci_table(study: Study) -> str:
    """One row per setting: seeds, exact match (mean ± 95% CI), intermediate entropy, entropy per layer,
    accuracy of the hardest positions (mean ± 95% CI), all over the finished seeds."""
    layers = max((len(s.layer_entropy) for s in study), default=0)
    hard = hardest_positions(study)
    header = ["setting", "seeds", "exact match (95% CI)", "entropy L1..L(N-1)"]
    header += [f"entropy L{k}" for k in range(layers)]
    header += [f"accuracy, position {p + 1}" for p in hard]
    rows = [[s.label, f"{len(s.done)}/{s.planned}", ci_cell(s.exact_match), ci_cell(s.entropy),
             *padded([x.mean for x in s.layer_entropy], layers),
             *[ci_cell(s.position_accuracy[p], 2) if p < len(s.position_accuracy) else "-" for p in hard]]
            for s in study]
    return markdown_table(header, rows)


def position_table(study: Study) -> str:
    """Accuracy per answer position (1 = least significant digit), mean over seeds."""
    width = max((len(s.position_accuracy) for s in study), default=0)
    rows = [[s.label, *padded([st.mean for st in s.position_accuracy], width, 2)] for s in study]
    return markdown_table(["setting"] + [f"position {p + 1}" for p in range(width)], rows)


def run_table(study: Study) -> str:
    """One row per finished run: setting, seed, exact match, accuracy per position, entropy per layer."""
    done = [(s, r) for s in study for r in s.done]
    width = max((len(r.position_accuracy or []) for _, r in done), default=0)
    layers = max((len(r.layer_entropy or []) for _, r in done), default=0)
    header = ["setting", "seed", "exact match", *[f"pos {p + 1}" for p in range(width)],
              *[f"entropy L{k}" for k in range(layers)]]
    rows = [[s.label, r.seed, fmt(r.exact_match), *padded(r.position_accuracy or [], width, 2),
             *padded(r.layer_entropy or [], layers)] for s, r in done]
    return markdown_table(header, rows)


def curves_table(study: Study) -> str:
    """One row per finished run: the first validation probe at which exact match reaches 0.5 and 0.9
    (``-``: never), the best and the last probe, and the test score."""
    header = ["setting", "seed", "steps to 0.5", "steps to 0.9", "best valid (step)", "last valid (step)",
              "test exact match"]
    rows: list[list[Any]] = []
    for s in study:
        for r in s.done:
            curve = r.valid_curve
            best = max(curve, key=lambda sv: sv[1]) if curve else None
            at = [first_step_at(curve, t) for t in (0.5, 0.9)]
            rows.append([s.label, r.seed, *["-" if a is None else f"{a:,}" for a in at],
                         "-" if best is None else f"{best[1]:.3f} ({best[0]:,})",
                         "-" if not curve else f"{curve[-1][1]:.3f} ({curve[-1][0]:,})", fmt(r.exact_match)])
    return markdown_table(header, rows)


def probe_table(study: Study) -> str:
    """One row per finished run with a probe (``seqvcr probe``): exact match, the entropy of every layer
    and, per layer, the probe's R^2 of the running sum averaged over the middle answer positions."""
    done = [(s, r) for s in study for r in s.done if r.probe_r2]
    if not done:
        return "(no run has a probe.json: run `seqvcr probe RUN` first)"
    layers = max(len(r.probe_r2 or []) for _, r in done)
    width = len((done[0][1].probe_r2 or [[]])[0])
    mid = ", ".join(str(k + 1) for k in middle_positions(width))
    header = ["setting", "seed", "exact match"] + [f"entropy L{k}" for k in range(layers)]
    header += [f"R^2 L{k} (pos {mid})" for k in range(layers)]
    rows = [[s.label, r.seed, fmt(r.exact_match), *padded(r.layer_entropy or [], layers),
             *[fmt(v, 2) for v in probe_middle(r.probe_r2 or [])]] for s, r in done]
    return markdown_table(header, rows)


#: (column header, field of the last training record) of the terms table
TERMS = [("LM loss", "lm_loss"), ("variance hinge", "seqvcr_variance"),
         ("covariance term", "seqvcr_covariance"), ("Seq-VCR loss (weighted)", "seqvcr_loss")]


def terms_table(study: Study) -> str:
    """One row per setting: the loss terms of the last training record and the training time in
    minutes, each as the mean over the finished runs with its range."""
    header = ["setting", "seeds"] + [f"{name}, end" for name, _ in TERMS] + ["training time, min"]
    rows: list[list[Any]] = []
    for s in study:
        row: list[Any] = [s.label, f"{len(s.done)}/{s.planned}"]
        for _, key in TERMS:
            row.append(range_cell([r.final_train[key] for r in s.done if key in r.final_train], 3))
        row.append(range_cell([r.train_time_s / 60 for r in s.done if r.train_time_s is not None], 1))
        rows.append(row)
    return markdown_table(header, rows)


def _labels(spec: str) -> list[str]:
    """The setting labels of a rank-test group: ``spec`` split at ``|``."""
    return [x.strip() for x in spec.split("|") if x.strip()]


def holds_groups(study: Study, *specs: str) -> bool:
    """Whether ``study`` has a setting of every label named in ``specs`` (rank-test groups)."""
    present = {s.label for s in study}
    return all(x in present for spec in specs for x in _labels(spec))


def _group(study: Study, spec: str) -> tuple[list[str], list[float]]:
    """The labels named in ``spec`` (``|``-separated) and the exact match of their finished runs."""
    labels = _labels(spec)
    by_label = {s.label: s for s in study}
    unknown = [x for x in labels if x not in by_label]
    if unknown:
        raise SeqVCRError(f"rank test: no setting {unknown[0]!r}; settings: {', '.join(by_label)}")
    return labels, [r.exact_match for x in labels for r in by_label[x].done if r.exact_match is not None]


def rank_test_text(study: Study, spec_a: str, spec_b: str) -> str:
    """The rank test of group A over group B, as one Markdown paragraph."""
    la, a = _group(study, spec_a)
    lb, b = _group(study, spec_b)
    try:
        u, p, splits = exact_rank_test(a, b)
    except ValueError as err:
        raise SeqVCRError(str(err)) from None
    return (f"Rank test, exact match of {' + '.join(la)} ({len(a)} runs) over {' + '.join(lb)} ({len(b)} "
            f"runs): U = {u:g} of {len(a) * len(b)} pairs; exact one-sided p = {fmt_p(p)} ({splits} splits); "
            f"lowest of A {min(a):.3f}, highest of B {max(b):.3f}.")


def run_points(study: Study) -> list[tuple[str, float, float | None, float | None]]:
    """What the correlation compares, per finished run with an exact match: (setting label, exact match,
    entropy L1..L(N-1), the running-sum probe's R^2 at the middle positions averaged over L1..L(N-1));
    None where the run has no entropy, or no probe over at least one intermediate layer."""
    points = []
    for s in study:
        for r in s.done:
            if r.exact_match is None:
                continue
            mid = probe_middle(r.probe_r2) if r.probe_r2 else []
            probe = sum(mid[1:-1]) / len(mid[1:-1]) if len(mid) > 2 else None
            points.append((s.label, r.exact_match, r.entropy_intermediate, probe))
    return points


def correlation_text(study: Study) -> str:
    """Spearman's rho of exact match against intermediate entropy: over runs and over setting means; and
    against the running-sum probe's R^2 over the runs that have one."""
    points = run_points(study)
    runs = [(em, h) for _, em, h, _ in points if h is not None]
    means = [(s.exact_match.mean, s.entropy.mean) for s in study if s.exact_match.n and s.entropy.n]
    parts = [f"over {len(pairs)} {what}: {rho_text(pairs)}"
             for what, pairs in (("runs", runs), ("settings (means over seeds)", means))]
    text = "Spearman rank correlation of exact match with entropy L1..L(N-1), " + "; ".join(parts) + "."
    probed = [(em, r2) for _, em, _, r2 in points if r2 is not None]
    if probed:
        rho = rho_text(probed)
        text += (f" With the probe's R^2 of the running sum (middle positions, layers L1..L(N-1)), over "
                 f"{len(probed)} runs: {rho}." if rho.startswith("rho") else f" With the probe's R^2: {rho}.")
    return text


def rho_text(pairs: list[tuple[Any, Any]]) -> str:
    """``rho = ... (two-sided p = ...)`` of the pairs (``spearman_test``), or why it is not defined."""
    try:
        rho, p = spearman_test([a for a, _ in pairs], [b for _, b in pairs])
    except ValueError as err:
        return f"not defined ({str(err).removeprefix('spearman: ')})"
    return f"rho = {rho:+.2f} (two-sided p = {fmt_p(p)})"


def lambda_pair(s: SettingSummary) -> tuple[float, float]:
    """(lambda1, lambda2) of a setting of a lambda study, from its label ``lambda1=a, lambda2=b``."""
    text = s.label.replace(" ", "")
    parts = dict(item.split("=", 1) for item in text.split(",") if "=" in item)
    return float(parts["lambda1"]), float(parts["lambda2"])


def is_lambda_study(study: Study) -> bool:
    """Whether every setting is a pair ``lambda1=a, lambda2=b`` with a > 0."""
    try:
        return bool(study) and all(l1 > 0 for l1, _ in map(lambda_pair, study))
    except (KeyError, ValueError):
        return False


def family_scale(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(ratio lambda2/lambda1, scale) of each pair: the scale is lambda1 over the middle lambda1 of the
    pairs that share its ratio (x0.5, x1, x2 for the seed's families)."""
    ratio = [round(l2 / l1, 12) for l1, l2 in pairs]
    out = []
    for (l1, _), r in zip(pairs, ratio):
        l1s = sorted(a for (a, _), q in zip(pairs, ratio) if q == r)
        out.append((r, round(l1 / l1s[len(l1s) // 2], 6)))
    return out


def lambda_grid(study: Study) -> str:
    """Exact match (mean ± 95% CI) with one row per ratio lambda2/lambda1, one column per scale ("" when
    the study is not one of lambda pairs)."""
    if not is_lambda_study(study):
        return ""
    keys = family_scale([lambda_pair(s) for s in study])
    ratios = sorted({r for r, _ in keys})
    scales = sorted({c for _, c in keys})
    cell = {k: s for k, s in zip(keys, study)}

    def text(r: float, c: float) -> str:
        if (r, c) not in cell:
            return "-"
        l1, l2 = lambda_pair(cell[(r, c)])
        return f"{ci_cell(cell[(r, c)].exact_match)} ({l1:g}, {l2:g})"

    rows = [[f"{r:g}"] + [text(r, c) for c in scales] for r in ratios]
    return markdown_table(["lambda2 / lambda1"] + [f"scale x{c:g}" for c in scales], rows)


#: The tables ``seqvcr report STUDY --table NAME`` prints, in this order: name -> (caption, render).
#: ``main`` stands for study, positions and lambda (the grid of a study of lambda pairs only).
PRINTED: dict[str, tuple[str, Callable[[Study], str]]] = {
    "study": ("", ci_table),
    "positions": ("Accuracy per answer position (mean over seeds):\n\n", position_table),
    "lambda": ("Exact match by ratio and scale of the pair:\n\n", lambda_grid),
    "correlation": ("", correlation_text),
    "terms": ("Loss terms at the end of training (last training record) and training time, "
              "mean (range) over the finished runs:\n\n", terms_table),
    "runs": ("Runs:\n\n", run_table),
    "curves": ("Learning curves: the first validation probe at 0.5 and 0.9 exact match, per run:\n\n",
               curves_table),
    "probe": ("Entropy (Eq. 2) and the running-sum probe's held-out R^2 per layer, per run:\n\n",
              probe_table),
}
MAIN = ("study", "positions", "lambda")


def study_tables_text(study: StudySummary, names: list[str], rank_test: tuple[str, str] | None) -> str:
    """The Markdown of one study: a heading, the tables ``names`` (in :data:`PRINTED`'s order; ``main``
    stands for :data:`MAIN`), then the rank test of ``rank_test`` (A, B)."""
    if "lambda" in names and not is_lambda_study(study.settings):
        raise SeqVCRError(f"--table lambda: study {study.name!r} is not a study of lambda pairs")
    names = [*names, *MAIN] if "main" in names else names
    rank = rank_test_text(study.settings, *rank_test) if rank_test else None  # checked before printing
    parts = [f"### {study.name}: {study.part}\n"]
    for name, (caption, render) in PRINTED.items():
        text = render(study.settings) if name in names else ""
        if text:
            parts.append(caption + text + "\n")
    if rank:
        parts.append(rank + "\n")
    return "\n".join(parts) + "\n"
