"""Summaries, 95% confidence intervals and rank statistics of a few numbers.

* :func:`describe` -- many values of one measurement (per-sequence entropies): mean, std (n - 1),
  quantiles, and the normal-approximation CI ``mean +- 1.96 * std / sqrt(n)`` (float64, torch).
* :func:`summarize` -- a few seeds of one setting: mean, std (n - 1) and the CI
  ``mean +- t(0.975, n - 1) * std / sqrt(n)`` with Student's exact t quantile (:func:`t_quantile`: 12.71
  for 2 seeds, 4.30 for 3); one value has NaN std and CI; NaN and None are left out.
* :func:`exact_rank_test` -- the exact one-sided permutation test of the Mann-Whitney U of two settings
  over their seeds (no assumption on the distribution: accuracies near 0 are far from normal).
* :func:`spearman_test` -- Spearman's rho (Pearson's r of the ranks, ties at their mean rank) with a
  two-sided p: exact over permutations for a few pairs, else ``t = rho * sqrt((n - 2) / (1 - rho^2))``
  on n - 2 degrees of freedom.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Z95", "Stats", "describe", "exact_rank_test", "mann_whitney_u", "ranks", "spearman_test",
           "summarize", "t_quantile"]

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def describe(values: list[float]) -> dict[str, Any]:
    """Mean, sample std (n - 1), 95% CI of the mean (normal approximation) and quantiles of ``values``."""
    n = len(values)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "std": nan, "ci95": [nan, nan], "ci95_half": nan}
    t = torch.tensor(values, dtype=torch.float64)
    mean = float(t.mean())
    std = float(t.std(unbiased=True)) if n > 1 else 0.0
    half = Z95 * std / math.sqrt(n)
    q = torch.quantile(t, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)).tolist()
    return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half], "ci95_half": half,
            "min": q[0], "q25": q[1], "median": q[2], "q75": q[3], "max": q[4]}


def _t_two_sided_prob(t: float, nu: int) -> float:
    """P(|T| < t) for Student's t with ``nu`` degrees of freedom (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(nu))
    s, c = math.sin(theta), math.cos(theta)
    if nu % 2 == 1:
        if nu == 1:
            return 2.0 * theta / math.pi
        term = total = c
        for k in range(3, nu - 1, 2):
            term *= c * c * (k - 1) / k
            total += term
        return 2.0 / math.pi * (theta + s * total)
    term = total = 1.0
    for k in range(2, nu - 1, 2):
        term *= c * c * (k - 1) / k
        total += term
    return s * total


def t_quantile(p: float, nu: int) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``nu`` >= 1 degrees of freedom (bisection)."""
    if nu < 1 or not 0.5 < p < 1.0:
        raise ValueError(f"t_quantile needs nu >= 1 and 0.5 < p < 1, got nu={nu}, p={p}")
    target = 2.0 * p - 1.0  # two-sided mass
    lo, hi = 0.0, 1.0
    while _t_two_sided_prob(hi, nu) < target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_two_sided_prob(mid, nu) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass
class Stats:
    """Mean, sample std and 95% CI of a few values (NaN where undefined); ``values`` are the ones used."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    values: list[float] = field(default_factory=list)


def summarize(values: Sequence[float | None], confidence: float = 0.95) -> Stats:
    """Stats over seeds: std with n - 1, the CI from Student's t (see the module docstring)."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    nan = float("nan")
    if n == 0:
        return Stats(0, nan, nan, nan, nan, [])
    mean = sum(vals) / n
    if n == 1:
        return Stats(1, mean, nan, nan, nan, vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half, vals)


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> float:
    """U of ``a`` over ``b``: the number of pairs (x in a, y in b) with x > y, ties counted 1/2."""
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)


def exact_rank_test(a: Sequence[float], b: Sequence[float],
                    max_splits: int = 2_000_000) -> tuple[float, float, int]:
    """(U, one-sided p, number of splits): p = P(U' >= U) over every split of ``a + b`` into groups of
    len(a) and len(b), each split equally likely under the null hypothesis that the labels do not matter."""
    pooled = [*a, *b]
    n, k = len(pooled), len(a)
    splits = math.comb(n, k)
    if not a or not b or splits > max_splits:
        raise ValueError(f"rank test: needs two non-empty groups with at most {max_splits} splits, got "
                         f"{len(a)} and {len(b)} values")
    u = mann_whitney_u(a, b)
    at_least = 0
    for chosen in itertools.combinations(range(n), k):
        picked = set(chosen)
        ga = [pooled[i] for i in chosen]
        gb = [pooled[i] for i in range(n) if i not in picked]
        at_least += mann_whitney_u(ga, gb) >= u - 1e-9
    return u, at_least / splits, splits


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of ``values``; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return out


#: Up to this many pairs the Spearman p-value is exact (every permutation: 8! = 40,320), above it the t
#: approximation, which is poor for a handful of pairs (it gives p = 0 at |rho| = 1).
SPEARMAN_EXACT_MAX = 8


def spearman_test(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(rho, two-sided p) of paired ``x`` and ``y``; p is exact (the share of the n! pairings of the ranks
    with |rho| at least the observed) up to ``SPEARMAN_EXACT_MAX`` pairs. ``ValueError`` for fewer than 3
    pairs or a constant variable."""
    n = len(x)
    if n != len(y) or n < 3:
        raise ValueError(f"spearman: needs at least 3 pairs of equal length, got {len(x)} and {len(y)}")
    rx, ry = ranks(x), ranks(y)
    if len(set(rx)) == 1 or len(set(ry)) == 1:
        raise ValueError("spearman: one of the two variables is constant; no rank correlation")
    rho = _rank_correlation(rx, ry)
    if n <= SPEARMAN_EXACT_MAX:
        perms = list(itertools.permutations(ry))
        hits = sum(abs(_rank_correlation(rx, list(q))) >= abs(rho) - 1e-12 for q in perms)
        return rho, hits / len(perms)
    if abs(rho) == 1.0:
        return rho, 0.0
    t = abs(rho) * math.sqrt((n - 2) / (1.0 - rho * rho))
    return rho, 1.0 - _t_two_sided_prob(t, n - 2)


def _rank_correlation(rx: Sequence[float], ry: Sequence[float]) -> float:
    """Pearson's correlation of two rank vectors, clipped to [-1, 1]."""
    n = len(rx)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
