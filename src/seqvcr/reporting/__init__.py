"""What the run report (``seqvcr.analysis.report``) and the sweep report (``seqvcr.experiments.aggregate``)
are both made of: statistics (``stats``), the one Markdown-table and CSV writer (``tables``), figures
without pyplot (``figures``); the summary of a run report (``run``) with its tables (``run_tables``) and
figures (``run_figures``), and of a study (``study``) with its tables (``study_tables``), figures
(``study_figures``) and report (``study_report``). It reads no run directory: the numbers come from
``analysis`` and ``experiments``.
"""

from __future__ import annotations

__all__ = ["figures", "run", "run_figures", "run_tables", "stats", "study", "study_figures", "study_report",
           "study_tables", "tables"]
