"""Ablation plans, sweeps, executors and aggregated reports (see docs/sweeps.md).

* ``plan``: the plan YAML format and its validation (``load_plan``);
* ``sweep``: expansion into runs with stable ids, the sweep directory and the worker (``run_one``);
* ``executors``: local process pool, SLURM job array (submitit), printed commands;
* ``aggregate``: ``report_sweep``: tables (Markdown, CSV) and plots over seeds, made with
  ``seqvcr.reporting``;
* ``publish``: a finished sweep as a study directory to commit (``scripts/publish_runs.py``);
* ``demo``: ``seqvcr demo``, the main job: the paper's configurations as a sweep plan, run by the local
  executor, and their report;
* ``cli``: the ``seqvcr sweep``, ``seqvcr sweep-run`` and ``seqvcr demo`` subcommands, and ``seqvcr report
  SWEEP_DIR``.
"""

from __future__ import annotations

__all__ = ["aggregate", "cli", "demo", "executors", "plan", "publish", "sweep"]
