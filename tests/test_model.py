"""GPT model: shapes, loss, hidden-state convention, causality, KV-cache decoding, presets and errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from oracles import counted_matmul_flops_per_token

from seqvcr.errors import ConfigError, SeqVCRError
from seqvcr.model import GPT, PRESETS, GPTConfig, GPTOutput, SequenceTooLongError, configure_adamw

V, BLOCK = 23, 48


def tiny(**overrides) -> GPT:
    """A very small model (2 layers, width 32) in eval mode."""
    kw = dict(n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    kw.update(overrides)
    return GPT(GPTConfig(vocab_size=V, block_size=BLOCK, **kw)).eval()


def naive_greedy(model: GPT, prompt: torch.Tensor, n: int, eos_id: int | None = None) -> torch.Tensor:
    """Reference decoder: full forward at every step, argmax of the last logits, eos sticks."""
    seq = prompt
    finished = torch.zeros(prompt.size(0), dtype=torch.bool)
    new = []
    with torch.no_grad():
        for _ in range(n):
            token = model(seq).logits[:, -1].argmax(-1)  # (B,)
            if eos_id is not None:
                token = torch.where(finished, eos_id, token)
                finished |= token == eos_id
            new.append(token)
            seq = torch.cat([seq, token[:, None]], dim=1)
    return torch.stack(new, dim=1)  # (B, n)


# ------------------------------------------------------------------------------------------ forward


def test_shapes_and_output_type():
    model = tiny()
    idx = torch.randint(0, V, (3, 11))
    out = model(idx)
    assert isinstance(out, GPTOutput)
    assert out.logits.shape == (3, 11, V)
    assert out.loss is None and out.hidden_states is None
    out = model(idx, targets=idx, output_hidden_states=True)
    assert out.loss.dim() == 0
    assert len(out.hidden_states) == model.config.n_layer + 1
    assert all(h.shape == (3, 11, 32) for h in out.hidden_states)


def test_loss_is_masked_cross_entropy():
    model = tiny()
    idx = torch.randint(0, V, (4, 9))
    targets = torch.randint(0, V, (4, 9))
    targets[:, :4] = -100
    targets[2, :] = -100
    out = model(idx, targets=targets)
    keep = targets != -100
    manual = F.cross_entropy(out.logits[keep], targets[keep])  # mean over kept targets only
    torch.testing.assert_close(out.loss, manual)
    # Every target ignored: 0, not NaN (a batch of pure prompts must not look like a divergence).
    assert model(idx, targets=torch.full_like(idx, -100)).loss.item() == 0.0


def test_hidden_state_convention():
    model = tiny(n_layer=3)
    idx = torch.randint(0, V, (2, 7))
    out = model(idx, output_hidden_states=True)
    hs = out.hidden_states
    tr = model.transformer
    # [0] = token + position embeddings
    torch.testing.assert_close(hs[0], tr.wte(idx) + tr.wpe(torch.arange(7)))
    # [i] = output of block i, [n_layer] = ln_f(output of the last block)
    torch.testing.assert_close(hs[1], tr.h[0](hs[0]))
    torch.testing.assert_close(hs[2], tr.h[1](hs[1]))
    torch.testing.assert_close(hs[3], tr.ln_f(tr.h[2](hs[2])))
    torch.testing.assert_close(model.lm_head(hs[-1]), out.logits)


def test_causal():
    model = tiny()
    idx = torch.randint(0, V, (2, 12))
    changed = idx.clone()
    changed[:, 8] = (changed[:, 8] + 1) % V
    a, b = model(idx).logits, model(changed).logits
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_tied_and_untied_weights():
    tied = tiny()
    assert tied.transformer.wte.weight is tied.lm_head.weight
    assert tied.transformer.wte.weight.data_ptr() == tied.lm_head.weight.data_ptr()
    untied = tiny(tie_weights=False)
    assert untied.transformer.wte.weight.data_ptr() != untied.lm_head.weight.data_ptr()
    # the untied model has exactly one more V x C matrix
    assert untied.num_params(False) - tied.num_params(False) == V * 32


def test_too_long_input_is_a_clear_error():
    model = tiny()
    with pytest.raises(SequenceTooLongError, match="block_size 48"):
        model(torch.zeros(1, BLOCK + 1, dtype=torch.long))
    assert issubclass(SequenceTooLongError, SeqVCRError) and issubclass(SequenceTooLongError, ValueError)
    model(torch.zeros(1, BLOCK, dtype=torch.long))  # exactly block_size is fine
    with pytest.raises(SequenceTooLongError):
        model.generate(torch.zeros(1, 40, dtype=torch.long), max_new_tokens=10)  # 40 + 10 - 1 > 48
    assert model.generate(torch.zeros(1, 40, dtype=torch.long), max_new_tokens=9).shape == (1, 9)


# ------------------------------------------------------------------------------------------ decoding


@pytest.mark.parametrize(
    "batch, prompt_len, tie, seed",
    [(1, 1, True, 0), (3, 5, True, 1), (4, 17, False, 2), (2, 30, True, 3)],
)
def test_kv_cache_generate_equals_naive(batch, prompt_len, tie, seed):
    torch.manual_seed(seed)
    model = tiny(tie_weights=tie).double()  # float64: no argmax ties from rounding differences
    prompt = torch.randint(0, V, (batch, prompt_len))
    n = BLOCK - prompt_len + 1 if prompt_len > 20 else 12  # the 30-token prompt fills the block exactly
    got = model.generate(prompt, n)
    assert got.shape == (batch, n) and got.dtype == torch.long
    assert torch.equal(got, naive_greedy(model, prompt, n))


def test_kv_cache_generate_float32():
    model = tiny(n_layer=3)
    prompt = torch.randint(0, V, (5, 6))
    assert torch.equal(model.generate(prompt, 15), naive_greedy(model, prompt, 15))


def test_generate_eos_sticks_and_stops_early(monkeypatch):
    torch.manual_seed(4)
    model = tiny().double()
    prompt = torch.randint(0, V, (4, 6))
    free = naive_greedy(model, prompt, 12)
    eos = int(free[0, 2])  # row 0 emits this token at step 2 (or earlier)
    got = model.generate(prompt, 12, eos_id=eos)
    assert torch.equal(got, naive_greedy(model, prompt, 12, eos_id=eos))
    for row in got:  # after the first eos everything is eos
        hits = (row == eos).nonzero()
        if len(hits):
            assert bool((row[hits[0, 0] :] == eos).all())

    # One row: decoding stops right after eos; the remaining columns are eos.
    calls = []
    original = GPT._forward_cached

    def counting(self, idx, caches):
        calls.append(idx.shape[1])
        return original(self, idx, caches)

    monkeypatch.setattr(GPT, "_forward_cached", counting)
    first = int((free[0] == eos).nonzero()[0, 0])
    out = model.generate(prompt[:1], 12, eos_id=eos)
    assert torch.equal(out[0, : first + 1], free[0, : first + 1])
    assert bool((out[0, first:] == eos).all())
    assert calls == [6] + [1] * first  # prefill, then one step per token before eos


def test_generate_restores_training_mode_and_ignores_dropout():
    model = tiny(dropout=0.5).train()
    prompt = torch.randint(0, V, (2, 4))
    got = model.generate(prompt, 8)
    assert model.training  # flag restored
    model.eval()
    assert torch.equal(got, naive_greedy(model, prompt, 8))  # decoding ran without dropout


def test_cached_chunks_match_full_forward():
    """The explicit-mask branch (several new tokens after a non-empty cache) is exact too."""
    from seqvcr.model import _KVCache

    model = tiny().double()
    idx = torch.randint(0, V, (2, 14))
    caches = [_KVCache(14) for _ in range(model.config.n_layer)]
    with torch.no_grad():
        model._forward_cached(idx[:, :5], caches)
        last = model._forward_cached(idx[:, 5:], caches)  # 9 tokens after 5 cached ones
        torch.testing.assert_close(last, model(idx).logits[:, -1])


# ------------------------------------------------------------------------------------------ presets etc.


def preset(name: str, vocab_size: int = V, block_size: int = BLOCK, **overrides: Any) -> GPT:
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, **{**PRESETS[name], **overrides}))


def test_presets_and_errors():
    assert set(PRESETS) >= {"gpt2-small", "mingpt", "tiny"}
    model = preset("mingpt", n_layer=6)
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd) == (6, 4, 256)
    assert model.config.dropout == 0.1
    assert preset("tiny").config.n_embd == 128
    with pytest.raises(ConfigError, match="divisible"):
        preset("tiny", n_head=5)


@pytest.mark.slow
def test_gpt2_small_parameter_count_and_flops():
    with torch.device("meta"):  # no memory, no init cost
        model = preset("gpt2-small", vocab_size=50257, block_size=1024)
    assert model.num_params(non_embedding=False) == 124_439_808  # Hugging Face GPT-2 small
    n = model.num_params()  # minus wpe (the tied wte is also the head)
    assert n == 124_439_808 - 1024 * 768
    # FLOPs per token against a count of the matrix products of a real forward + backward: 6N counts
    # every non-embedding parameter, the matmuls all but the 1-D ones (biases and LayerNorm gains,
    # element-wise work), and the full T x T attention (12 L H Q T) is in the counted products
    one_d = sum(p.numel() for p in model.parameters() if p.dim() == 1)
    for seq_len in (64, 256):
        counted = counted_matmul_flops_per_token(model, seq_len)
        assert model.flops_per_token(seq_len=seq_len) == counted + 6 * one_d


def test_init_scales_residual_projections():
    model = preset("tiny", n_layer=8, n_embd=256)
    std = model.transformer.h[0].mlp.c_proj.weight.std().item()
    assert math.isclose(std, 0.02 / math.sqrt(16), rel_tol=0.1)
    assert math.isclose(model.transformer.h[0].mlp.c_fc.weight.std().item(), 0.02, rel_tol=0.1)


def test_configure_optimizer_groups():
    model = tiny(tie_weights=True)
    opt = configure_adamw(model, weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95), device_type="cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert not opt.defaults.get("fused")
