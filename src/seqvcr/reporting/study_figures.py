"""Figures of a study summary (``seqvcr.reporting.study``), as ``Figure`` objects the caller saves: those
of the sweep report, and of ``seqvcr report STUDY --lambda-plot / --value-plot / --correlation-plot``. A
numeric ablated value is an axis whose settings a line joins; a categorical one (``over: batch`` /
``batch_time``) is a point per setting with its error bar, unjoined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from seqvcr.reporting.figures import new_figure
from seqvcr.reporting.stats import Stats
from seqvcr.reporting.study import SettingSummary, curve_stats
from seqvcr.reporting.study_tables import family_scale, lambda_pair, rho_text, run_points

__all__ = ["correlation_figure", "curves_figure", "lambda_figure", "lines_figure", "value_figure",
           "vs_value_figure"]

Study = list[SettingSummary]
MARKERS = "osD^vPX*<>"  # with tab10's colours, 100 settings told apart (the correlation figure)


def _colors(n: int) -> list[Any]:
    """``n`` distinct colours: tab10 up to ten, else spread over viridis."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i % 10) if n <= 10 else cmap(i / max(1, n - 1)) for i in range(n)]


def _groups(study: Study) -> list[tuple[str, list[tuple[Any, SettingSummary]]]]:
    """Series to draw: crossed studies get one series per combination of the other factors."""
    groups: dict[str, list[tuple[Any, SettingSummary]]] = {}
    for s in study:
        if len(s.factors) > 1:
            key = " | ".join(str(f[1]) for f in s.factors[1:])
            x = s.factors[0][2] if s.factors[0][2] is not None else s.factors[0][1]
            if not isinstance(x, (int, float)) or isinstance(x, bool):
                x = s.factors[0][1]
        else:
            key = ""
            x = s.value if s.value is not None else s.label
            if not isinstance(x, (int, float, str)) or isinstance(x, bool):
                x = s.label
        groups.setdefault(key, []).append((x, s))
    return list(groups.items())


@dataclass
class _Axis:
    """Where the ablated values go: numbers on a (log) axis, or categories at 0, 1, 2, ..."""

    numeric: bool
    log: bool
    ticks: list[str]
    position: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, values: list[Any]) -> _Axis:
        uniq = list(dict.fromkeys(values))
        if len(uniq) > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in uniq):
            xs = [float(v) for v in values]
            log = min(xs) > 0 and max(xs) / min(xs) >= 8
            return cls(True, log, [f"{v:g}" for v in uniq], {repr(v): float(v) for v in values})
        return cls(False, False, [str(v) for v in uniq], {repr(v): float(uniq.index(v)) for v in values})

    def format(self, ax: Any, values: list[Any]) -> None:
        if self.numeric:
            if self.log:
                ax.set_xscale("log", base=2 if all(float(v).is_integer() for v in values) else 10)
            uniq = sorted({float(v) for v in values})
            ax.set_xticks(uniq)
            ax.set_xticklabels([f"{v:g}" for v in uniq])
            ax.minorticks_off()
            return
        ax.set_xticks(range(len(self.ticks)))
        long = max(len(t) for t in self.ticks) > 12 or len(self.ticks) > 6
        ax.set_xticklabels(self.ticks, rotation=30 if long else 0, ha="right" if long else "center",
                           fontsize=8)
        ax.set_xlim(-0.5, len(self.ticks) - 0.5)


def vs_value_figure(study: Study, which: str, ylabel: str, title: str, xlabel: str) -> Figure | None:
    """Mean ± std over seeds of ``which`` (``exact_match`` or ``entropy``) against the ablated value, each
    seed a faint dot; None without data. The std, not the 95% CI (4-13 std wide for 2-3 seeds; it is in
    the tables), so the data stay visible."""
    groups = _groups(study)
    values = [x for _, items in groups for x, _ in items]
    axis = _Axis.of(values)
    fig = new_figure((7.0, 4.2))
    ax = fig.subplots()
    drawn = False
    for gi, ((name, items), color) in enumerate(zip(groups, _colors(max(10, len(groups))))):
        offset = 0.0 if axis.numeric or len(groups) == 1 else (gi - (len(groups) - 1) / 2) * 0.08
        points = [(axis.position[repr(x)] + offset, s.exact_match if which == "exact_match" else s.entropy)
                  for x, s in items]
        points = [(x, st) for x, st in points if st.n]
        for x, st in points:
            ax.scatter([x] * len(st.values), st.values, s=14, color=color, alpha=0.35, zorder=2, linewidths=0)
        if not points:
            continue
        drawn = True
        spread = [st.std if st.n > 1 else 0.0 for _, st in points]
        ax.errorbar([x for x, _ in points], [st.mean for _, st in points], yerr=[spread, spread], color=color,
                    marker="o", ms=5, capsize=3, lw=1.5, ls="-" if axis.numeric else "none",
                    label=name or None, zorder=3)
    if not drawn:
        return None
    axis.format(ax, values)
    if which == "exact_match":  # from 0; up to 1 unless every value is small (then zoom in)
        top = max(max(s.exact_match.values, default=0.0) for s in study)
        top = min(1.0, max(0.05, 1.15 * top + 0.01))
        ax.set_ylim(-0.03 * top, top * 1.03)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + "\n(mean ± std over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(groups) > 1:
        ax.legend(fontsize=8, title=None, loc="best")
    fig.tight_layout()
    return fig


