"""A run's weights and training state on disk: safetensors and JSON, nothing that can run code.

::

    RUN_DIR/model.safetensors       the trained weights, written when the run finishes: the model
                                    under ``model.*``, the Seq-VCR projection under ``seqvcr.*``
    RUN_DIR/checkpoint.safetensors  what resuming needs, written every ``train.checkpoint_every`` steps
                                    and at the end: the same weights, AdamW's state
                                    (``optimizer.<param index>.<name>``) and every rank's RNG state
                                    (``rng.<rank>.torch``, ``rng.<rank>.cuda.<device>``)

Both keep their other facts (step, the GPT's shape, training time, the optimiser's hyper-parameters, the
Python RNG states, the config) as one JSON object in the safetensors header
(``__metadata__["seqvcr"]``). Reading them parses JSON and copies raw tensor bytes: unlike a pickle,
nothing in them is ever executed, so a run directory from anyone can be scored safely. ``eval``,
``entropy``, ``report`` and ``export-hf`` read ``model.safetensors`` (so a finished run can be shared
without its optimiser state), else the weights inside ``checkpoint.safetensors``.
"""

from __future__ import annotations

import ctypes
import json
import random
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from seqvcr.atomic import write_bytes_atomic
from seqvcr.errors import RunDirError
from seqvcr.runfiles import CHECKPOINT_FILE, MODEL_FILE

__all__ = ["CHECKPOINT_FILE", "FORMAT", "MODEL_FILE", "SAFE_TORCH_LOAD", "Checkpoint", "checkpoint_step",
           "load_state_tensors",
           "read_checkpoint", "read_safetensors", "rng_state", "save_checkpoint", "save_model",
           "set_rng_state", "state_tensors", "torch_load_is_safe", "write_safetensors"]

FORMAT = 1  # version of the JSON object in the header
META_KEY = "seqvcr"
#: ``torch.load(weights_only=True)`` is only safe against crafted files from this version on
#: (CVE-2025-32434 affects 2.5.1 and earlier).
SAFE_TORCH_LOAD = "2.6"

_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


# ---------------------------------------------------------------------------------------------- files


def write_safetensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> Path:
    """Write ``tensors`` (no two sharing memory) and the string ``metadata`` as one safetensors file,
    atomically (:func:`seqvcr.atomic.write_bytes_atomic`: an OSError such as ENOSPC leaves ``path`` as it
    was). Streamed one tensor at a time, each copied to the CPU only while it is written, so a GPU
    checkpoint needs no second copy of itself in memory. Layout: an 8-byte little-endian header length,
    the JSON header (dtype, shape and byte range of every tensor, plus ``__metadata__``) padded with
    spaces to a multiple of 8, then the raw little-endian tensor bytes."""
    if sys.byteorder != "little":  # pragma: no cover - every platform torch supports is little-endian
        raise RunDirError("writing safetensors needs a little-endian machine")
    header: dict[str, Any] = {}
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name}: dtype {t.dtype} cannot be stored")
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = dict(metadata)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)

    def write(f: BinaryIO) -> None:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors.values():
            if t.numel():
                cpu = t.detach().to("cpu").contiguous()
                # the tensor's bytes as a buffer, without a copy and without numpy (not a dependency)
                f.write((ctypes.c_char * (cpu.numel() * cpu.element_size())).from_address(cpu.data_ptr()))

    return write_bytes_atomic(path, write)


