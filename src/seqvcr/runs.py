"""Everything that turns a config into objects, and a run directory back into them.

Training, evaluation, entropy analysis and reports all rebuild the task, the sequence format and the
model through these functions, so a run directory alone (``config.yaml`` + ``model.safetensors``, or
the weights inside ``checkpoint.safetensors`` for a run that has not finished) is enough to score or
analyse it anywhere. Loading a run reads YAML, JSON and safetensors only: nothing in a run directory is
ever executed (see ``seqvcr.checkpoints``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqvcr import config as C
from seqvcr.checkpoints import CHECKPOINT_FILE, MODEL_FILE, load_state_tensors, read_safetensors
from seqvcr.datafiles import resolve_data_path
from seqvcr.distributed import local_rank
from seqvcr.errors import ConfigError, RunDirError
from seqvcr.model import GPT, GPTConfig
from seqvcr.objectives import SeqVCR
from seqvcr.runfiles import CONFIG_FILE, METRICS_FILE, RESULT_FILE, SNAPSHOT_DIR
from seqvcr.sequences import SequenceFormat
from seqvcr.tasks import Example, Task, make_task, read_examples

__all__ = ["CHECKPOINT_FILE", "CONFIG_FILE", "METRICS_FILE", "MODEL_FILE", "RESULT_FILE", "SNAPSHOT_DIR",
           "LoadedRun", "autocast", "build_format", "build_model", "build_seqvcr", "build_task",
           "code_version", "data_note", "describe_machine", "load_run", "load_run_config", "load_splits",
           "machine_info", "precision_used", "read_result", "select_device", "snapshot_file",
           "saved_snapshot_steps", "test_keys", "weights_file"]


def build_task(cfg: C.Config) -> Task:
    return make_task(cfg.task.name, **cfg.task.task_options())


def build_format(cfg: C.Config, task: Task | None = None) -> SequenceFormat:
    task = task or build_task(cfg)
    return SequenceFormat.for_task(task, cot=cfg.method.cot, pauses=cfg.method.num_pauses)


def build_model(cfg: C.Config, vocab_size: int, block_size: int) -> GPT:
    """A fresh GPT for the resolved config, or one initialised from a Hugging Face GPT-2 directory."""
    m = cfg.model
    if m.init_from:
        from seqvcr.hf import load_hf_gpt2

        model = load_hf_gpt2(m.init_from, vocab_size=vocab_size, dropout=m.dropout)
        if model.config.block_size < block_size:
            raise ConfigError(
                f"model.init_from: {m.init_from} has {model.config.block_size} positions, "
                f"the data needs {block_size}"
            )
        return model
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=m.n_layer, n_head=m.n_head,
                         n_embd=m.n_embd, dropout=m.dropout, bias=m.bias, tie_weights=m.tie_weights))


def build_seqvcr(cfg: C.Config, in_dim: int) -> SeqVCR | None:
    """The Seq-VCR head (projection + loss knobs) when the method uses it, else None."""
    if not cfg.method.seqvcr:
        return None
    s = cfg.seqvcr
    return SeqVCR(in_dim, proj_dim=s.proj_dim, lambda1=s.lambda1, lambda2=s.lambda2, eta=s.eta, over=s.over,
                  layer=s.layer)


def test_keys(cfg: C.Config, task: Task) -> set[str]:
    """Question keys of the configured test file (to exclude from generated training data)."""
    if not cfg.task.test_file:
        return set()
    return {task.key(ex) for ex in read_examples(task, resolve_data_path(cfg.task.test_file))}


def load_splits(cfg: C.Config, task: Task) -> tuple[list[Example], list[Example]]:
    """Training and validation examples: read from files, or generated without overlap.

    Generated validation data exclude the test file's problems; generated training data exclude both
    the validation and the test problems. Generated validation data come from the task's evaluation
    form (``Task.for_evaluation``): with Feng et al.'s ``under`` mix only the training set mixes in
    fewer operators, the validation set has exactly the configured number, as their test sets do.
    """
    t = cfg.task
    excluded = test_keys(cfg, task)
    if t.valid_file:
        valid = read_examples(task, resolve_data_path(t.valid_file))
    else:
        source = task.for_evaluation()
        valid = source.generate(t.valid_size, seed=t.data_seed + 1, exclude=frozenset(excluded))
    excluded |= {task.key(ex) for ex in valid}
    if t.train_file:
        train = read_examples(task, resolve_data_path(t.train_file))
    else:
        train = task.generate(t.train_size, seed=t.data_seed, exclude=frozenset(excluded))
    return train, valid


def select_device(spec: str = "auto") -> torch.device:
    """auto -> the local CUDA device (LOCAL_RANK under torchrun) if there is one, else CPU."""
    if spec == "auto":
        return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"train.device={spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={spec!r} but CUDA is not available on this machine")
    return torch.device("cuda", local_rank()) if dev.type == "cuda" and dev.index is None else dev


def precision_used(device: torch.device, precision: str) -> str:
    """The precision a run computes in on ``device`` (``train.precision``): bf16 autocast on CUDA
    (``auto`` or ``bf16``), else fp32."""
    return "bf16" if device.type == "cuda" and precision in ("auto", "bf16") else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The context the model's forward pass runs in (training, evaluation, benchmarks): bf16 autocast
    where :func:`precision_used` says bf16, else autocast switched off (fp32)."""
    if precision_used(device, precision) == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """Where a number was measured: CPU, core count, GPU, library versions."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        info["gpu"] = torch.cuda.get_device_name(device or 0)
    return info


def code_version() -> dict[str, Any]:
    """Which code made a result: seqvcr's version and, when it runs from a git checkout, the commit and
    whether the tracked files differed from it (``dirty``)."""
    from seqvcr import __version__

    info: dict[str, Any] = {"seqvcr": __version__}

    def git(*args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        here = str(Path(__file__).resolve().parent)
        return subprocess.run(["git", "-C", here, *args], capture_output=True, text=True, timeout=timeout)

    try:
        if git("ls-files", "--error-unmatch", "runs.py").returncode != 0:  # an installed copy, not a checkout
            return info
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no", timeout=30)
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return info
    if commit.returncode == 0 and status.returncode == 0:
        info["commit"] = commit.stdout.strip()
        info["dirty"] = bool(status.stdout.strip())
    return info


def _cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_machine(info: dict[str, Any]) -> str:
    gpu = info.get("gpu")
    base = f"{info['cpu_count']}-core {info['processor']} CPU, torch {info['torch']}"
    return f"{gpu} GPU + {base}" if gpu else base


@dataclass
class LoadedRun:
    """A trained run rebuilt from its directory."""

    run_dir: Path
    config: C.Config
    task: Task
    fmt: SequenceFormat
    model: GPT
    seqvcr: SeqVCR | None
    step: int
    result: dict[str, Any] | None
    weights: Path | None = None  # the file the weights were read from


def read_result(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's result.json (None while the run has not finished); RunDirError if it is unreadable."""
    p = Path(run_dir) / RESULT_FILE
    if not p.is_file():
        return None
    try:
        result = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(f"{p}: unreadable ({err}); restore it from a copy") from None
    if not isinstance(result, dict):
        raise RunDirError(f"{p}: expected a JSON object")
    return result


