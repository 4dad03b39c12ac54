"""Matrix (Renyi) entropy of a set of representations (Arefin et al., Sec. 3.3, Eq. 2).

For one sequence's token representations ``Z`` (n x d) and the linear-kernel Gram ``K = Z Z^T``::

    p_i = lambda_i(K) / tr(K)
    S_alpha(Z) = 1/(1-alpha) * log(sum_i p_i^alpha)          alpha -> 1:  -sum_i p_i log p_i

High entropy = the representations spread over many directions; the paper reads an entropy drop in
intermediate layers as representation collapse.

Numerical choices (all exact up to rounding):

* ``Z Z^T`` (n x n) and ``Z^T Z`` (d x d) share their non-zero eigenvalues, so the smaller one is used.
* float64 and ``torch.linalg.eigvalsh``; eigenvalues (never matrix entries) are clamped at 0, the ones
  below the ``matrix_rank`` tolerance ``m * eps * lambda_max`` are numerical zeros and set to 0, then
  the rest are renormalised to sum to 1. Without that tolerance, rounding noise of order 1e-16 would
  inflate low-order (alpha < 1) entropies of rank-deficient matrices.
* ``alpha = 2`` needs no eigen-decomposition: ``sum_i p_i^2 = ||K||_F^2 / tr(K)^2``.
* ``p_i = 0`` contributes nothing (``0 log 0 = 0``, ``0^alpha = 0`` for alpha > 0).
* An all-zero Z (``tr K = 0``, no direction at all) has entropy 0 by convention.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from seqvcr.errors import ConfigError, InputShapeError

__all__ = ["matrix_entropy"]


def matrix_entropy(z: Tensor, alpha: float = 1.0, *, center: bool = False, normalize: bool = False) -> Tensor:
    """Alpha-order Renyi entropy (natural log) of the normalised Gram spectrum of ``z`` (Eq. 2).

    Args:
        z: (..., n, d) representations: n vectors of dimension d, batched over any leading dims
            (e.g. (B, T, d) for B sequences gives B entropies).
        alpha: order, any alpha > 0 (``math.inf`` gives the min-entropy ``-log max p``). alpha = 1 is the
            von Neumann entropy ``-sum p log p`` that the paper uses.
        center: subtract the mean over the n rows first (the paper uses the raw Gram; centring measures
            the spread around the mean instead of around the origin).
        normalize: divide by the log of the rank bound so the value lies in [0, 1]: ``log(min(n, d))``,
            or ``log(min(n - 1, d))`` with ``center=True`` (centring removes one dimension). Where the
            bound is 1 (a single possible direction) the normalised entropy is 0.

    Returns:
        float64 tensor of shape ``z.shape[:-2]``. 0 for an all-zero z. Differentiable, but its gradient
        is unstable at repeated eigenvalues: this is an analysis metric, not a training loss.
    """
    if not (alpha > 0):  # also rejects NaN
        raise ConfigError(f"alpha: must be > 0, got {alpha}")
    if z.dim() < 2 or z.shape[-2] < 1 or z.shape[-1] < 1:
        raise InputShapeError(f"matrix_entropy expects z of shape (..., n, d), got {tuple(z.shape)}")
    n, d = z.shape[-2], z.shape[-1]
    z = z.to(torch.float64)
    if center:
        z = z - z.mean(-2, keepdim=True)  # (..., n, d)
    k = z @ z.mT if n <= d else z.mT @ z  # (..., m, m), m = min(n, d): the smaller Gram matrix
    m = k.shape[-1]
    trace = k.diagonal(dim1=-2, dim2=-1).sum(-1)  # (...,)
    nonzero = trace > 0  # (...,) an all-zero z has no spectrum

    if alpha == 2:  # sum p^2 = ||K||_F^2 / tr(K)^2 (module docstring)
        safe_trace = torch.where(nonzero, trace, 1.0)
        purity = k.pow(2).sum((-1, -2)) / safe_trace.pow(2)  # (...,) in [1/m, 1]
        entropy = -torch.log(torch.where(nonzero, purity, 1.0))
    else:
        eig = torch.linalg.eigvalsh(k).clamp(min=0.0)  # (..., m) ascending
        tol = eig[..., -1:] * (m * torch.finfo(torch.float64).eps)  # (..., 1) matrix_rank tolerance
        eig = torch.where(eig > tol, eig, 0.0)
        total = eig.sum(-1, keepdim=True)  # (..., 1)
        p = eig / torch.where(total > 0, total, 1.0)  # (..., m) sums to 1 (or all 0)
        if alpha == 1:
            entropy = -torch.xlogy(p, p).sum(-1)  # 0 log 0 = 0
        elif math.isinf(alpha):
            entropy = -torch.log(torch.where(nonzero, p.amax(-1), 1.0))
        else:
            power_sum = torch.where(p > 0, p, 0.0).pow(alpha).sum(-1)  # (...,)
            entropy = torch.log(torch.where(nonzero, power_sum, 1.0)) / (1.0 - alpha)
    # clamped: rounding can put a full-rank uniform spectrum a hair outside [0, log m]
    entropy = torch.where(nonzero, entropy, 0.0).clamp(min=0.0)

    if normalize:
        bound = min(n - 1, d) if center else min(n, d)
        if bound <= 1:
            return torch.zeros_like(entropy)
        entropy = entropy / math.log(bound)
    return entropy
