"""Analysis of trained runs: layer-wise representation entropy (``layer_entropy``, ``seqvcr entropy``),
running-sum probes (``probe``, ``seqvcr probe``), and the run report (``report`` measures the runs,
``seqvcr.reporting.run`` summarises and renders them; ``seqvcr report``). The
modules are imported on first use, so ``import seqvcr.analysis`` stays cheap.
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