def _line_series(study: Study, which: str) -> tuple[list[str], list[str], list[tuple[str, str, list[Stats]]]]:
    """(first-factor levels, panels, (level, panel, stats per layer or position)) of a study."""
    firsts: list[str] = []
    panels: list[str] = []
    series = []
    for s in study:
        sts = s.layer_entropy if which == "layer" else s.position_accuracy
        first = str(s.factors[0][1]) if s.factors else s.label
        rest = " | ".join(str(f[1]) for f in s.factors[1:])
        firsts += [first] if first not in firsts else []
        if sts and any(st.n for st in sts):
            panels += [rest] if rest not in panels else []
            series.append((first, rest, sts))
    return firsts, panels, series


def lines_figure(study: Study, which: str, xlabel: str, ylabel: str, title: str) -> Figure | None:
    """One line per setting (mean ± std): entropy per layer (``which="layer"``) or accuracy per answer
    position; None without data. A crossed study gets a panel per level of its other factors (their layer
    counts or answer lengths may differ), lines coloured by the first factor's level."""
    firsts, panels, series = _line_series(study, which)
    if not series:
        return None
    fig = new_figure((2.2 + 3.6 * len(panels), 4.4))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    colors = _colors(len(firsts))
    handles: dict[str, Any] = {}
    for ax, panel in zip(axes, panels):
        width = 0
        for first, _, sts in (x for x in series if x[1] == panel):
            color = colors[firsts.index(first)]
            xs = [k for k, st in enumerate(sts) if st.n]
            (line,) = ax.plot(xs, [sts[k].mean for k in xs], marker="o", ms=3.5, lw=1.4, color=color)
            handles.setdefault(first, line)
            if len(firsts) <= 6:
                _std_band(ax, xs, [sts[k] for k in xs], color)
            width = max(width, len(sts))
        ax.set_xticks(range(width))
        # layers from L0; answer positions from 1, as in the run report (multiplication: least significant)
        ax.set_xticklabels([f"L{k}" if which == "layer" else str(k + 1) for k in range(width)], fontsize=8)
        if which != "layer":
            ax.set_ylim(-0.03, 1.03)
        ax.set_xlim((-0.5, 0.5) if width <= 1 else (-0.3, width - 0.7))
        ax.set_xlabel(xlabel)
        if panel:
            ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=10)
    _legend_right(fig, [handles[f] for f in firsts if f in handles], [f for f in firsts if f in handles])
    return fig


def curves_figure(study: Study, title: str) -> Figure | None:
    """Learning curves: validation exact match (left) and training LM loss (right, log scale) against
    the step, one line per setting (mean over its finished seeds, a band of ± 1 std); None without data."""
    series = [
        (s.label, curve_stats([r.valid_curve for r in s.done]), curve_stats([r.loss_curve for r in s.done]))
        for s in study
    ]
    series = [x for x in series if x[1] or x[2]]
    if not series:
        return None
    fig = new_figure((11.0, 4.2))
    ax_em, ax_lm = fig.subplots(1, 2)
    for (label, em, lm), color in zip(series, _colors(len(series))):
        for ax, pts in ((ax_em, em), (ax_lm, lm)):
            if not pts:
                continue
            xs = [step for step, _ in pts]
            ax.plot(xs, [st.mean for _, st in pts], lw=1.3, color=color, label=label)
            _std_band(ax, xs, [st for _, st in pts], color)
    ax_em.set_ylim(-0.03, 1.03)
    ax_em.set_ylabel("validation exact match (periodic probe)")
    ax_lm.set_yscale("log")
    ax_lm.set_ylabel("training LM loss (per logged interval)")
    for ax in (ax_em, ax_lm):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title + "\n(mean ± std over seeds)", fontsize=10)
    handles, labels = ax_em.get_legend_handles_labels()
    if not handles:
        handles, labels = ax_lm.get_legend_handles_labels()
    _legend_right(fig, handles, labels)
    return fig


