"""Figures as ``matplotlib.figure.Figure`` objects, drawn and saved without ``pyplot``.

Importing or using this module never changes matplotlib's backend or any other global state (a
notebook's inline backend keeps working), and no figure is left open: a figure belongs to no backend
and is garbage once saved.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

__all__ = ["DPI", "grid_shape", "new_figure", "panels", "save_figure"]

DPI = 130


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure that belongs to no backend and to no pyplot state (see the module docstring)."""
    return Figure(figsize=figsize)


def grid_shape(n: int, ncols: int) -> tuple[int, int]:
    """``(rows, columns)`` of a grid of ``n`` panels at most ``ncols`` wide (at least one panel)."""
    ncols = max(1, min(ncols, n))
    return math.ceil(max(1, n) / ncols), ncols


def panels(fig: Figure, nrows: int, ncols: int, used: int) -> list[Any]:
    """The first ``used`` axes of an ``nrows`` x ``ncols`` grid, row by row; the others are switched off."""
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = [grid[i // ncols][i % ncols] for i in range(nrows * ncols)]
    for ax in axes[used:]:
        ax.axis("off")
    return axes[:used]


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = DPI, **kwargs: Any) -> Path:
    """Write ``fig`` as a PNG, atomically (temporary file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f"{p.stem}.tmp{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=dpi, format="png", **kwargs)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p
