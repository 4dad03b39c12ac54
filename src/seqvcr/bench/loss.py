"""(a) The Seq-VCR loss, forward + backward, at the paper's size (N=32, T=24, d=2048):
``seq_vcr_loss`` (an N x N Gram per position, cost T*N^2*d) against the per-position d x d covariance
as lightly's VICReg / VICRegL losses compute it (cost T*N*d^2). Values must agree (rtol 1e-4); target
>= 20x. A stronger dense d x d baseline is reported too, not targeted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from seqvcr.bench.harness import Settings, measure_interleaved, ms, stats, target, tf32
from seqvcr.objectives import seq_vcr_loss
from seqvcr.reporting.tables import markdown_table

__all__ = ["PAPER_SHAPE", "QUICK_SHAPE", "TITLE", "markdown", "naive_seq_vcr_loss", "run", "targets"]

TITLE = "Seq-VCR loss vs per-position d x d covariance"
PAPER_SHAPE = (32, 24, 2048)  # (N, T, d)
QUICK_SHAPE = (32, 24, 512)


def naive_seq_vcr_loss(
    x: torch.Tensor, lambda1: float = 1.0, lambda2: float = 0.004, eta: float = 1e-3
) -> torch.Tensor:
    """Seq-VCR with one d x d covariance per position, as lightly's ``VICRegLoss`` / ``VICRegLLoss``
    compute it for inputs with extra dims (an einsum builds every C_i, a boolean mask selects the
    off-diagonal entries); Eq. 3-4. x: (N, T, d). Returns a scalar."""
    n, _, d = x.shape
    std = torch.sqrt(x.var(dim=0) + eta)  # (T, d) unbiased variance across the batch
    variance = F.relu(1.0 - std).mean()  # 1/(T d) sum_i sum_k
    xc = x - x.mean(dim=0)  # (N, T, d)
    cov = torch.einsum("b...c,b...e->...ce", xc, xc) / (n - 1)  # (T, d, d): every C_i
    nondiag = ~torch.eye(d, dtype=torch.bool, device=x.device)  # (d, d)
    covariance = (cov[..., nondiag].pow(2).sum(-1) / d).mean()  # (T, d*d-d) -> (T,) -> mean over i
    return lambda1 * variance + lambda2 * covariance


def _dense_seq_vcr_loss(
    x: torch.Tensor, lambda1: float = 1.0, lambda2: float = 0.004, eta: float = 1e-3
) -> torch.Tensor:
    """A stronger d x d baseline: still the (T, d, d) covariance, but ||C||_F^2 - ||diag C||^2 instead of
    boolean indexing (no copy of the off-diagonal entries). x: (N, T, d)."""
    n, t, d = x.shape
    xc = x - x.mean(dim=0)  # (N, T, d)
    var = xc.pow(2).sum(0) / (n - 1)  # (T, d)
    variance = F.relu(1.0 - torch.sqrt(var + eta)).sum() / (t * d)
    cov = torch.einsum("btc,bte->tce", xc, xc) / (n - 1)  # (T, d, d)
    covariance = (cov.pow(2).sum() - var.pow(2).sum()) / (t * d)
    return lambda1 * variance + lambda2 * covariance


def run(s: Settings) -> dict[str, Any]:
    """Ours vs the per-position d x d covariance, forward + backward, same process, values equal."""
    n, t, d = QUICK_SHAPE if s.quick else PAPER_SHAPE
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, t, d, generator=gen).to(s.device)  # (N, T, d) float32
    impls: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "seqvcr (N x N Gram)": lambda z: seq_vcr_loss(z, 1.0, 0.004, 1e-3),
        "per-position d x d (lightly/VICRegL form)": naive_seq_vcr_loss,
        "per-position d x d, diagonal subtracted": _dense_seq_vcr_loss,
    }
    values: dict[str, float] = {}
    grads: dict[str, torch.Tensor] = {}

    def fwd_bwd(name: str) -> Callable[[], None]:
        def call() -> None:
            z = x.detach().requires_grad_()  # (N, T, d) a fresh leaf
            loss = impls[name](z)
            loss.backward()
            values[name] = float(loss.detach())
            grads[name] = z.grad  # type: ignore[assignment]

        return call

    # fp32 matmuls everywhere (TF32 off) so that the two forms compute the same numbers
    with tf32(False):
        # the naive form takes seconds per call on a CPU at the paper's size: fewer repeats there
        slow = not s.cuda and not s.quick
        warm, reps = (1, 3) if slow else (s.warmup, s.repeats)
        times = measure_interleaved(s, {k: fwd_bwd(k) for k in impls}, warm, reps)
    ours, naive, dense = list(impls)
    rel_value = abs(values[ours] - values[naive]) / max(abs(values[naive]), 1e-30)
    rel_grad = float((grads[ours] - grads[naive]).abs().max() / grads[naive].abs().max().clamp(min=1e-30))
    med = {k: m.median for k, m in times.items()}
    s.log(f"(a) ours {ms(med[ours])} ms, d x d {ms(med[naive])} ms: {med[naive] / med[ours]:.1f}x")
    return {
        "shape": {"N": n, "T": t, "d": d},
        "paper_size": (n, t, d) == PAPER_SHAPE,
        "dtype": "float32",
        "implementations": {k: {**stats(times[k]), "loss": values[k]} for k in impls},
        "values_match": rel_value <= 1e-4,
        "rel_value_diff": rel_value,
        "rel_grad_diff": rel_grad,
        "ratio": med[naive] / med[ours],
        "ratio_vs_dense": med[dense] / med[ours],
    }


def targets(res: dict[str, Any], s: Settings) -> list[dict[str, Any]]:
    """>= 20x at the paper's size, with equal values."""
    setting = "N={N} T={T} d={d}".format(**res["shape"])
    status = None if res["paper_size"] else "n/a (quick: not the paper size)"
    if not res["values_match"]:
        status = "FAIL (values differ)"
    return [target("a", "Seq-VCR loss fwd+bwd vs per-position d x d", setting, res["ratio"], "x", ">= 20",
                   res["ratio"] >= 20, status)]


def markdown(res: dict[str, Any]) -> list[str]:
    """The section of bench.md: one row per implementation."""
    sh = res["shape"]
    ours = next(iter(res["implementations"].values()))["median_s"]
    rows = [[name, ms(v["median_s"]), ms(v["min_s"]), f"{v['loss']:.6f}", f"{v['median_s'] / ours:.1f}x"]
            for name, v in res["implementations"].items()]
    return [f"N={sh['N']}, T={sh['T']}, d={sh['d']}, {res['dtype']}, forward + backward; "
            f"values match: {res['values_match']} (relative difference "
            f"{res['rel_value_diff']:.1e}, gradients {res['rel_grad_diff']:.1e})", "",
            markdown_table(["implementation", "median ms", "min ms", "loss", "ratio to ours"], rows)]