def snapshot_file(run_dir: str | Path, step: int) -> Path:
    """Where the snapshot of ``step`` is (or would be) kept: ``RUN_DIR/snapshots/step_000500.safetensors``."""
    return Path(run_dir) / SNAPSHOT_DIR / f"step_{int(step):06d}.safetensors"


def saved_snapshot_steps(run_dir: str | Path) -> list[int]:
    """The steps of the snapshots a run directory holds, ascending (``[]`` without snapshots)."""
    d = Path(run_dir) / SNAPSHOT_DIR
    if not d.is_dir():
        return []
    steps = []
    for p in d.glob("step_*.safetensors"):
        digits = p.stem.removeprefix("step_")
        if digits.isdigit():
            steps.append(int(digits))
    return sorted(steps)


def weights_file(run_dir: str | Path, step: int | None = None) -> Path:
    """The file a run's trained weights are read from: ``model.safetensors`` once the run has finished,
    else the latest ``checkpoint.safetensors``; with ``step``, the snapshot of that step
    (``train.snapshot_steps``), or ``model.safetensors`` when ``step`` is the final step. A RunDirError
    when there are no weights yet, or no snapshot of ``step`` (the message lists those there are)."""
    rd = Path(run_dir)
    if step is not None:
        snap = snapshot_file(rd, step)
        if snap.is_file():
            return snap
        result = read_result(rd)
        if result is not None and result.get("steps") == step and (rd / MODEL_FILE).is_file():
            return rd / MODEL_FILE
        have = saved_snapshot_steps(rd)
        listed = ", ".join(map(str, have)) if have else "none (set train.snapshot_steps to keep some)"
        final = f"; the final step is {result['steps']}" if result is not None else ""
        raise RunDirError(
            f"{rd}: no snapshot of step {step} ({snap} does not exist); snapshots: {listed}{final}"
        )
    for name in (MODEL_FILE, CHECKPOINT_FILE):
        if (rd / name).is_file():
            return rd / name
    raise RunDirError(f"{rd}: no {MODEL_FILE} or {CHECKPOINT_FILE}; the run has not saved a model yet")


