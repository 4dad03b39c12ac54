"""Analysis of trained runs: layer-wise representation entropy, linear probes, the paper's figures and
tables, and reports.

Modules (imported on first use, so ``import seqvcr.analysis`` stays cheap):

* ``layer_entropy`` -- :func:`compute_layer_entropy`, :func:`write_entropy` (``seqvcr entropy``);
* ``plots`` / ``tables`` -- PNG figures and Markdown/CSV tables, for one run or several (made with
  ``seqvcr.reporting``, as the sweep report is);
* ``report`` -- :func:`build_report` (``seqvcr report``): measures the runs; ``run_summary`` -- the
  report's summary (``summary.json``), its figures and tables, and report.md rendered from them;
* ``probe`` -- :func:`probe_run` (``seqvcr probe``): ridge probes of the running sum per layer and position;
* ``cli`` -- the three subcommands.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report", "compute_layer_entropy", "probe_run", "write_entropy"]

_WHERE = {
    "compute_layer_entropy": "seqvcr.analysis.layer_entropy",
    "write_entropy": "seqvcr.analysis.layer_entropy",
    "build_report": "seqvcr.analysis.report",
    "probe_run": "seqvcr.analysis.probe",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'seqvcr.analysis' has no attribute {name!r}")
