"""The run report's figures as PNG files, for one run or several side by side: entropy per layer (Fig. 2),
its distribution (Fig. 4), accuracy per answer position (Fig. 6), the learning curves (Fig. 5) and
entropy per layer against the training step (from the run's snapshots). Each takes a list of
:class:`Series` (one per run), so a configuration has the same colour in every figure; drawn and saved
with ``seqvcr.reporting.figures`` (no pyplot).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from seqvcr.reporting.figures import grid_shape, new_figure, panels, save_figure

__all__ = ["METHOD_COLORS", "Series", "plot_entropy_hist", "plot_entropy_per_layer", "plot_entropy_vs_step",
           "plot_loss_curves", "plot_position_accuracy"]

METHOD_COLORS: dict[str, str] = {
    "vanilla": "#1f77b4",
    "pause": "#ff7f0e",
    "seqvcr": "#2ca02c",
    "seqvcr_pause": "#d62728",
    "cot": "#9467bd",
}
_EXTRA_COLORS = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_LINESTYLES = ["-", "--", ":", "-."]


@dataclass
class Series:
    """One run in a figure: its legend label, its configuration (for the colour) and its data."""

    label: str
    method: str
    data: Any


def _styles(series: Sequence[Series]) -> list[dict[str, Any]]:
    """Colour by configuration; repeated configurations (seeds, variants) get other line styles."""
    seen: dict[str, int] = {}
    extra = 0
    out = []
    for s in series:
        k = seen.get(s.method, 0)
        seen[s.method] = k + 1
        color = METHOD_COLORS.get(s.method)
        if color is None:
            color = _EXTRA_COLORS[extra % len(_EXTRA_COLORS)]
            extra += 1
        out.append({"color": color, "linestyle": _LINESTYLES[k % len(_LINESTYLES)]})
    return out


def _title_and_save(fig: Figure, path: str | os.PathLike[str], title: str = "") -> Path:
    """The figure's title, a tight layout, and the PNG (cropped to what was drawn)."""
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path, bbox_inches="tight")


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:  # nothing drawn (no records): no empty legend
        ax.legend(fontsize=8, frameon=False)


def plot_entropy_per_layer(series: Sequence[Series], path: str | os.PathLike[str], title: str = "") -> Path:
    """Fig. 2: per-sequence entropy per layer (mean, 95% CI), the same over its ceiling log(min(T, d)),
    and the dataset-level entropy. ``series[i].data`` is a result of ``compute_layer_entropy``."""
    fig = new_figure((14, 3.9))
    axes = fig.subplots(1, 3)
    styles = _styles(series)
    max_layers = 1
    for s, st in zip(series, styles):
        layers = s.data["layers"]
        xs = [L["layer"] for L in layers]
        max_layers = max(max_layers, len(xs))
        axes[0].errorbar(xs, [L["mean"] for L in layers], yerr=[L["ci95_half"] for L in layers], marker="o",
                         ms=4, capsize=3, label=s.label, **st)
        axes[1].plot(xs, [L.get("mean_normalized", float("nan")) for L in layers], marker="o", ms=4,
                     label=s.label, **st)
        axes[2].plot(xs, [L["dataset"] for L in layers], marker="o", ms=4, label=s.label, **st)
    first = series[0].data if series else {}
    unit = "normalised entropy" if first.get("normalized") else "entropy (nats)"
    n = first.get("n", "?")
    titles = (f"per-sequence entropy (mean, 95% CI; {n} sequences)", "per-sequence entropy / log min(T, d)",
              "dataset-level entropy (one mean vector per sequence)")
    for ax, ax_title, ylabel in zip(axes, titles, (unit, "normalised entropy", unit)):
        ax.set_title(ax_title, fontsize=10)
        ax.set_xlabel("layer (L0 = embeddings)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(max_layers))
        ax.set_xticklabels([f"L{i}" for i in range(max_layers)])
        ax.grid(alpha=0.3)
    _legend(axes[0])
    return _title_and_save(fig, path, title)


def plot_entropy_hist(series: Sequence[Series], path: str | os.PathLike[str], title: str = "") -> Path:
    """Fig. 4: histograms of per-sequence entropy, one panel per layer, the runs overlaid on shared bins."""
    n_layers = max((len(s.data["layers"]) for s in series), default=1)
    nrows, ncols = grid_shape(n_layers, 4)
    header = 0.5 if title else 0.25  # inches above the panels: title and legend
    height = 2.6 * nrows + header
    fig = new_figure((3.4 * ncols, height))
    axes = panels(fig, nrows, ncols, n_layers)
    filled = len(series) <= 2  # more than two filled histograms blend into mud: outlines only
    styles = _styles(series)
    for layer, ax in enumerate(axes):
        vals = [s.data["layers"][layer]["values"] if layer < len(s.data["layers"]) else [] for s in series]
        flat = [v for vs in vals for v in vs]
        if not flat:
            ax.axis("off")
            continue
        lo, hi = min(flat), max(flat)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.05, hi + 0.05
        bins = [lo + (hi - lo) * i / 30 for i in range(31)]
        for s, st, vs in zip(series, styles, vals):
            if vs:
                if filled:
                    ax.hist(vs, bins=bins, color=st["color"], alpha=0.35)
                ax.hist(vs, bins=bins, color=st["color"], histtype="step", linewidth=1.4,
                        linestyle=st["linestyle"], label=s.label)
        ax.set_title(f"L{layer}", fontsize=10)
        ax.tick_params(labelsize=8)
        if layer % ncols == 0:
            ax.set_ylabel("sequences", fontsize=9)
        if layer // ncols == nrows - 1 or layer + ncols >= n_layers:
            unit = "normalised entropy" if series[0].data.get("normalized") else "entropy (nats)"
            ax.set_xlabel(unit, fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.08 / height, va="top")
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), fontsize=9, frameon=False,
                   bbox_to_anchor=(0.5, 1 - (0.3 if title else 0.02) / height))
    fig.tight_layout(rect=(0, 0, 1, 1 - header / height))
    return save_figure(fig, path, bbox_inches="tight")


