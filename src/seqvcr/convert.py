"""``seqvcr convert-checkpoint``: a run directory of the earlier format (``RUN_DIR/checkpoint.pt``, a
pickle written by ``torch.save``) to the safetensors files of ``seqvcr.checkpoints``.

The only place that opens a ``checkpoint.pt``: with ``torch.load(weights_only=True)`` (torch >= 2.6),
which refuses every object but tensors and plain containers, so nothing in the file is ever run. The new
files are read back and compared tensor by tensor with the old one before it is removed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqvcr.checkpoints import (
    CHECKPOINT_FILE,
    LEGACY_CHECKPOINT_FILE,
    MODEL_FILE,
    SAFE_TORCH_LOAD,
    Checkpoint,
    read_safetensors,
    save_checkpoint,
    save_model,
    torch_load_is_safe,
)
from seqvcr.errors import RunDirError
from seqvcr.model import GPT, GPTConfig, parameter_groups
from seqvcr.runs import CONFIG_FILE, RESULT_FILE, build_seqvcr, load_run_config
from seqvcr.training import TrainModule

__all__ = ["convert_legacy"]


def _read_legacy(path: Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one-line errors; never runs an object's code."""
    import pickle
    import warnings
    import zipfile

    if not torch_load_is_safe():
        raise RunDirError(
            f"{path}: converting needs torch >= {SAFE_TORCH_LOAD} (this is {torch.__version__}): older "
            "versions of torch.load(weights_only=True) can be made to run code by a crafted file"
        )
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: not the user's business
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()
        detail = next((line.strip() for line in first if "GLOBAL" in line or "Unsupported" in line), "")
        raise RunDirError(
            f"{path}: refused: it holds objects other than tensors and plain values, so it is not a seqvcr "
            f"checkpoint (nothing in it was run{'; ' + detail if detail else ''})"
        ) from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunDirError(f"{path}: truncated or corrupt ({detail}); restore it from a copy") from None
    required = {"model": Mapping, "model_config": Mapping, "step": int}
    if not isinstance(obj, Mapping) or any(not isinstance(obj.get(k), tp) for k, tp in required.items()):
        raise RunDirError(f"{path}: not a seqvcr checkpoint (expected a dict with model, model_config, step)")
    return dict(obj)


def convert_legacy(run_dir: str | Path, *, keep: bool = False) -> dict[str, Any]:
    """Convert ``RUN_DIR/checkpoint.pt`` (the earlier pickle format) to the safetensors files.

    Writes ``checkpoint.safetensors`` (weights, optimiser, RNG, step, training time: the run resumes
    exactly where it stopped) when the old checkpoint holds the optimiser and RNG state, and
    ``model.safetensors`` when the run has finished (``result.json``) or cannot be resumed, which is
    what training with this version would have left. Other files (config.yaml, metrics.jsonl,
    result.json, eval.json, entropy.json, ...) are kept as they are. The new files are read back and
    compared tensor by tensor with the old checkpoint; only then is ``checkpoint.pt`` removed (unless
    ``keep``). A directory that already holds one of the new files is left alone (with ``keep`` the run
    may have trained on since; the old file would take it back).

    Returns:
        a summary: run_dir, step, the files written, whether checkpoint.pt was removed.

    Raises:
        RunDirError: not a run directory, or the old checkpoint is corrupt, holds anything but tensors
            and plain values (refused without running it), or does not fit the run's config.
    """
    rd = Path(run_dir)
    legacy = rd / LEGACY_CHECKPOINT_FILE
    if (rd / MODEL_FILE).is_file() or (rd / CHECKPOINT_FILE).is_file():
        # never overwrite: the run may have gone on training since (a kept checkpoint.pt is older)
        return {"run_dir": str(rd), "converted": False, "note": "already in the safetensors format"}
    if not legacy.is_file():
        if not (rd / CONFIG_FILE).is_file():
            raise RunDirError(f"{rd}: not a run directory (no {CONFIG_FILE})")
        raise RunDirError(f"{rd}: no {LEGACY_CHECKPOINT_FILE} to convert")
    cfg = load_run_config(rd, need_weights=False)
    old = _read_legacy(legacy)
    try:
        gcfg = GPTConfig(**dict(old["model_config"]))
    except TypeError as err:
        raise RunDirError(f"{legacy}: model_config does not describe a GPT ({err})") from None
    model = GPT(gcfg)
    head = build_seqvcr(cfg, gcfg.n_embd) if old.get("seqvcr") is not None else None
    try:
        model.load_state_dict(old["model"])
        if head is not None:
            head.load_state_dict(old["seqvcr"])
    except (RuntimeError, TypeError) as err:
        detail = str(err).strip().splitlines()[0]
        raise RunDirError(f"{legacy}: its weights do not fit the run's config.yaml ({detail})") from None
    step = int(old["step"])
    finished = (rd / RESULT_FILE).is_file()
    written: list[str] = []
    resumable = isinstance(old.get("optimizer"), Mapping) and isinstance(old.get("rng"), Mapping)
    if resumable:
        opt = _optimizer_for(model, head, old["optimizer"], legacy)
        rng = dict(old["rng"])
        save_checkpoint(
            rd / CHECKPOINT_FILE,
            model,
            head,
            opt,
            step=step,
            train_time=float(old.get("train_time_s", 0.0)),
            rng_states=[rng],
            config=_plain(old.get("config")),
        )
        written.append(CHECKPOINT_FILE)
    if finished or not resumable:
        save_model(rd / MODEL_FILE, model, head, step)
        written.append(MODEL_FILE)
    _verify(rd, written, old, legacy)
    removed = False
    if not keep:
        legacy.unlink()
        removed = True
    return {
        "run_dir": str(rd),
        "converted": True,
        "step": step,
        "finished": finished,
        "files": written,
        "removed": LEGACY_CHECKPOINT_FILE if removed else None,
    }


