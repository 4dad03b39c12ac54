"""The layout of a run directory and of a sweep directory: every file and folder name, stated once.

A training run (``seqvcr train``, kept in order by ``seqvcr.rundir``)::

    RUN_DIR/config.yaml               the resolved config (written first)
            metrics.jsonl             one JSON record per log interval and evaluation
            checkpoint.safetensors    weights, optimiser, RNG states: what resuming needs
            model.safetensors         the final weights
            result.json               written last: the run is finished iff it exists
            snapshots/step_N.safetensors, tensorboard/, wandb/run_id.txt   on request

What the measuring commands add: ``eval/`` (``seqvcr eval``), ``entropy.json`` / ``.csv`` /
``entropy_values.csv`` (``seqvcr entropy``), ``probe.json`` / ``.csv`` / ``.png`` (``seqvcr probe``).

A sweep (``seqvcr sweep``): ``SWEEP_DIR/plan.yaml``, ``manifest.json`` and ``runs/<id>/``, each run
directory with the files above plus ``spec.json`` (what the run is), ``eval.json`` (its evaluation on
the plan's file), ``train.log``, ``error.txt`` (a crash) and ``.lock`` (held while a worker runs it).
"""

from __future__ import annotations

# ---- a training run
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.safetensors"
MODEL_FILE = "model.safetensors"
RESULT_FILE = "result.json"
SNAPSHOT_DIR = "snapshots"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
WANDB_ID_FILE = "run_id.txt"

# ---- what the measuring commands add
EVAL_DIR = "eval"
ENTROPY_JSON = "entropy.json"
ENTROPY_CSV = "entropy.csv"
ENTROPY_VALUES_CSV = "entropy_values.csv"
ENTROPY_FILES = (ENTROPY_JSON, ENTROPY_CSV, ENTROPY_VALUES_CSV)
PROBE_JSON = "probe.json"
PROBE_CSV = "probe.csv"
PROBE_PNG = "probe.png"

# ---- a sweep
MANIFEST = "manifest.json"
PLAN_COPY = "plan.yaml"
RUNS = "runs"
SPEC = "spec.json"
EVAL = "eval.json"
ERROR = "error.txt"
LOG = "train.log"
LOCK = ".lock"
HELDOUT = "heldout.txt"
