"""Hugging Face interop: GPT-2 export / import (torch + safetensors only) and the Seq-VCR plug-in.

Tests marked by ``pytest.importorskip("transformers")`` compare against the optional dependency.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from oracles import seq_vcr_batch_time_reference, seq_vcr_reference, seq_vcr_terms_reference

from seqvcr.errors import SeqVCRError
from seqvcr.hf import SeqVCRPlugin, attach_seqvcr, load_hf_gpt2, save_hf_gpt2
from seqvcr.model import GPT, GPTConfig

V, BLOCK = 29, 32


def random_gpt(**overrides) -> GPT:
    """A tiny GPT with non-trivial LayerNorm parameters (so a mix-up of gains and biases would show)."""
    kw = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16)
    kw.update(overrides)
    model = GPT(GPTConfig(**kw)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name or "ln_f" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def ids(batch: int = 3, length: int = 12) -> torch.Tensor:
    return torch.randint(0, V, (batch, length))


# -------------------------------------------------------------------------- GPT-2 without transformers


@pytest.mark.parametrize("tie, bias", [(True, True), (False, True), (True, False)])
def test_round_trip_identical_logits(tmp_path: Path, tie: bool, bias: bool):
    model = random_gpt(tie_weights=tie, bias=bias, dropout=0.1, layer_norm_eps=1e-6)
    save_hf_gpt2(model, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
    assert cfg["activation_function"] == "gelu_new" and cfg["tie_word_embeddings"] is tie
    back = load_hf_gpt2(tmp_path).eval()
    assert back.config.tie_weights is tie and back.config.dropout == 0.1
    assert back.config.layer_norm_eps == 1e-6
    x = ids()
    assert torch.equal(back(x).logits, model(x).logits)
    if tie:
        assert back.transformer.wte.weight is back.lm_head.weight


def test_loads_bin_without_prefix(tmp_path: Path):
    """A bare GPT2Model checkpoint (keys without "transformer.") in pytorch_model.bin."""
    model = random_gpt()
    save_hf_gpt2(model, tmp_path)
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    torch.save({k.removeprefix("transformer."): v for k, v in state.items()}, tmp_path / "pytorch_model.bin")
    x = ids()
    assert torch.equal(load_hf_gpt2(tmp_path).eval()(x).logits, model(x).logits)


def test_vocab_resize(tmp_path: Path):
    model = random_gpt()
    save_hf_gpt2(model, tmp_path)
    small = load_hf_gpt2(tmp_path, vocab_size=11)
    assert small.transformer.wte.weight.shape == (11, 16) and small.lm_head.weight.shape == (11, 16)
    # blocks and positions carry over, the token embedding is fresh
    assert torch.equal(small.transformer.wpe.weight, model.transformer.wpe.weight)
    assert torch.equal(small.transformer.h[1].mlp.c_fc.weight, model.transformer.h[1].mlp.c_fc.weight)
    assert not torch.equal(small.transformer.wte.weight, model.transformer.wte.weight[:11])
    kept = load_hf_gpt2(tmp_path, vocab_size=40, keep_token_rows=True)
    assert torch.equal(kept.transformer.wte.weight[:V], model.transformer.wte.weight)
    assert kept.transformer.wte.weight is kept.lm_head.weight


def test_load_errors(tmp_path: Path):
    with pytest.raises(SeqVCRError, match="config.json"):
        load_hf_gpt2(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(SeqVCRError, match="model.safetensors"):
        load_hf_gpt2(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(SeqVCRError, match="only 'gpt2'"):
        load_hf_gpt2(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "activation_function": "relu"}))
    with pytest.raises(SeqVCRError, match="activation_function"):
        load_hf_gpt2(tmp_path)
    # shape mismatch between config and weights
    model = random_gpt()
    save_hf_gpt2(model, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["n_embd"] = 32
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SeqVCRError, match="shape"):
        load_hf_gpt2(tmp_path)


# -------------------------------------------------------------------------- against transformers


def test_transformers_loads_our_export(tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    for tie in (True, False):
        model = random_gpt(tie_weights=tie)
        save_hf_gpt2(model, tmp_path / str(tie))
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / str(tie)).eval()
        x = ids()
        with torch.no_grad():
            theirs = hf(x, output_hidden_states=True)
            ours = model(x, output_hidden_states=True)
        torch.testing.assert_close(theirs.logits, ours.logits, atol=1e-5, rtol=0)
        # same hidden-state convention ([0] embeddings, [-1] after ln_f)
        assert len(theirs.hidden_states) == len(ours.hidden_states)
        for a, b in zip(theirs.hidden_states, ours.hidden_states, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_we_load_transformers_checkpoint(tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=V, n_positions=BLOCK, n_embd=16, n_layer=2, n_head=2)
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # random LayerNorm / bias values, HF initialises them to 1 / 0
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(tmp_path)
    ours = load_hf_gpt2(tmp_path).eval()
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, hf(x).logits, atol=1e-5, rtol=0)


# -------------------------------------------------------------------------- Seq-VCR plug-in


def tiny_llama():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=32,
    )
    return transformers.LlamaForCausalLM(config)


def test_plugin_on_tiny_llama():
    """The plug-in's loss on a padded batch equals Eq. 3-4 computed on the unpadded rows only: at the
    last three positions, where the first three sequences are padding, only the other three count."""
    model = tiny_llama()
    plugin = attach_seqvcr(model, proj_dim=24, lambda1=0.8, lambda2=0.05)
    assert plugin.seqvcr.projection.in_features == 32
    x = torch.randint(0, 100, (6, 10))
    mask = torch.ones(6, 10, dtype=torch.long)
    mask[:3, -3:] = 0
    out = model(input_ids=x, attention_mask=mask, labels=x, output_hidden_states=True)
    extra = plugin(out, attention_mask=mask)
    z = plugin.seqvcr.projection(out.hidden_states[-1])  # (6, 10, 24): the default layer, the last
    ref_var, ref_cov = seq_vcr_terms_reference(z, mask.bool())
    torch.testing.assert_close(extra.double(), 0.8 * ref_var + 0.05 * ref_cov, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(plugin.last.variance.double(), ref_var.detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(plugin.last.covariance.double(), ref_cov.detach(), rtol=1e-5, atol=1e-7)
    assert plugin.last.loss.item() == extra.item() and not plugin.last.loss.requires_grad
    # the states at padded positions make no difference, whatever they hold
    noisy = out.hidden_states[-1].detach().clone()
    noisy[:3, -3:] = 1e3 * torch.randn(3, 3, 32)
    torch.testing.assert_close(plugin(noisy, attention_mask=mask), extra, rtol=1e-6, atol=1e-7)
    # without the mask, the padded rows would count (the reference over all rows differs)
    assert float(seq_vcr_reference(z.detach(), 0.8, 0.05)) != pytest.approx(extra.item(), rel=1e-4)
    (out.loss + extra).backward()
    assert plugin.seqvcr.projection.weight.grad is not None
    assert plugin.seqvcr.projection.weight.grad.abs().sum() > 0
    last_layer = model.model.layers[-1].mlp.down_proj.weight
    assert last_layer.grad is not None and last_layer.grad.abs().sum() > 0


def test_plugin_with_our_gpt_and_errors():
    model = random_gpt(n_layer=3).train()
    plugin = attach_seqvcr(model, layer=0, proj_dim=8, lambda1=0.1, lambda2=0.5, over="batch_time")
    x = ids(4, 9)
    out = model(x, output_hidden_states=True)
    extra = plugin(out)
    # layer 0 is the token + position embedding; over="batch_time": one covariance over all 36 vectors
    with torch.no_grad():
        emb = model.transformer.wte(x) + model.transformer.wpe(torch.arange(9))
        ref_var, ref_cov = seq_vcr_batch_time_reference(plugin.seqvcr.projection(emb))
    torch.testing.assert_close(extra.detach().double(), 0.1 * ref_var + 0.5 * ref_cov, rtol=1e-5, atol=1e-7)
    extra.backward()
    assert model.transformer.wte.weight.grad.abs().sum() > 0  # layer 0 = embeddings
    assert model.transformer.h[0].mlp.c_fc.weight.grad is None  # later layers untouched
    # a tuple of hidden states or the chosen tensor itself give the same reference value
    for given in (out.hidden_states, out.hidden_states[0]):
        torch.testing.assert_close(plugin(given).detach().double(), 0.1 * ref_var + 0.5 * ref_cov,
                                   rtol=1e-5, atol=1e-7)
    with pytest.raises(SeqVCRError, match="output_hidden_states=True"):
        plugin(model(ids(4, 9)))
    with pytest.raises(SeqVCRError, match="out of range"):
        SeqVCRPlugin(16, layer=7, proj_dim=8)(out)
