"""Seq-VCR on a Hugging Face causal LM, in your own training loop (paper appendix I: Llama-3.2-1B + LoRA).

A tiny randomly initialised ``LlamaForCausalLM`` stands in for the real model, so that this runs in
seconds on a CPU; with a real checkpoint only the model construction changes (``from_pretrained``, plus
LoRA adapters via ``peft`` if you like). The recipe:

1. call the model with ``output_hidden_states=True``;
2. ``plugin = attach_seqvcr(model)`` (regularises the last layer by default, ``layer=`` to change);
3. ``loss = out.loss + plugin(out, attention_mask)`` -- the paper adds the two with no extra weight;
4. put the plug-in's projection parameters in the optimiser too.

Run: ``python examples/hf_plugin_llama.py`` (needs transformers: ``pip install 'seqvcr[hf]'``).
"""

from __future__ import annotations

import torch

from seqvcr.hf import attach_seqvcr


def main(steps: int = 5, batch: int = 8, seq_len: int = 16, seed: int = 0) -> list[float]:
    """Train a tiny random Llama for ``steps`` steps with LM + Seq-VCR loss; return the total losses."""
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        raise SystemExit(
            "hf_plugin_llama.py needs the transformers package, which is not installed: "
            "pip install 'seqvcr[hf]'"
        ) from None

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config)
    # Multiplication defaults (lambda1=1.0, lambda2=0.004); a small projection keeps the demo fast
    # (the paper uses proj_dim=2048).
    plugin = attach_seqvcr(model, layer=-1, proj_dim=128, lambda1=1.0, lambda2=0.004)
    optimizer = torch.optim.AdamW([*model.parameters(), *plugin.parameters()], lr=1e-3)

    # Random data with right padding: the last 4 positions of half the rows are padding.
    input_ids = torch.randint(0, config.vocab_size, (batch, seq_len))  # (B, T)
    attention_mask = torch.ones(batch, seq_len, dtype=torch.long)  # (B, T), 1 = real token
    attention_mask[: batch // 2, -4:] = 0
    labels = input_ids.masked_fill(attention_mask == 0, -100)  # no LM loss on padding

    model.train()
    totals = []
    for step in range(steps):
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            output_hidden_states=True,  # Seq-VCR reads the hidden states
        )
        seqvcr_loss = plugin(out, attention_mask)  # scalar
        loss = out.loss + seqvcr_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        terms = plugin.last  # detached SeqVCROutput(loss, variance, covariance) for logging
        print(
            f"step {step}: loss {loss.item():.4f}  lm {out.loss.item():.4f}  seqvcr {seqvcr_loss.item():.4f}"
            f"  (variance {terms.variance.item():.4f}, covariance {terms.covariance.item():.4f})"
        )
        totals.append(loss.item())
    return totals


if __name__ == "__main__":
    main()