def load_run_config(run_dir: str | Path, *, need_weights: bool = True) -> C.Config:
    """The resolved config of a run directory (that holds saved weights, unless ``need_weights`` is
    False); a one-line RunDirError / ConfigError otherwise."""
    rd = Path(run_dir)
    if rd.exists() and not rd.is_dir():
        raise RunDirError(f"{rd}: is a file, expected a run directory")
    if not (rd / CONFIG_FILE).is_file():
        raise RunDirError(f"{rd}: not a run directory (no {CONFIG_FILE})")
    if need_weights:
        weights_file(rd)
    return C.resolve(C.load_config(rd / CONFIG_FILE))


def load_run(
    run_dir: str | Path, device: torch.device | str = "cpu", *, step: int | None = None
) -> LoadedRun:
    """Rebuild config, task, format and the trained model (eval mode) from a run directory, the weights
    from ``weights_file(run_dir, step)``; a truncated, corrupt or foreign file is a RunDirError naming it."""
    rd = Path(run_dir)
    cfg = load_run_config(rd)
    task = build_task(cfg)
    fmt = build_format(cfg, task)
    path = weights_file(rd, step)
    tensors, info = read_safetensors(path, "model", prefixes=("model.", "seqvcr."))
    if step is not None and info["step"] != step:
        raise RunDirError(f"{path}: holds the weights of step {info['step']}, not {step}")
    try:
        gcfg = GPTConfig(**info["model_config"])
    except (KeyError, TypeError) as err:
        raise RunDirError(f"{path}: its header does not describe a GPT ({err})") from None
    m = cfg.model
    vocab = fmt.tokenizer.vocab_size
    stated = {"vocab_size": vocab, "n_layer": m.n_layer, "n_head": m.n_head, "n_embd": m.n_embd}
    for key, value in stated.items():
        if getattr(gcfg, key) != value:
            raise RunDirError(
                f"{path}: holds a model with {key}={getattr(gcfg, key)}, the run's {CONFIG_FILE} needs "
                f"{value}; is it from another run?"
            )
    model = GPT(gcfg)
    load_state_tensors(model, tensors, "model.", path)
    model.to(device).eval()
    head = build_seqvcr(cfg, gcfg.n_embd)
    if head is not None and any(k.startswith("seqvcr.") for k in tensors):
        load_state_tensors(head, tensors, "seqvcr.", path)
        head.to(device).eval()
    return LoadedRun(rd, cfg, task, fmt, model, head, int(info["step"]), read_result(rd), path)


def data_note(task: Task, examples: list[Example], data_file: str | Path) -> str | None:
    """A sentence when ``data_file`` holds problems of another difficulty than the run's task was trained
    on (3-operator expressions for a 4-operator model), else None. Such a transfer test is legitimate,
    so callers warn rather than refuse."""
    held = task.difficulty_of(examples)
    if held is None:
        return None
    return f"{data_file} holds {held}; the model was trained on {task.describe()}"