def _std_band(ax: Any, xs: list[Any], sts: list[Stats], color: Any) -> None:
    """A band of +- 1 std over seeds around the means (none unless every point has two seeds)."""
    if all(st.n > 1 for st in sts):
        ax.fill_between(xs, [st.mean - st.std for st in sts], [st.mean + st.std for st in sts], color=color,
                        alpha=0.12, lw=0)


def _legend_right(fig: Figure, handles: list[Any], labels: list[str]) -> None:
    """The figure's legend to the right of its panels, and a tight layout."""
    fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()


def _ci_panels(study: Study, xs: list[float], xlabel: str, style: list[dict[str, Any]]) -> tuple[Figure, Any]:
    """Exact match (left) and intermediate entropy (right) of each setting at ``xs``, mean ± 95% CI (no
    bar for one seed)."""
    fig = new_figure((10.0, 4.0))
    axes = fig.subplots(1, 2)
    labels = ("exact match (test), mean ± 95% CI", "entropy L1..L(N-1), mean ± 95% CI")
    for ax, which, ylabel in zip(axes, ("exact_match", "entropy"), labels):
        for x, st, kw in zip(xs, [getattr(s, which) for s in study], style):
            half = 0.0 if st.n < 2 or math.isnan(st.ci_high) else st.ci_high - st.mean
            if st.n:
                ax.errorbar([x], [st.mean], yerr=[[half], [half]], capsize=3, ms=6, **kw)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    return fig, axes


def lambda_figure(study: Study) -> Figure:
    """Exact match and intermediate entropy against lambda2/lambda1 (log axis); marker = scale."""
    keys = family_scale([lambda_pair(s) for s in study])
    markers = {0.5: ("v", "tab:blue"), 1.0: ("o", "tab:orange"), 2.0: ("^", "tab:green")}
    xs, style, seen = [], [], set()
    for r, scale in keys:
        marker, color = markers.get(round(scale, 6), ("s", "tab:gray"))
        xs.append(r * (1.0 + 0.08 * (round(math.log2(scale)) if scale > 0 else 0)))
        style.append({"fmt": marker, "color": color,
                      "label": f"x{scale:g} of the family's middle pair" if scale not in seen else None})
        seen.add(scale)
    fig, axes = _ci_panels(study, xs, "lambda2 / lambda1", style)
    for ax in axes:
        ax.set_xscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("Seq-VCR coefficients: ratio (x axis) and scale (marker)", fontsize=10)
    fig.tight_layout()
    return fig


def value_figure(study: Study, xlabel: str) -> Figure:
    """Exact match and intermediate entropy against the (numeric) ablated value, log2 axis."""
    xs = [float(s.value) for s in study]
    fig, axes = _ci_panels(study, xs, xlabel, [{"fmt": "o", "color": "tab:blue"}] * len(study))
    for ax, which in zip(axes, ("exact_match", "entropy")):
        ax.plot(xs, [getattr(s, which).mean for s in study], color="tab:blue", alpha=0.4)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
    fig.tight_layout()
    return fig


def correlation_figure(study: Study, title: str) -> Figure:
    """Exact match of every finished run against its intermediate layers' entropy (left) and against the
    running-sum probe's R^2 at the middle positions (right; runs with a ``probe.json``), one marker per
    setting, Spearman's rho over the runs above each panel: the picture of ``--table correlation``."""
    points = run_points(study)
    labels = list(dict.fromkeys(label for label, *_ in points))
    colors = _colors(min(len(labels), 10))
    fig = new_figure((11.0, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    handles: dict[str, Any] = {}
    for ax, k, xlabel in zip(axes, (2, 3), ("entropy L1..L(N-1)",
                                            "probe R^2 of the running sum, middle positions, L1..L(N-1)")):
        pairs = [(p[k], p[1]) for p in points if p[k] is not None]
        for i, label in enumerate(labels):
            xy = [(p[k], p[1]) for p in points if p[0] == label and p[k] is not None]
            if xy:
                handles[label] = ax.scatter([x for x, _ in xy], [y for _, y in xy], s=30, alpha=0.85,
                                            marker=MARKERS[i // 10 % len(MARKERS)], color=colors[i % 10],
                                            linewidths=0)
        ax.set_title(f"{len(pairs)} runs: {rho_text([(y, x) for x, y in pairs])}" if pairs
                     else "no run has this measurement", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("exact match (test)")
    fig.suptitle(title, fontsize=10)
    _legend_right(fig, [handles[x] for x in labels if x in handles], [x for x in labels if x in handles])
    return fig
