"""The GPT model: a GPT-2 style decoder-only transformer in one readable file (nanoGPT style).

Architecture (GPT-2): learned token and position embeddings; ``n_layer`` pre-LayerNorm blocks
``x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))`` with causal multi-head self-attention
(``F.scaled_dot_product_attention``) and a 4x MLP with the tanh approximation of GELU (GPT-2's
``gelu_new``); a final LayerNorm ``ln_f``; a linear head ``lm_head`` without bias, tied to the token
embedding by default. Parameter names mirror nanoGPT / Hugging Face GPT-2 (``transformer.wte``,
``transformer.h.{i}.attn.c_attn`` ...) so that :mod:`seqvcr.hf` converts checkpoints by renaming and
transposing only (HF's ``Conv1D`` stores weights as ``(in, out)``, ``nn.Linear`` as ``(out, in)``).

What Seq-VCR needs from the model:

* ``forward(..., output_hidden_states=True)`` returns the representation of every layer, with the
  Hugging Face convention (``hidden_states[0]`` = embeddings, ``hidden_states[n_layer]`` = after ``ln_f``)
  so that "L0" and "L12" mean the same thing here as in the paper's GPT-2 small experiments.
* ``generate`` decodes greedily with a key/value cache, for exact-match evaluation and throughput.

Presets (``PRESETS``): ``gpt2-small`` (the paper's multiplication model, 12x12x768), ``mingpt`` (the
arithmetic / LIS model trained from scratch: 4 heads, width 256, 4 layers by default -- the paper also
uses 5 and 6: ``model.n_layer``), ``tiny`` (tests and demos).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqvcr.errors import ConfigError, SeqVCRError

__all__ = ["GPT", "GPTConfig", "GPTOutput", "PRESETS", "SequenceTooLongError", "check_shape",
           "configure_adamw", "parameter_groups"]

IGNORE_INDEX = -100  # targets equal to this do not enter the loss (PyTorch / Hugging Face convention)

# Architecture presets. Only the shape and dropout live here; vocab_size and block_size come from the task.
# GPT-2 uses dropout 0.1 on embeddings, attention probabilities and residual branches; so does minGPT
# in Feng et al.'s arithmetic / LIS setting (SPEC section 5).
PRESETS: dict[str, dict[str, Any]] = {
    "gpt2-small": dict(n_layer=12, n_head=12, n_embd=768, dropout=0.1),
    "mingpt": dict(n_layer=4, n_head=4, n_embd=256, dropout=0.1),
    "tiny": dict(n_layer=2, n_head=4, n_embd=128, dropout=0.0),
}


class SequenceTooLongError(SeqVCRError, ValueError):
    """An input (or prompt + generated tokens) is longer than the model's ``block_size``."""


@dataclass
class GPTConfig:
    """Shape and regularisation of a :class:`GPT`.

    ``bias``: biases in the linear layers and LayerNorms (GPT-2: True). ``tie_weights``: ``lm_head``
    shares its weight with the token embedding (GPT-2: True). ``layer_norm_eps``: GPT-2 uses 1e-5.
    ``dropout`` is applied to the embeddings, the attention probabilities and both residual branches.
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        check_shape(**vars(self))


def check_shape(**shape: Any) -> None:
    """The rules of a GPT's shape, for the values given (the config checks its ``model.*`` keys with them)."""
    for key in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
        if not isinstance(value := shape.get(key, 1), int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"model.{key} must be a positive integer, got {value!r}")
    if (n_embd := shape.get("n_embd", 0)) % (n_head := shape.get("n_head", 1)) != 0:  # 0: not given
        raise ConfigError(f"model.n_embd ({n_embd}) must be divisible by model.n_head ({n_head})")
    if not 0.0 <= float(dropout := shape.get("dropout", 0.0)) < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {dropout!r}")


class GPTOutput(NamedTuple):
    """What :meth:`GPT.forward` returns.

    logits: (B, T, vocab_size). loss: scalar mean cross-entropy over targets != -100, or None without
    targets. hidden_states: None unless requested; else a tuple of ``n_layer + 1`` tensors (B, T, n_embd):
    [0] token + position embeddings (before embedding dropout), [i] the output of block i for
    1 <= i < n_layer, [n_layer] ``ln_f`` applied to the output of the last block (the Hugging Face
    convention, so ``lm_head(hidden_states[-1]) == logits``).
    """

    logits: torch.Tensor
    loss: torch.Tensor | None
    hidden_states: tuple[torch.Tensor, ...] | None


