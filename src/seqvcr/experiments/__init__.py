"""Ablation plans, sweeps, their executors and reports, and the demo (see docs/sweeps.md and the layer
table of docs/architecture.md)."""

from __future__ import annotations

__all__ = ["aggregate", "cli", "demo", "executors", "plan", "publish", "sweep"]