def read_safetensors(
    path: str | Path, what: str, prefixes: tuple[str, ...] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors (those whose names start with one of ``prefixes``, or all) and the JSON info of a
    seqvcr file; a RunDirError naming it, its role ``what`` and what to do if it is missing, truncated,
    corrupt or not a seqvcr file."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise RunDirError(f"{p}: no such file")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            names = [k for k in f.keys() if prefixes is None or k.startswith(prefixes)]  # noqa: SIM118
            tensors = {k: f.get_tensor(k) for k in names}
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types; all mean "unreadable"
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        problem = f"not a readable {what}: truncated or corrupt ({detail})"
        raise RunDirError(f"{p}: {problem}; {_remedy(p)}") from None
    try:
        info = json.loads(meta.get(META_KEY, "null"))
    except json.JSONDecodeError:
        info = None
    if not isinstance(info, dict) or not isinstance(info.get("step"), int):
        raise RunDirError(f"{p}: a safetensors file but not a seqvcr {what} (no seqvcr header); {_remedy(p)}")
    if info.get("format", 0) > FORMAT:
        raise RunDirError(f"{p}: written by a newer seqvcr (format {info.get('format')}); upgrade seqvcr")
    return tensors, info


def _remedy(path: Path) -> str:
    """What to do about an unreadable run file (never repaired or removed automatically); for a
    ``model.safetensors``, the step of the weights a readable checkpoint beside it holds."""
    if path.name == CHECKPOINT_FILE:
        return "restore it from a copy, or start the run over with --force"
    step = checkpoint_step(path.parent / CHECKPOINT_FILE) if path.name == MODEL_FILE else None
    if step is not None:
        return (f"{CHECKPOINT_FILE} beside it holds the weights of step {step}: remove {path.name} to use "
                "them, or restore it from a copy")
    return "restore it from a copy, or re-train the run with --force"


def checkpoint_step(path: Path) -> int | None:
    """The step in the header of a training checkpoint that safetensors opens (it checks the header
    against the file's size, so a truncated file does not count), or None."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            info = json.loads((f.metadata() or {}).get(META_KEY, "null"))
    except Exception:  # noqa: BLE001 - unreadable for any reason: not a fallback
        return None
    step = info.get("step") if isinstance(info, dict) else None
    return step if isinstance(step, int) else None


# ---------------------------------------------------------------------------------------------- modules


def _canonical_names(module: nn.Module) -> dict[str, str]:
    """Each state-dict entry -> the name it is stored under: tied tensors (GPT's ``lm_head.weight`` is
    ``transformer.wte.weight``) share the first name, so each is stored once."""
    first: dict[tuple[Any, ...], str] = {}
    out: dict[str, str] = {}
    for name, t in module.state_dict(keep_vars=True).items():
        alias = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        out[name] = first.setdefault(alias, name) if t.numel() else name
    return out


def state_tensors(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """The module's state dict under ``prefix``, tied tensors once (safetensors stores no aliases)."""
    sd = module.state_dict()
    return {prefix + stored: sd[stored] for stored in dict.fromkeys(_canonical_names(module).values())}


def load_state_tensors(
    module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str, path: Path
) -> None:
    """Load what :func:`state_tensors` stored under ``prefix`` into ``module`` (ties restored as they are);
    a RunDirError when names or shapes do not match it (the file belongs to another model)."""
    canonical = _canonical_names(module)
    expected = {prefix + n for n in canonical.values()}
    present = {k for k in tensors if k.startswith(prefix)}
    if expected != present:
        missing, extra = sorted(expected - present), sorted(present - expected)
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise RunDirError(f"{path}: its weights do not fit the run's model ({what}); is it from another run?")
    current = module.state_dict()
    new: dict[str, torch.Tensor] = {}
    for name, stored in canonical.items():
        t = tensors[prefix + stored]
        if tuple(t.shape) != tuple(current[name].shape):
            raise RunDirError(
                f"{path}: {prefix + stored} has shape {tuple(t.shape)}, the run's model needs "
                f"{tuple(current[name].shape)}; is it from another run?"
            )
        new[name] = t
    module.load_state_dict(new)


# ---------------------------------------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """This process's RNG states: torch CPU, CUDA (every device) and Python's ``random``."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where CUDA is available)."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():  # as many devices as both machines have
        torch.cuda.set_rng_state_all(list(state["cuda"])[: torch.cuda.device_count()])


def _rng_to_file(states: list[Mapping[str, Any]]) -> tuple[dict[str, torch.Tensor], list[Any]]:
    tensors: dict[str, torch.Tensor] = {}
    python: list[Any] = []
    for r, st in enumerate(states):
        tensors[f"rng.{r}.torch"] = st["torch"]
        for k, c in enumerate(st.get("cuda") or []):
            tensors[f"rng.{r}.cuda.{k}"] = c
        version, internal, gauss = st["python"]
        python.append([version, list(internal), gauss])
    return tensors, python


def _rng_from_file(tensors: Mapping[str, torch.Tensor], python: list[Any]) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = []
    for r, (version, internal, gauss) in enumerate(python):
        cuda = []
        while f"rng.{r}.cuda.{len(cuda)}" in tensors:
            cuda.append(tensors[f"rng.{r}.cuda.{len(cuda)}"])
        states.append({"torch": tensors[f"rng.{r}.torch"], "python": (version, tuple(internal), gauss),
                       "cuda": cuda})
    return states


# ---------------------------------------------------------------------------------------------- optimiser


def _optimizer_to_file(sd: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{idx}.{name}"] = value
            else:
                plain.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "state": plain}


def _optimizer_from_file(
    tensors: Mapping[str, torch.Tensor], saved: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, Any]:
    """An optimizer state dict from the file; lists become tuples where the optimiser has tuples
    (JSON has no tuples: AdamW's ``betas``)."""
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = t
    for idx, values in saved["state"].items():
        state.setdefault(int(idx), {}).update(values)
    groups = [{k: tuple(v) if isinstance(now.get(k), tuple) and isinstance(v, list) else v
               for k, v in g.items()} for g, now in zip(saved["param_groups"], current["param_groups"])]
    groups += list(saved["param_groups"][len(groups) :])  # a count mismatch is load_state_dict's error
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------------------------- run files


#: The trained heads of a run's loss terms, by the prefix of their tensors (``seqvcr``: the Seq-VCR
#: projection; ``running_sum``: the running-sum head). Evaluation and export read ``model.`` only.
Heads = Mapping[str, nn.Module]


def _save(path: str | Path, model: nn.Module, heads: Heads | None, kind: str, step: int,
          more: Mapping[str, torch.Tensor], **info: Any) -> Path:
    """A seqvcr file: the weights of the model and of the heads, then ``more`` tensors; the kind, the step,
    the GPT's shape and ``info`` as JSON under ``__metadata__["seqvcr"]``."""
    tensors = state_tensors(model, "model.")
    for name, head in (heads or {}).items():
        tensors.update(state_tensors(head, f"{name}."))
    header = {"format": FORMAT, "kind": kind, "step": int(step), "model_config": vars(model.config).copy(),
              **info}
    return write_safetensors(path, {**tensors, **more}, {META_KEY: json.dumps(header, allow_nan=False)})


def save_model(path: str | Path, model: nn.Module, heads: Heads | None, step: int) -> Path:
    """``model.safetensors``: the weights of the model and of the loss terms' heads, the step and the
    GPT's shape."""
    return _save(path, model, heads, "model", step, {})


def save_checkpoint(
    path: str | Path, model: nn.Module, heads: Heads | None, optimizer: torch.optim.Optimizer, *, step: int,
    train_time: float, rng_states: list[Mapping[str, Any]], config: dict[str, Any],
) -> Path:
    """``checkpoint.safetensors``: weights, optimiser state and one RNG state per rank (rank order)."""
    opt_tensors, opt_plain = _optimizer_to_file(optimizer.state_dict())
    rng_tensors, rng_python = _rng_to_file(rng_states)
    return _save(path, model, heads, "checkpoint", step, {**opt_tensors, **rng_tensors},
                 train_time_s=float(train_time), world_size=len(rng_states), optimizer=opt_plain,
                 rng_python=rng_python, config=config)


@dataclass
class Checkpoint:
    """A ``checkpoint.safetensors`` read back: restore weights, optimiser and RNG from it."""

    path: Path
    tensors: dict[str, torch.Tensor]
    info: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.info["step"])

    @property
    def train_time(self) -> float:
        return float(self.info.get("train_time_s", 0.0))

    @property
    def rng_states(self) -> list[dict[str, Any]]:
        """One RNG state per rank of the run that wrote it."""
        return _rng_from_file(self.tensors, self.info["rng_python"])

    def load_weights(self, model: nn.Module, heads: Heads | None) -> None:
        load_state_tensors(model, self.tensors, "model.", self.path)
        for name, head in (heads or {}).items():
            load_state_tensors(head, self.tensors, f"{name}.", self.path)

    def load_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        sd = _optimizer_from_file(self.tensors, self.info["optimizer"], optimizer.state_dict())
        try:
            optimizer.load_state_dict(sd)
        except (ValueError, KeyError) as err:
            raise RunDirError(f"{self.path}: its optimiser state does not fit the run ({err})") from None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a ``checkpoint.safetensors`` (RunDirError naming the file if it is unreadable)."""
    p = Path(path)
    tensors, info = read_safetensors(p, "checkpoint")
    if info.get("kind") != "checkpoint" or "optimizer" not in info or "rng_python" not in info:
        raise RunDirError(f"{p}: not a seqvcr training checkpoint (kind {info.get('kind')!r}); {_remedy(p)}")
    return Checkpoint(p, tensors, info)


def torch_load_is_safe() -> bool:
    """Whether this torch's ``torch.load(weights_only=True)`` resists crafted files."""
    from torch.torch_version import TorchVersion

    return TorchVersion(torch.__version__) >= SAFE_TORCH_LOAD