def _plain(obj: Any) -> Any:
    """JSON-able copy (the old checkpoint's config dict holds only plain values)."""
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError):
        return None


def _optimizer_for(
    model: nn.Module, head: nn.Module | None, sd: Mapping[str, Any], legacy: Path
) -> torch.optim.Optimizer:
    """An AdamW over the run's parameters, grouped as training groups them, holding the old state (its
    hyper-parameters included)."""
    groups = parameter_groups(TrainModule(model, head), weight_decay=0.0)  # the saved groups' decay wins
    sizes = [len(g["params"]) for g in sd.get("param_groups", [])]
    if sizes != [len(g["params"]) for g in groups]:
        raise RunDirError(
            f"{legacy}: its optimiser state has parameter groups of {sizes} tensors, the run's model "
            f"{[len(g['params']) for g in groups]}; is it from another run?"
        )
    opt = torch.optim.AdamW(groups)
    try:
        opt.load_state_dict(dict(sd))
    except (ValueError, KeyError, TypeError) as err:
        raise RunDirError(f"{legacy}: its optimiser state does not fit the run ({err})") from None
    return opt


def _verify(rd: Path, written: list[str], old: Mapping[str, Any], legacy: Path) -> None:
    """Read the new files back and compare them with the old checkpoint, tensor by tensor."""

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.cpu(), b.cpu())

    for name in written:
        tensors, info = read_safetensors(rd / name, "checkpoint" if name == CHECKPOINT_FILE else "model")
        ok = info["step"] == int(old["step"])
        for key, t in old["model"].items():
            stored = tensors.get(f"model.{key}")
            ok = ok and (stored is None and key == "lm_head.weight" or stored is not None and same(stored, t))
        for key, t in (old.get("seqvcr") or {}).items():
            ok = ok and f"seqvcr.{key}" in tensors and same(tensors[f"seqvcr.{key}"], t)
        if name == CHECKPOINT_FILE:
            ck = Checkpoint(rd / name, tensors, info)
            for idx, st in old["optimizer"]["state"].items():
                for k, v in st.items():
                    if isinstance(v, torch.Tensor):
                        ok = ok and same(tensors[f"optimizer.{idx}.{k}"], v)
            rng = ck.rng_states[0]
            ok = (
                ok
                and same(rng["torch"], old["rng"]["torch"])
                and rng["python"] == tuple(old["rng"]["python"])
            )
        if not ok:
            (rd / name).unlink(missing_ok=True)
            raise RunDirError(f"{rd / name}: does not read back equal to {legacy}; {legacy} is kept")
