"""Hugging Face interoperability: GPT-2 checkpoints in and out, and Seq-VCR for any HF causal LM.

GPT-2 import / export needs only ``torch`` and ``safetensors``: our :class:`~seqvcr.model.GPT` uses
GPT-2's parameter names, so conversion is renaming plus a transpose of the ``Conv1D`` weights (HF
stores them as ``(in, out)``, ``nn.Linear`` as ``(out, in)``). The paper fine-tunes pre-trained GPT-2
small on multiplication; our vocabulary is task-specific, so by default only the position embeddings,
the blocks and the final LayerNorm carry over (:func:`load_hf_gpt2`). :class:`SeqVCRPlugin` works on
the ``hidden_states`` of any model output (paper appendix I: Llama-3.2-1B with LoRA).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from seqvcr.errors import ConfigError, SeqVCRError
from seqvcr.model import GPT, GPTConfig
from seqvcr.objectives import SeqVCR

__all__ = ["SeqVCRPlugin", "attach_seqvcr", "load_hf_gpt2", "save_hf_gpt2"]

# Conv1D modules of HF GPT-2: their weights are stored transposed relative to nn.Linear.
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Activation names that are GPT-2's tanh-approximated GELU (what our MLP computes).
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def _read_config(path: Path) -> dict[str, Any]:
    cfg_file = path / "config.json"
    if not path.is_dir():
        raise SeqVCRError(f"{path}: not a directory (expected a Hugging Face GPT-2 model directory)")
    if not cfg_file.is_file():
        raise SeqVCRError(f"{path}: no config.json (expected a Hugging Face GPT-2 model directory)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SeqVCRError(f"{cfg_file}: cannot read JSON: {exc}") from exc
    if not isinstance(cfg, dict):
        raise SeqVCRError(f"{cfg_file}: expected a JSON object")
    if cfg.get("model_type") != "gpt2":
        raise SeqVCRError(f"{cfg_file}: model_type is {cfg.get('model_type')!r}, only 'gpt2' can be loaded")
    # Features of GPT2Config that our GPT does not implement: refuse rather than load a different model.
    n_embd = cfg.get("n_embd", 768)
    checks = [
        (cfg.get("n_inner") in (None, 4 * n_embd), f"n_inner={cfg.get('n_inner')} (only 4*n_embd)"),
        (cfg.get("activation_function", "gelu_new") in _TANH_GELU,
         f"activation_function={cfg.get('activation_function')!r} (only {', '.join(_TANH_GELU)})"),
        (cfg.get("scale_attn_weights", True), "scale_attn_weights=false"),
        (not cfg.get("scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx=true"),
        (not cfg.get("add_cross_attention", False), "add_cross_attention=true"),
    ]
    for ok, what in checks:
        if not ok:
            raise SeqVCRError(f"{cfg_file}: unsupported GPT-2 option {what}")
    return cfg


def _load_file(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise SeqVCRError("reading / writing model.safetensors needs `pip install safetensors`") from exc
        return load_file(str(file), device="cpu")
    from seqvcr.checkpoints import SAFE_TORCH_LOAD, torch_load_is_safe

    if not torch_load_is_safe():  # older weights_only loading can be made to run code by a crafted file
        raise SeqVCRError(f"{file}: reading a pickled state dict needs torch >= {SAFE_TORCH_LOAD} (this is "
                          f"{torch.__version__}); convert the directory to model.safetensors or upgrade "
                          "torch")
    obj = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(obj, Mapping):
        raise SeqVCRError(f"{file}: expected a state dict")
    return dict(obj)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint under GPT2LMHeadModel's names (a bare GPT2Model's "h.0..." get the
    ``transformer.`` prefix): single file or sharded (``*.index.json``), safetensors preferred."""
    for single, index in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        tensors: dict[str, torch.Tensor] = {}
        if (path / single).is_file():
            tensors = _load_file(path / single)
        elif (path / index).is_file():
            weight_map = json.loads((path / index).read_text()).get("weight_map", {})
            for shard in sorted(set(weight_map.values())):
                tensors.update(_load_file(path / shard))
        else:
            continue
        return {k if k.startswith("lm_head.") else "transformer." + k.removeprefix("transformer."): v
                for k, v in tensors.items()}
    raise SeqVCRError(f"{path}: no model.safetensors or pytorch_model.bin (weights of the GPT-2 model)")


_HEAD, _WTE = "lm_head.weight", "transformer.wte.weight"