class _KVCache:
    """Keys and values of one attention layer for incremental decoding, preallocated to ``capacity``.

    Preallocation avoids a ``torch.cat`` (a copy of the whole cache) at every decoding step. The buffers
    are allocated at the first append, with that tensor's dtype (bf16 under autocast, say) and device.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.k: torch.Tensor | None = None  # (B, H, capacity, hd)
        self.v: torch.Tensor | None = None  # (B, H, capacity, hd)
        self.length = 0  # number of positions filled

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, hd) after the cached positions; return all keys / values so far."""
        if self.k is None or self.v is None:
            B, H, _, hd = k.shape
            self.k = k.new_empty(B, H, self.capacity, hd)
            self.v = v.new_empty(B, H, self.capacity, hd)
        start, end = self.length, self.length + k.size(2)
        if end > self.capacity:
            raise SequenceTooLongError(f"KV cache holds {self.capacity} positions, asked for {end}")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]  # (B, H, end, hd) each


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (fused q/k/v projection ``c_attn``, output projection ``c_proj``)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: _KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape  # (B, T, n_embd)
        hd = C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.n_head, hd).transpose(1, 2)  # (B, H, T, hd)
        v = v.view(B, T, self.n_head, hd).transpose(1, 2)  # (B, H, T, hd)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(k, v)  # (B, H, past + T, hd)
        dropout_p = self.dropout if self.training else 0.0
        if past == 0:
            # Full sequence or cache prefill: the usual causal mask (SDPA picks a fused kernel).
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        elif T == 1:
            # One new token attends to every cached position, itself included: no mask needed.
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:
            # Several new tokens after a cache: query t (absolute position past + t) sees keys <= past + t.
            # is_causal would align the mask top-left (wrong here), so build it explicitly.
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: n_embd -> 4 n_embd -> GELU (tanh approximation, as GPT-2) -> n_embd."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, C) -> (B, T, 4C) -> (B, T, C)
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: _KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x


