"""A training run's directory: whether to resume or refuse, setting it up, and keeping its files (their
names and the layout are ``seqvcr.runfiles``'s). The training loop calls these, and nothing else touches
a run directory's training files; a failed write (a full disk) is a one-line ``RunDirError`` that names
what is kept to resume from.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from seqvcr import config as C
from seqvcr import outputs
from seqvcr.atomic import check_output_path, write_text_atomic
from seqvcr.checkpoints import Heads, save_model
from seqvcr.checkpoints import save_checkpoint as _write_checkpoint
from seqvcr.errors import RunDirError, disk_error
from seqvcr.runfiles import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RESULT_FILE,
    SNAPSHOT_DIR,
    TENSORBOARD_DIR,
)
from seqvcr.runs import snapshot_file

#: The files of a run that ``force`` removes (once the new run's inputs have been checked).
RUN_FILES = (RESULT_FILE, MODEL_FILE, CHECKPOINT_FILE, METRICS_FILE, CONFIG_FILE)
#: Measurements of the old run's weights that ``force`` removes with it (``seqvcr entropy``, ``seqvcr eval``).
MEASUREMENT_FILES = outputs.ENTROPY_FILES
#: Directories of a run that ``force`` removes: saved evaluations, snapshots, TensorBoard events. (A W&B
#: directory is kept: its offline runs may not have been uploaded yet.)
RUN_DIRS = (outputs.EVAL_DIR, SNAPSHOT_DIR, TENSORBOARD_DIR)


def check_run_dir(run_dir: Path, cfg: C.Config, force: bool) -> bool:
    """Decide what to do with the run directory, changing nothing. True: resume an interrupted run.

    A finished run (result.json) or a trained model that cannot be resumed is never replaced without
    ``force``; an interrupted run with the same config is resumed; one with a different config needs
    ``force``.
    """
    check_output_path(run_dir, "run directory", directory=True)
    if force:
        return False
    if (run_dir / RESULT_FILE).is_file():
        raise RunDirError(
            f"{run_dir}: already holds a finished run (result.json); use --force to overwrite it"
        )
    if (run_dir / CHECKPOINT_FILE).is_file():
        saved = C.load_config(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else None
        if saved is None or C.to_dict(C.resolve(saved)) != C.to_dict(cfg):
            raise RunDirError(
                f"{run_dir}: holds an interrupted run with a different config; "
                "use --force to start over or pick another directory"
            )
        return True
    if (run_dir / MODEL_FILE).is_file():
        raise RunDirError(
            f"{run_dir}: holds a trained model ({MODEL_FILE}) without a checkpoint to resume from; "
            "use --force to train anew or pick another directory"
        )
    return False


def set_up_run_dir(run_dir: Path, cfg: C.Config, force: bool, resume: bool, step: int) -> None:
    """Remove the old run (``force``), create the directory, write the config (rank 0 only)."""
    if force and run_dir.is_dir():
        for name in (*RUN_FILES, *MEASUREMENT_FILES):
            (run_dir / name).unlink(missing_ok=True)
        for name in RUN_DIRS:
            shutil.rmtree(run_dir / name, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:  # temporary files of an attempt killed while writing (never read)
        for tmp in run_dir.glob(f"{name}.tmp*"):
            tmp.unlink(missing_ok=True)
    if resume:
        truncate_metrics(run_dir / METRICS_FILE, step)
    else:  # records, snapshots and events of an attempt that saved no checkpoint describe nothing kept
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
        for name in (SNAPSHOT_DIR, TENSORBOARD_DIR):
            shutil.rmtree(run_dir / name, ignore_errors=True)
    C.save_yaml(cfg, run_dir / CONFIG_FILE)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after the checkpoint a run resumes from, so no step appears twice, and a torn
    last line (killed while writing it); any other line that is not a JSON record is a RunDirError naming
    file:line (seqvcr did not write it)."""
    if not path.is_file():
        return
    lines = path.read_text(errors="replace").splitlines()
    kept = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            record_step = int(record["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if lineno == len(lines):
                continue  # torn by a kill during the write
            raise RunDirError(
                f"{path}:{lineno}: not a metrics record; remove the line (or the file) to resume"
            ) from None
        if record_step <= step:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def kept(path: Path, step: int) -> str:
    """What is left on disk to resume from, named only if it exists."""
    if path.is_file():
        return f"the last good checkpoint (step {step}) is kept in {path}"
    return "no checkpoint had been saved yet"


def save_checkpoint(
    path: Path, model: torch.nn.Module, heads: Heads, opt: torch.optim.Optimizer, *, step: int,
    last_good_step: int, train_time: float, cfg: C.Config, rng_states: list[dict[str, Any]],
) -> None:
    """Write ``checkpoint.safetensors`` for ``step``; after a failed write the previous one is untouched."""
    advice = f"{kept(path, last_good_step)}; free some space and re-run the same command to resume"
    with disk_error(path, f"cannot write the checkpoint of step {step}", advice):
        _write_checkpoint(path, model, heads, opt, step=step, train_time=train_time, rng_states=rng_states,
                          config=C.to_dict(cfg))


def save_snapshot(run_dir: Path, model: torch.nn.Module, heads: Heads, step: int) -> None:
    """Keep the weights of ``step`` in ``RUN_DIR/snapshots/step_000500.safetensors`` (weights only)."""
    path = snapshot_file(run_dir, step)
    path.parent.mkdir(exist_ok=True)
    with disk_error(path, f"cannot write the snapshot of step {step}"):
        save_model(path, model, heads, step)


def save_final_model(run_dir: Path, model: torch.nn.Module, heads: Heads, step: int) -> None:
    """``model.safetensors``, written after the last checkpoint (which a failure here names)."""
    advice = f"{kept(run_dir / CHECKPOINT_FILE, step)}; free some space and re-run the same command"
    with disk_error(run_dir / MODEL_FILE, "cannot be written", advice):
        save_model(run_dir / MODEL_FILE, model, heads, step)


class StopOnCtrlC:
    """While training: the first Ctrl-C asks the loop to stop after the step it is in (it then saves a
    checkpoint and raises KeyboardInterrupt); a second one interrupts at once. Only in the main thread of
    a lone process (under ``torchrun`` every rank would have to agree on the step)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopOnCtrlC:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)
