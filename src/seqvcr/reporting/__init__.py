"""The reporting layer: what the run report (``seqvcr.analysis.report``) and the sweep report
(``seqvcr.experiments.aggregate``) are both made of.

* ``stats`` -- summaries and 95% confidence intervals: of a distribution (normal approximation) and
  over a few seeds (Student's t); an exact rank test comparing two settings over their seeds;
* ``tables`` -- :class:`~seqvcr.reporting.tables.Table`, the Markdown-table and CSV writers and the
  number formats of a cell;
* ``figures`` -- matplotlib ``Figure`` objects without pyplot, saved atomically as PNG;
* ``study`` -- the summary of a study (its runs, its settings over seeds), and what renders it:
  ``study_tables`` (Markdown, CSV) and ``study_figures`` (PNG).

It reads no run and knows no task: the reports above it choose what to count and how to draw it.
"""

from __future__ import annotations

__all__ = ["figures", "stats", "study", "study_figures", "study_tables", "tables"]