def plot_position_accuracy(series: Sequence[Series], path: str | os.PathLike[str],
                           baseline: Sequence[float] | None = None, title: str = "",
                           position_note: str = "") -> Path:
    """Fig. 6: accuracy per answer position. ``series[i].data`` is a list of accuracies (position 0 first);
    ``baseline`` (optional) is the majority-class accuracy per position, drawn as the chance level."""
    fig = new_figure((8.5, 3.8))
    ax = fig.subplots()
    styles = _styles(series)
    width = 0
    for s, st in zip(series, styles):
        acc = list(s.data)
        width = max(width, len(acc))
        ax.plot(range(1, len(acc) + 1), acc, marker="o", ms=5, label=s.label, **st)
    if baseline:
        ax.plot(range(1, len(baseline) + 1), list(baseline), color="0.45", linestyle=(0, (2, 2)), marker="x",
                ms=5, label="majority-class baseline")
        width = max(width, len(baseline))
    ax.set_ylim(-0.03, 1.03)
    ax.set_xticks(range(1, width + 1))
    ax.set_xlabel("answer position" + (f" ({position_note})" if position_note else ""))
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title, fontsize=10)
    return _title_and_save(fig, path)


def plot_loss_curves(series: Sequence[Series], path: str | os.PathLike[str], title: str = "") -> Path:
    """Fig. 5: training LM loss (log scale), validation exact match and validation accuracy averaged over
    the answer positions (it moves before exact match does), against the step. ``series[i].data``: the
    records of a run's ``metrics.jsonl``."""
    fig = new_figure((14, 3.9))
    axes = fig.subplots(1, 3)
    styles = _styles(series)
    any_eval = False
    last_step = max((int(r.get("step", 0)) for s in series for r in s.data), default=1)
    for s, st in zip(series, styles):
        train = [r for r in s.data if r.get("kind") == "train" and r.get("lm_loss") is not None]
        evals = [r for r in s.data if r.get("kind") == "eval" and r.get("exact_match") is not None]
        if train:
            axes[0].plot([r["step"] for r in train], [max(float(r["lm_loss"]), 1e-6) for r in train],
                         label=s.label, **st)
        if evals:
            any_eval = True
            # a run logs its final evaluation at the last step too; keep the last record of each step
            by_step = {int(r["step"]): r for r in evals}
            steps = sorted(by_step)
            axes[1].plot(steps, [float(by_step[k]["exact_match"]) for k in steps], marker="o", ms=3,
                         label=s.label, **st)
            pos = [(k, by_step[k].get("position_accuracy")) for k in steps]
            pos = [(k, sum(p) / len(p)) for k, p in pos if p]
            if pos:
                axes[2].plot([k for k, _ in pos], [v for _, v in pos], marker="o", ms=3, label=s.label, **st)
    axes[0].set_yscale("log")
    plain = FuncFormatter(lambda y, _pos: f"{y:g}")
    axes[0].yaxis.set_major_formatter(plain)
    axes[0].yaxis.set_minor_formatter(plain)
    axes[0].tick_params(axis="y", which="minor", labelsize=7)
    for ax, ax_title, ylabel in zip(axes, ("training loss (next-token loss on the target tokens)",
                                           "validation exact match during training",
                                           "validation accuracy, mean over answer positions"),
                                    ("LM loss (log scale)", "exact match", "accuracy")):
        ax.set_title(ax_title, fontsize=10)
        ax.set_ylabel(ylabel)
    for ax in axes[1:]:
        ax.set_ylim(-0.03, 1.03)
        if not any_eval:
            ax.text(0.5, 0.5, "no evaluation records", ha="center", va="center", transform=ax.transAxes)
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_xlim(left=0, right=max(last_step, 1) * 1.02)
        ax.grid(alpha=0.3, which="major")
    _legend(axes[0])
    return _title_and_save(fig, path, title)


def plot_entropy_vs_step(series: Sequence[Series], path: str | os.PathLike[str], title: str = "") -> Path:
    """Entropy of every layer against the training step, one panel per run (a line per layer, L0 light to
    LN dark). ``series[i].data``: ``(step, result of compute_layer_entropy)`` pairs in step order."""
    import matplotlib

    nrows, ncols = grid_shape(len(series), 3)
    fig = new_figure((4.8 * ncols, 3.6 * nrows + 0.3))
    cmap = matplotlib.colormaps["viridis"]
    for s, ax in zip(series, panels(fig, nrows, ncols, len(series))):
        points = list(s.data)
        n_layers = max((len(r["layers"]) for _, r in points), default=0)
        steps = [step for step, _ in points]
        for layer in range(n_layers):
            ys = [r["layers"][layer]["mean"] if layer < len(r["layers"]) else float("nan") for _, r in points]
            color = cmap(0.9 * layer / max(1, n_layers - 1))
            ax.plot(steps, ys, marker="o", ms=3.5, color=color, label=f"L{layer}")
        unit = "normalised entropy" if points and points[0][1].get("normalized") else "entropy (nats)"
        ax.set_title(s.label, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"mean per-sequence {unit}")
        ax.grid(alpha=0.3)
        if n_layers:
            ax.legend(fontsize=7, frameon=False, ncol=2 if n_layers > 6 else 1)
    return _title_and_save(fig, path, title)