class GPT(nn.Module):
    """GPT-2 style language model. See the module docstring for the architecture and conventions."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            # One Parameter, two modules: the embedding and the output layer share storage.
            self.transformer.wte.weight = self.lm_head.weight
        self.reset_parameters()

    # ------------------------------------------------------------------ construction

    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, 0.02) for linear and embedding weights, zero biases, LayerNorm (1, 0),
        and the residual output projections (``*.c_proj``) scaled by 1/sqrt(2 n_layer) so that the
        residual stream's variance does not grow with depth (GPT-2 paper, section 2.3)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=std)

    # ------------------------------------------------------------------ forward

    def _check_length(self, length: int) -> None:
        if length > self.config.block_size:
            raise SequenceTooLongError(
                f"sequence length {length} exceeds the model's block_size {self.config.block_size}; "
                "raise model.block_size or shorten the sequences"
            )

    def _embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token + position embeddings (B, T, C) for tokens at absolute positions start .. start+T-1."""
        if idx.dim() != 2:
            raise SeqVCRError(f"expected token ids of shape (B, T), got shape {tuple(idx.shape)}")
        T = idx.size(1)
        self._check_length(start + T)
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        return self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C) + (T, C)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> GPTOutput:
        """Logits for every position; the loss when ``targets`` (B, T) are given; optionally every layer.

        idx: (B, T) long token ids, T <= block_size. targets: (B, T) long, -100 = ignored. The loss is the
        mean cross-entropy over the non-ignored targets (0.0, not NaN, when every target is ignored).
        """
        x = self._embed(idx)  # (B, T, C)
        hidden: list[torch.Tensor] | None = [x] if output_hidden_states else None
        x = self.transformer.drop(x)
        n_layer = len(self.transformer.h)
        for i, block in enumerate(self.transformer.h):
            x = block(x)  # (B, T, C)
            if hidden is not None and i < n_layer - 1:
                hidden.append(x)
        x = self.transformer.ln_f(x)  # (B, T, C)
        if hidden is not None:
            hidden.append(x)  # HF convention: the last hidden state is after the final LayerNorm
        logits = self.lm_head(x)  # (B, T, V)

        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise SeqVCRError(f"targets shape {tuple(targets.shape)} != idx shape {tuple(idx.shape)}")
            # sum / count (instead of reduction="mean") gives 0 rather than NaN for an all-ignored batch
            # without a host synchronisation; otherwise it is exactly the mean.
            total = F.cross_entropy(
                logits.view(-1, logits.size(-1)).to(torch.promote_types(logits.dtype, torch.float32)),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            count = (targets != IGNORE_INDEX).sum().clamp(min=1)
            loss = total / count
        return GPTOutput(logits, loss, tuple(hidden) if hidden is not None else None)

    # ------------------------------------------------------------------ decoding

    def _forward_cached(self, idx: torch.Tensor, caches: list[_KVCache]) -> torch.Tensor:
        """Run new tokens idx (B, T) after the cached positions; return the last position's logits (B, V)."""
        x = self._embed(idx, start=caches[0].length)  # (B, T, C); no dropout: eval mode
        for block, cache in zip(self.transformer.h, caches, strict=True):
            x = block(x, cache)
        x = self.transformer.ln_f(x[:, -1, :])  # (B, C): only the last position is needed
        return self.lm_head(x)  # (B, V)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new_tokens: int, eos_id: int | None = None) -> torch.Tensor:
        """Greedy decoding with a key/value cache. Returns the new tokens only, (B, max_new_tokens).

        prompt: (B, P) long; every row has the same length P (the caller buckets prompts by length; there
        is no padding inside a prompt). The prompt is run in one forward pass (prefill) that fills a
        per-layer cache; then one token per step at positions P, P+1, ... Once a row has produced
        ``eos_id``, every later token of that row is ``eos_id`` too (cut each row at its first eos);
        decoding stops as soon as every row has produced it, and the remaining columns are ``eos_id``.

        The module runs in eval mode (no dropout) inside this call; its training flag is restored after.
        The result equals naive greedy decoding (full forward at every step, argmax of the last logits).
        Requires P + max_new_tokens - 1 <= block_size (the last new token is never fed back).
        """
        if prompt.dim() != 2 or prompt.size(1) == 0:
            raise SeqVCRError(f"prompt must have shape (B, P) with P >= 1, got {tuple(prompt.shape)}")
        B, P = prompt.shape
        if max_new_tokens < 0:
            raise SeqVCRError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        fill = eos_id if eos_id is not None else 0
        out = torch.full((B, max_new_tokens), fill, dtype=torch.long, device=prompt.device)  # (B, N)
        if max_new_tokens == 0:
            return out
        self._check_length(P + max_new_tokens - 1)

        was_training = self.training
        self.eval()
        try:
            caches = [_KVCache(P + max_new_tokens - 1) for _ in range(self.config.n_layer)]
            finished = torch.zeros(B, dtype=torch.bool, device=prompt.device)  # (B,)
            logits = self._forward_cached(prompt, caches)  # (B, V): prefill
            for step in range(max_new_tokens):
                token = logits.argmax(dim=-1)  # (B,)
                if eos_id is not None:
                    token = token.masked_fill(finished, eos_id)
                    finished = finished | (token == eos_id)
                out[:, step] = token
                if step == max_new_tokens - 1:
                    break
                if eos_id is not None and bool(finished.all()):
                    break  # the rest of `out` is already eos_id
                logits = self._forward_cached(token[:, None], caches)  # (B, V)
        finally:
            self.train(was_training)
        return out

    # ------------------------------------------------------------------ accounting and optimiser

    def num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters (shared ones counted once).

        non_embedding=True leaves out the pure look-up tables: the position embedding, and the token
        embedding when it is not tied (a tied token embedding is also the output layer, so it stays
        counted, as in nanoGPT). This is the N of the 6N FLOPs-per-token estimate.
        """
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a shared Parameter once
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_weights:
                n -= self.transformer.wte.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token, PaLM appendix B: 6 N + 12 L H Q T.

        N = num_params(non_embedding=True), L layers, H heads, Q head size, T = seq_len (default
        block_size). The attention term counts the full T x T score matrix (no causal halving), as PaLM
        and nanoGPT do. Forward-only (inference) FLOPs are a third of this.
        """
        cfg = self.config
        T = cfg.block_size if seq_len is None else seq_len
        Q = cfg.n_embd // cfg.n_head
        return 6 * self.num_params(non_embedding=True) + 12 * cfg.n_layer * cfg.n_head * Q * T


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's two parameter groups: weight decay on matrices (parameters with >= 2 dims: linear weights
    and embeddings), none on biases and LayerNorm gains (nanoGPT's rule).

    Each group keeps the order of ``module.parameters()`` (a shared parameter once): the order a saved
    optimiser state refers to."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def configure_adamw(
    module: nn.Module, weight_decay: float, lr: float, betas: tuple[float, float] = (0.9, 0.999),
    device_type: str = "cpu", fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over ``module``'s :func:`parameter_groups` (the model alone, or the model with its Seq-VCR
    head as training has it). ``fused=None`` uses the fused kernel on CUDA."""
    if fused is None:
        fused = device_type == "cuda"
    extra = {"fused": True} if fused else {}
    return torch.optim.AdamW(parameter_groups(module, weight_decay), lr=lr, betas=betas, **extra)
