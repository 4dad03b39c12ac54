"""Where training metrics go: ``metrics.jsonl`` always, TensorBoard and Weights & Biases on request.

``train.log_to`` lists the targets (:data:`LOG_TARGETS`)::

    jsonl        RUN_DIR/metrics.jsonl, one JSON record per line (always on: reports and resuming read it)
    tensorboard  RUN_DIR/tensorboard/events.out.tfevents.*  (pip install 'seqvcr[tensorboard]';
                 view with `tensorboard --logdir RUN_DIR/tensorboard`)
    wandb        a Weights & Biases run in RUN_DIR/wandb/ (pip install 'seqvcr[wandb]'), project
                 ``train.wandb_project``, mode ``train.wandb_mode``: ``offline`` (the default) writes the
                 run locally without any network access (`wandb sync RUN_DIR/wandb/offline-run-*` uploads
                 it later), ``online`` streams it, ``disabled`` turns it off

Every record carries ``elapsed_s`` (wall-clock seconds since the run started, summed over its attempts:
a resumed run continues the count) and ``time`` (Unix time). Scalars go to the trackers under
``train/<key>`` (training records) or ``<split>/<key>`` (evaluation records, e.g. ``valid/exact_match``;
the accuracy of answer position k as ``valid/position_accuracy/k``), at the record's step, and to
TensorBoard with the record's ``time`` as wall time.

A resumed run appends to the same trackers: TensorBoard hides events after the checkpoint's step
(``purge_step``), W&B resumes the run whose id is kept in ``RUN_DIR/wandb/run_id.txt``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch

from seqvcr import distributed as dist_utils
from seqvcr.atomic import write_text_atomic
from seqvcr.errors import ConfigError, disk_error
from seqvcr.runfiles import METRICS_FILE, TENSORBOARD_DIR, WANDB_DIR, WANDB_ID_FILE

__all__ = ["LOG_TARGETS", "METRICS_FILE", "TENSORBOARD_DIR", "WANDB_DIR", "WANDB_MODES", "LogInterval",
           "MetricsLogger", "check_available", "scalars"]

#: ``train.log_to``, described in the module docstring.
LOG_TARGETS: tuple[str, ...] = ("jsonl", "tensorboard", "wandb")
#: ``train.wandb_mode``: stream the run, write it locally for a later ``wandb sync``, or nothing.
WANDB_MODES: tuple[str, ...] = ("online", "offline", "disabled")


def _missing(target: str) -> ConfigError:
    """The one-line error for an optional target whose package (and extra, of the same name) is missing."""
    return ConfigError(f"train.log_to: {target} needs the {target} package, which is not installed: "
                       f"pip install 'seqvcr[{target}]'")


def check_available(targets: list[str]) -> None:
    """Fail before any work when a target of ``train.log_to`` lacks its package (names the extra)."""
    for target in targets:
        if target in ("tensorboard", "wandb") and importlib.util.find_spec(target) is None:
            raise _missing(target)


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers under tracker names: ``train/loss``, ``valid/exact_match``,
    ``valid/position_accuracy/1`` (answer positions from 1), without ``step``, ``time``, ``kind``."""
    group = "train" if record.get("kind") == "train" else str(record.get("split", record.get("kind", "eval")))
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in ("kind", "split", "step", "time") or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[f"{group}/{key}"] = float(value)
        elif isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
            for k, v in enumerate(value, start=1):
                out[f"{group}/{key}/{k}"] = float(v)
    return out


