"""(d) Evaluation throughput: greedy decoding with the KV cache (``GPT.generate``) against naive decoding
(a full forward pass for every new token), examples/s, tiny preset on 3x3 (gpt2-small on 5x5 with
``--full``); plus the examples/s of the whole ``seqvcr.evaluation.evaluate`` path.
"""

from __future__ import annotations

from typing import Any

import torch

from seqvcr.bench.harness import (
    Settings,
    autocast,
    measure,
    measure_interleaved,
    stats,
    tf32,
    untrained_model,
)
from seqvcr.datafiles import resolve_data_path
from seqvcr.errors import SeqVCRError
from seqvcr.evaluation import evaluate
from seqvcr.reporting.tables import markdown_table
from seqvcr.tasks import read_examples

__all__ = ["TITLE", "markdown", "naive_generate", "run"]

TITLE = "evaluation: greedy decoding with KV cache vs naive"


@torch.no_grad()
def naive_generate(model: Any, prompt: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding without a cache: one full forward pass over the whole prefix per new token.
    prompt: (B, P). Returns (B, max_new_tokens)."""
    seq = prompt  # (B, P + k)
    out = []
    for step in range(max_new_tokens):
        token = model(seq).logits[:, -1, :].argmax(-1)  # (B,)
        out.append(token)
        if step < max_new_tokens - 1:
            seq = torch.cat([seq, token[:, None]], dim=1)
    return torch.stack(out, dim=1)  # (B, max_new_tokens)


def _case(s: Settings, preset: str, digits: int, n: int) -> dict[str, Any]:
    """Decode the first ``n`` problems of the reference validation file with an untrained model."""
    valid = resolve_data_path(f"ref:mult/{digits}x{digits}/valid.txt")
    model, fmt, data = untrained_model(s, preset, digits, lambda task: read_examples(task, valid)[:n])
    p = int(data.prompt_lengths[0])
    if not bool((data.prompt_lengths == p).all()):
        raise SeqVCRError("bench (d): expected prompts of one length")
    new = int((data.lengths - data.prompt_lengths).max())  # answer digits + eos
    batch = 256
    prompts = [data.ids[i : i + batch, :p] for i in range(0, len(data), batch)]  # each (b, P)
    outputs: dict[str, list[torch.Tensor]] = {}

    def cached() -> None:
        with autocast(s.device):
            outputs["cache"] = [model.generate(q, new) for q in prompts]

    def naive() -> None:
        with autocast(s.device):
            outputs["naive"] = [naive_generate(model, q, new) for q in prompts]

    slow = preset == "gpt2-small" and not s.cuda
    warm, reps = (0, 1) if slow else (1, s.repeats if s.quick else 3)
    with tf32(s.cuda):
        times = measure_interleaved(s, {"kv_cache": cached, "naive": naive}, warm, reps)
        t_eval = measure(s, lambda: evaluate(model, fmt, data, batch_size=batch), 0, 1 if slow else reps)
    same = [(a == b).flatten() for a, b in zip(outputs["cache"], outputs["naive"])]
    t_cache, t_naive = times["kv_cache"].median, times["naive"].median
    s.log(f"(d) {preset} {digits}x{digits}: {n / t_cache:,.1f} ex/s with cache, {n / t_naive:,.1f} naive")
    return {
        "model": preset,
        "task": f"mult {digits}x{digits}",
        "examples": len(data),
        "batch": batch,
        "prompt_len": p,
        "new_tokens": new,
        "precision": s.precision,
        "kv_cache": {**stats(times["kv_cache"]), "examples_per_s": len(data) / t_cache},
        "naive": {**stats(times["naive"]), "examples_per_s": len(data) / t_naive},
        "speedup": t_naive / t_cache,
        "token_agreement": float(torch.cat(same).float().mean()),  # fraction of identical tokens
        "evaluate_examples_per_s": len(data) / t_eval.median,
        "note": "untrained weights and a fixed number of new tokens (no stop at <eos>) for both decoders",
    }


def run(s: Settings) -> dict[str, Any]:
    """Greedy decoding throughput, KV cache vs naive."""
    cases = {"tiny 3x3": _case(s, "tiny", 3, 128 if s.quick else 1000)}
    if s.full:
        cases["gpt2-small 5x5"] = _case(s, "gpt2-small", 5, 1000 if s.cuda else 64)
    return {"cases": cases}


def markdown(res: dict[str, Any]) -> list[str]:
    """The section of bench.md: one row per case."""
    header = ["case", "examples", "new tokens", "KV cache ex/s", "naive ex/s", "speed-up", "evaluate() ex/s"]
    rows = [[f"{case} ({v['precision']})", v["examples"], v["new_tokens"],
             f"{v['kv_cache']['examples_per_s']:,.1f}", f"{v['naive']['examples_per_s']:,.1f}",
             f"{v['speedup']:.1f}x", f"{v['evaluate_examples_per_s']:,.1f}"]
            for case, v in res["cases"].items()]
    return [markdown_table(header, rows)]