@torch.no_grad()
def _copy_weights(model: GPT, src: dict[str, torch.Tensor], same_vocab: bool, keep_token_rows: bool,
                  path: Path) -> None:
    """Copy ``src`` into ``model``, Conv1D weights transposed: every tensor, except that the token
    embedding and head (vocab, n_embd) are copied only when the vocabularies match (see load_hf_gpt2)."""
    target = model.state_dict()  # tied: both names present, same storage
    missing = []
    for key, dst in target.items():
        if key in (_HEAD, _WTE):
            continue  # below
        if key not in src:
            missing.append(key)
            continue
        value = src[key]
        if key.endswith(_CONV1D):
            value = value.t()  # Conv1D (in, out) -> Linear (out, in)
        if value.shape != dst.shape:
            raise SeqVCRError(f"{path}: tensor {key} has shape {tuple(value.shape)}, "
                              f"expected {tuple(dst.shape)}")
        dst.copy_(value)
    if missing:
        more = " ..." if len(missing) > 5 else ""
        raise SeqVCRError(f"{path}: missing tensors {', '.join(missing[:5])}{more}")
    if _WTE not in src:
        raise SeqVCRError(f"{path}: missing tensor {_WTE}")
    heads = [(_WTE, src[_WTE])]
    if not model.config.tie_weights:
        heads.append((_HEAD, src.get(_HEAD, src[_WTE])))  # untied but absent: HF would tie
    for key, value in heads:
        dst = target[key]
        if same_vocab:
            dst.copy_(value)
        elif keep_token_rows:
            rows = min(value.shape[0], dst.shape[0])
            dst[:rows].copy_(value[:rows])


def load_hf_gpt2(path: str | os.PathLike[str], vocab_size: int | None = None, *,
                 dropout: float | None = None, keep_token_rows: bool = False) -> GPT:
    """Build a :class:`GPT` from a local Hugging Face GPT-2 directory (config.json + weights, of a
    ``GPT2LMHeadModel`` or a bare ``GPT2Model``); dropout defaults to the checkpoint's ``resid_pdrop``.

    vocab_size: the task's vocabulary size. When it differs from the checkpoint's, the token embedding and
    head keep our fresh initialisation (our token ids are not GPT-2 BPE ids); ``keep_token_rows=True``
    copies their first min(old, new) rows instead.

    Raises SeqVCRError when the directory lacks config.json or weights, is not a GPT-2 we implement, or
    tensors are missing / of the wrong shape.
    """
    path = Path(path)
    cfg = _read_config(path)  # GPT2Config's defaults where a key is absent
    src_vocab = int(cfg.get("vocab_size", 50257))
    config = GPTConfig(
        vocab_size=int(vocab_size) if vocab_size is not None else src_vocab,
        block_size=int(cfg.get("n_positions", cfg.get("n_ctx", 1024))),
        n_layer=int(cfg.get("n_layer", 12)),
        n_head=int(cfg.get("n_head", 12)),
        n_embd=int(cfg.get("n_embd", 768)),
        dropout=float(cfg.get("resid_pdrop", 0.1)) if dropout is None else float(dropout),
        bias=True,
        tie_weights=bool(cfg.get("tie_word_embeddings", True)),
        layer_norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
    )
    src = _read_weights(path)
    model = GPT(config)
    _copy_weights(model, src, config.vocab_size == src_vocab, keep_token_rows, path)
    return model


def save_hf_gpt2(model: GPT, path: str | os.PathLike[str], *, eos_token_id: int | None = None,
                 pad_token_id: int | None = None) -> None:
    """Write ``model`` as a Hugging Face GPT-2 directory (config.json + model.safetensors) that
    ``GPT2LMHeadModel.from_pretrained`` loads with the same logits, as does :func:`load_hf_gpt2`.

    A tied model stores the token embedding once (safetensors refuses shared storage; HF re-ties it). The
    token ids, left out, are null rather than GPT-2's 50256, which lies outside a task vocabulary.
    """
    from seqvcr.atomic import write_text_atomic
    from seqvcr.checkpoints import write_safetensors

    cfg = model.config
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    state = model.state_dict()
    for key, value in state.items():
        if key == _HEAD and cfg.tie_weights:
            continue
        value = value.detach().t() if key.endswith(_CONV1D) else value.detach()  # Conv1D: (in, out)
        tensors[key] = value.to("cpu").contiguous().clone()
    if not cfg.bias:  # HF GPT-2 has biases everywhere: zero ones compute the same function
        for key in list(tensors):
            if key.endswith("weight") and ("ln_" in key or key.endswith(_CONV1D)):
                width = tensors[key].shape[-1] if key.endswith(_CONV1D) else tensors[key].shape[0]
                tensors[key[: -len("weight")] + "bias"] = torch.zeros(width, dtype=state[_WTE].dtype)
    hf_config = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.vocab_size,
        **dict.fromkeys(("n_positions", "n_ctx"), cfg.block_size),
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        **dict.fromkeys(("resid_pdrop", "embd_pdrop", "attn_pdrop"), cfg.dropout),
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "use_cache": True,
        "tie_word_embeddings": cfg.tie_weights,
        **dict.fromkeys(("bos_token_id", "eos_token_id"), eos_token_id),
        "pad_token_id": pad_token_id,
        "torch_dtype": str(state[_WTE].dtype).removeprefix("torch."),
    }
    # atomic, and a failed write (a full disk) raises instead of leaving a short file
    write_safetensors(path / "model.safetensors", tensors, {"format": "pt"})
    write_text_atomic(path / "config.json", json.dumps(hf_config, indent=2) + "\n")