class MetricsLogger:
    """Writes each metrics record to ``metrics.jsonl`` and to the trackers of ``train.log_to`` (``targets``),
    stamped with ``elapsed()``, the seconds since the run started over every attempt. ``resume_step``: the
    step a resumed run continues from; ``config``: the resolved config, which W&B keeps with the run."""

    def __init__(
        self, run_dir: Path, targets: list[str], elapsed: Callable[[], float], *,
        resume_step: int | None = None, config: dict[str, Any] | None = None, wandb_project: str = "seqvcr",
        wandb_mode: str = "offline", metrics_file: str = METRICS_FILE,
    ) -> None:
        check_available(targets)
        self.elapsed = elapsed
        self.path = run_dir / metrics_file
        self._jsonl: TextIO | None = open(self.path, "a")  # noqa: SIM115 - closed in close()
        self._tb: Any = None
        self._wandb: Any = None
        try:
            if "tensorboard" in targets:
                from torch.utils.tensorboard import SummaryWriter

                purge = resume_step + 1 if resume_step is not None else None
                self._tb = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=purge)
            if "wandb" in targets:
                self._wandb = _start_wandb(run_dir, resume_step is not None, config, wandb_project,
                                           wandb_mode)
        except BaseException:
            self.close()
            raise

    def log(self, record: dict[str, Any]) -> dict[str, Any]:
        """Stamp ``elapsed_s`` and ``time`` on ``record`` and write it everywhere (a RunDirError when
        metrics.jsonl cannot be appended to); returns it."""
        record = {**record, "elapsed_s": float(self.elapsed()), "time": time.time()}
        if self._jsonl is not None:
            with disk_error(self.path, "cannot append a record"):
                self._jsonl.write(json.dumps(record) + "\n")
                self._jsonl.flush()
        values = scalars(record)
        step = int(record["step"])
        if self._tb is not None:
            for tag, v in values.items():
                self._tb.add_scalar(tag, v, global_step=step, walltime=record["time"])
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(values, step=step)
        return record

    def close(self) -> None:
        """Flush and close every target (safe to call twice)."""
        for target, close in ((self._jsonl, "close"), (self._tb, "close"), (self._wandb, "finish")):
            if target is not None:
                getattr(target, close)()
        self._jsonl = self._tb = self._wandb = None


def _start_wandb(run_dir: Path, resume: bool, config: dict[str, Any] | None, project: str, mode: str) -> Any:
    """A W&B run in ``RUN_DIR/wandb/``: the same one again when a run resumes (its id is kept there)."""
    try:
        import wandb
    except ImportError:
        raise _missing("wandb") from None
    id_file = run_dir / WANDB_DIR / WANDB_ID_FILE
    id_file.parent.mkdir(parents=True, exist_ok=True)
    run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
    if not run_id:
        run_id = secrets.token_hex(6)  # W&B run ids: lowercase letters and digits
        write_text_atomic(id_file, run_id + "\n")
    return wandb.init(project=project, dir=str(run_dir), name=run_dir.resolve().name, id=run_id,
                      resume="allow", config=config, mode=mode, reinit=True)


class LogInterval:
    """The running sums of one log interval, kept on the device (no host sync per step), and whether
    the loss has ever been NaN or infinite."""

    def __init__(self, device: torch.device, names: tuple[str, ...]) -> None:
        self.device = device
        self.names = names
        self.sums = torch.zeros(1 + len(names), device=device)  # the loss, then each term's logged values
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.tokens = self.steps = 0
        self.t_last = time.perf_counter()

    def add(self, loss: torch.Tensor, logged: torch.Tensor, mask: torch.Tensor) -> None:
        """Count one step (its loss, the terms' values and, on CPU, its real tokens)."""
        self.steps += 1
        self.tokens += int(mask.sum()) if self.device.type == "cpu" else 0
        with torch.no_grad():
            self.nonfinite |= ~torch.isfinite(loss.detach())
            self.sums += torch.cat([loss.detach().float().reshape(1), logged.float()])

    def record(self, step: int, lr: float, x: torch.Tensor, local_bs: int) -> dict[str, Any]:
        """The interval's ``train`` record: the values of the global batch averaged over the steps,
        and the throughput (padded tokens on a GPU, which counts them without a sync per step)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.tokens = int(self.steps * x.shape[0] * x.shape[1])
        dt = max(time.perf_counter() - self.t_last, 1e-9)
        world = dist_utils.world_size()
        if world > 1:  # log the global batch's values, not rank 0's shard
            torch.distributed.all_reduce(self.sums)
            self.sums /= world
        avg = (self.sums / self.steps).tolist()
        return {
            "kind": "train",
            "step": step,
            "loss": avg[0],
            **dict(zip(self.names, avg[1:], strict=True)),
            "lr": lr,
            "tokens_per_s": self.tokens * world / dt,
            "examples_per_s": self.steps * local_bs * world / dt,
        }

    def reset(self) -> None:
        """Start the next interval."""
        self.sums.zero_()
        self.tokens = self.steps = 0
        self.restart_clock()

    def restart_clock(self) -> None:
        """Leave the time until now (an evaluation) out of the throughput."""
        self.t_last = time.perf_counter()
