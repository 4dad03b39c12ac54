"""The reports' one Markdown-table and CSV writer (:func:`markdown_table`, :func:`csv_text`), the number
formats of a cell, and :class:`Table`: raw values whose Markdown is formatted and whose CSV keeps full
precision, so the CSV next to a table holds the numbers behind it.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqvcr.atomic import write_text_atomic

__all__ = ["Table", "csv_text", "fmt", "fmt_p", "fmt_pm", "fmt_seconds", "markdown_table", "padded",
           "write_csv", "write_table"]


def fmt(value: Any, digits: int = 3, missing: str = "-") -> str:
    """A cell: a float with ``digits`` decimals, ``missing`` for None or NaN, anything else as ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_pm(mean: float, spread: float, digits: int = 3, sign: str = "±") -> str:
    """``mean ± spread`` (a standard deviation or a confidence half-width), both with ``digits``."""
    return f"{mean:.{digits}f} {sign} {spread:.{digits}f}"


def fmt_p(p: float) -> str:
    """A p-value to two significant digits, keeping a trailing zero (0.10, 0.35, 0.046, 7.2e-09)."""
    return f"{p:.2f}" if p >= 0.1 else f"{p:.2g}"


def padded(values: Sequence[Any], width: int, digits: int = 3) -> list[str]:
    """The cells (:func:`fmt`) of ``values``, then ``-`` up to ``width`` cells."""
    return [fmt(v, digits) for v in values] + ["-"] * (width - len(values))


def fmt_seconds(seconds: float | None) -> str:
    """``45 s`` below two minutes, else ``3.5 min``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (no trailing newline); cells are written with ``str``, as they are."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]], *, blank_nan: bool = False) -> str:
    """CSV text: a header line, then one line per row; None (and NaN with ``blank_nan``) is empty."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if v is None or (blank_nan and isinstance(v, float) and math.isnan(v)) else v
                    for v in row])
    return buf.getvalue()


def write_csv(path: str | os.PathLike[str], header: Sequence[str], rows: Sequence[Sequence[Any]], *,
              blank_nan: bool = False) -> Path:
    """Write :func:`csv_text` to ``path`` atomically."""
    return write_text_atomic(path, csv_text(header, rows, blank_nan=blank_nan))


@dataclass
class Table:
    """A header and rows of raw values; ``markdown_rows`` / ``markdown_header``, when given, are the
    Markdown cells and header (e.g. one ``mean +- half`` cell where the CSV has two columns)."""

    header: list[str]
    rows: list[list[Any]]
    markdown_rows: list[list[str]] = field(default_factory=list)
    digits: int = 3
    markdown_header: list[str] | None = None

    def to_markdown(self) -> str:
        rows = self.markdown_rows or [[fmt(v, self.digits) for v in r] for r in self.rows]
        return markdown_table(self.markdown_header or self.header, rows) + "\n"

    def to_csv(self) -> str:
        return csv_text(self.header, self.rows)


def write_table(out_dir: str | os.PathLike[str], stem: str, table: Table) -> None:
    """``OUT/<stem>.md`` and ``OUT/<stem>.csv``, each written atomically."""
    out = Path(out_dir)
    write_text_atomic(out / f"{stem}.md", table.to_markdown())
    write_text_atomic(out / f"{stem}.csv", table.to_csv())