class SeqVCRPlugin(nn.Module):
    """Seq-VCR for any model that returns per-layer hidden states (e.g. a ``transformers`` causal LM).

    Usage, in your own training loop (``examples/hf_plugin_llama.py``)::

        plugin = SeqVCRPlugin(model.config.hidden_size)           # or attach_seqvcr(model)
        optimizer = AdamW([*model.parameters(), *plugin.parameters()], lr=...)
        out = model(input_ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        loss = out.loss + plugin(out, attention_mask=mask)

    The plug-in owns the trained projection (``plugin.seqvcr``): add its parameters to the optimiser.
    ``layer`` indexes the ``hidden_states`` tuple ([0] = embeddings; the default -1, the last layer, is
    the paper's main choice); ``attention_mask`` (B, T), 1 = real token, keeps padding out of the
    statistics. Hidden states are cast to the projection's dtype, so a bf16 model works unchanged.
    ``options`` are :class:`~seqvcr.objectives.SeqVCR`'s (``proj_dim``, ``lambda1``, ...). The last terms
    are kept, detached, in ``plugin.last`` for logging.
    """

    def __init__(self, hidden_size: int, layer: int = -1, **options: Any) -> None:
        super().__init__()
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise ConfigError(f"seqvcr.layer: must be an integer index into hidden_states, got {layer!r}")
        self.layer = layer
        self.seqvcr = SeqVCR(hidden_size, **options)
        self.last: Any = None

    def select(self, outputs_or_hidden_states: Any) -> torch.Tensor:
        """The regularised layer's states (B, T, D) from a model output, a hidden-states tuple or a tensor."""
        hidden = outputs_or_hidden_states
        if isinstance(hidden, torch.Tensor):
            if hidden.dim() == 3:
                return hidden  # already the chosen layer
            raise SeqVCRError(f"expected hidden states (B, T, D), got shape {tuple(hidden.shape)}")
        if hasattr(hidden, "hidden_states"):  # a transformers ModelOutput or our GPTOutput
            hidden = hidden.hidden_states
            if hidden is None:
                raise SeqVCRError("the model output has no hidden_states: call the model with "
                                  "output_hidden_states=True")
        if not isinstance(hidden, Sequence) or isinstance(hidden, str):
            raise SeqVCRError("expected a model output with hidden_states, a tuple of hidden states or a "
                              f"(B, T, D) tensor, got {type(hidden).__name__}")
        n = len(hidden)
        if not -n <= self.layer < n:
            raise SeqVCRError(f"seqvcr.layer={self.layer} is out of range for {n} hidden states")
        h = hidden[self.layer]
        if h is None:
            raise SeqVCRError(f"hidden state {self.layer} was not returned by the model "
                              "(see output_hidden_states)")
        return h

    def forward(
        self, outputs_or_hidden_states: Any, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The Seq-VCR loss (a scalar) of the chosen layer; add it to the language-model loss."""
        h = self.select(outputs_or_hidden_states)  # (B, T, D)
        h = h.to(self.seqvcr.projection.weight.dtype)
        out = self.seqvcr(h, attention_mask)  # SeqVCROutput(loss, variance, covariance), scalars
        self.last = type(out)(*(t.detach() for t in out))
        return out.loss


def _hidden_size(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    for name in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    if hasattr(config, "get_text_config"):  # multimodal configs keep the LM's width in a sub-config
        value = getattr(config.get_text_config(), "hidden_size", None)
        if isinstance(value, int):
            return value
    raise SeqVCRError(f"cannot read the hidden size of {type(model).__name__} (no config.hidden_size)")


def attach_seqvcr(model: nn.Module, layer: int = -1, **kw: Any) -> SeqVCRPlugin:
    """A :class:`SeqVCRPlugin` sized from ``model.config`` (``hidden_size``, or ``n_embd`` for our GPT),
    on the device of the model's first parameter; the model is not modified."""
    plugin = SeqVCRPlugin(_hidden_size(model), layer=layer, **kw)
    first = next(model.parameters(), None)
    if first is not None:
        plugin.to(first.device)
    return plugin
