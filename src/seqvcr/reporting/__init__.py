"""What the run report (``seqvcr.analysis.report``) and the sweep report (``seqvcr.experiments.aggregate``)
are both made of: statistics (``stats``), the one Markdown-table and CSV writer (``tables``), figures
without pyplot (``figures``), and the summary of a study (``study``) with its tables (``study_tables``)
and figures (``study_figures``). It reads no run and knows no task.
"""

from __future__ import annotations

__all__ = ["figures", "stats", "study", "study_figures", "study_tables", "tables"]
