"""(e) Representation entropy of every layer over 1000 sequences: the forward pass with all hidden states
plus ``seqvcr.entropy.matrix_entropy`` of each layer for each sequence, in large batches (seconds).
"""

from __future__ import annotations

from typing import Any

import torch

from seqvcr.bench.harness import Settings, autocast, tf32, timed, untrained_model
from seqvcr.entropy import matrix_entropy
from seqvcr.reporting.tables import markdown_table

__all__ = ["TITLE", "markdown", "run"]

TITLE = "entropy of every layer over 1000 sequences"


def run(s: Settings) -> dict[str, Any]:
    """Forward with every hidden state + matrix entropy of each layer for each sequence."""
    preset, digits, n = ("tiny", 3, 200) if s.quick else ("gpt2-small", 5, 1000)
    model, _, data = untrained_model(s, preset, digits, lambda task: task.generate(n, seed=3))
    batch = 1000 if s.cuda else 250
    lengths = data.lengths.tolist()
    timing = {"forward_s": 0.0, "entropy_s": 0.0}
    means: list[torch.Tensor] = []

    @torch.no_grad()
    def run_all() -> None:
        timing["forward_s"] = timing["entropy_s"] = 0.0
        sums = None
        for start in range(0, n, batch):
            x = data.ids[start : start + batch]  # (b, L)
            t0 = s.now()
            with autocast(s.device):
                hidden = model(x, output_hidden_states=True).hidden_states  # n_layer+1 of (b, L, C)
            t1 = s.now()
            h = torch.stack([t.float() for t in hidden])  # (n_layer+1, b, L, C)
            ent = torch.empty(h.shape[0], h.shape[1], dtype=torch.float64, device=s.device)  # (layers, b)
            rows = torch.tensor(lengths[start : start + batch], device=s.device)  # (b,)
            for length in sorted(set(rows.tolist())):  # one batched call per sequence length
                sel = (rows == length).nonzero().squeeze(1)
                ent[:, sel] = matrix_entropy(h[:, sel, :length], alpha=1.0, normalize=True)
            timing["forward_s"] += t1 - t0
            timing["entropy_s"] += s.now() - t1
            sums = ent.sum(1) if sums is None else sums + ent.sum(1)
        means[:] = [sums / n]

    with tf32(s.cuda):
        # warm-up on one batch, then full passes (one on a CPU at the full size: it takes minutes)
        reps = 1 if not s.cuda and not s.quick else (2 if s.quick else 3)
        with torch.no_grad(), autocast(s.device):
            model(data.ids[: min(batch, 8)], output_hidden_states=True)
        runs = [{"total_s": timed(s, run_all), **timing} for _ in range(reps)]  # timing: of that run
    best = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]  # the median run
    s.log(f"(e) {preset}: {n} sequences, {best['total_s']:.2f} s (entropy {best['entropy_s']:.2f} s)")
    return {
        "model": preset,
        "layers": model.config.n_layer + 1,
        "sequences": n,
        "seq_len": data.max_length,
        "batch": batch,
        "precision": f"{s.precision} forward, float64 entropy",
        "runs": len(runs),
        "total_s": best["total_s"],
        "forward_s": best["forward_s"],
        "entropy_s": best["entropy_s"],
        "mean_normalized_entropy_per_layer": [round(float(v), 4) for v in means[0]],
    }


def markdown(res: dict[str, Any]) -> list[str]:
    """The section of bench.md: the model, the sample, and where the time goes."""
    header = ["model", "layers", "sequences", "T", "batch", "forward s", "entropy s", "total s"]
    row = [res["model"], res["layers"], res["sequences"], res["seq_len"], res["batch"],
           f"{res['forward_s']:.2f}", f"{res['entropy_s']:.2f}", f"{res['total_s']:.2f}"]
    return [markdown_table(header, [row])]
