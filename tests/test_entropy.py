"""matrix_entropy (Eq. 2) against a naive numpy implementation on the full n x n Gram."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqvcr.entropy import matrix_entropy
from seqvcr.errors import ConfigError, SeqVCRError


def naive_entropy(z: np.ndarray, alpha: float, center: bool = False) -> float:
    """Eq. 2 literally: eigenvalues of the full n x n Gram Z Z^T (general eigvals), loops."""
    z = np.asarray(z, dtype=np.float64)
    if center:
        z = z - z.mean(axis=0, keepdims=True)
    k = z @ z.T  # (n, n), always the full Gram
    eig = np.real(np.linalg.eigvals(k))
    eig = [max(float(e), 0.0) for e in eig]
    total = sum(eig)
    p = [e / total for e in eig]
    if alpha == 1:
        return -sum(pi * math.log(pi) for pi in p if pi > 1e-15)
    return math.log(sum(pi**alpha for pi in p if pi > 1e-15)) / (1 - alpha)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("n,d", [(5, 9), (9, 5), (6, 6), (1, 4), (4, 1)])
def test_matches_naive(alpha, n, d):
    rng = np.random.default_rng(n * 10 + d)
    # anisotropic scales so the spectrum is far from uniform
    z = rng.standard_normal((n, d)) * np.linspace(0.2, 2.0, d)
    for center in (False, True):
        if center and n == 1:
            continue
        got = matrix_entropy(torch.from_numpy(z), alpha, center=center)
        assert got.dtype == torch.float64 and got.shape == ()
        assert got.item() == pytest.approx(naive_entropy(z, alpha, center), abs=1e-6)


def test_batched_leading_dims_and_float32_input():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 3, 7, 4))
    for alpha in (0.5, 1.0, 2.0):
        got = matrix_entropy(torch.from_numpy(z).float(), alpha)
        assert got.shape == (2, 3) and got.dtype == torch.float64
        for a in range(2):
            for b in range(3):
                assert got[a, b].item() == pytest.approx(naive_entropy(z[a, b], alpha), abs=1e-5)


def test_normalisation_bounds():
    rng = np.random.default_rng(1)
    u = rng.standard_normal((6, 1))
    v = rng.standard_normal((1, 10))
    rank1 = torch.from_numpy(u @ v)  # (6, 10) rank 1
    for alpha in (0.5, 1.0, 2.0, 3.0, math.inf):
        assert matrix_entropy(rank1, alpha).item() == pytest.approx(0.0, abs=1e-9)
    q, _ = np.linalg.qr(rng.standard_normal((10, 6)))
    ortho = torch.from_numpy(q.T)  # (6, 10), orthonormal rows: flat spectrum
    for alpha in (0.5, 1.0, 2.0, 3.0, math.inf):
        assert matrix_entropy(ortho, alpha).item() == pytest.approx(math.log(6), abs=1e-9)
        assert matrix_entropy(ortho, alpha, normalize=True).item() == pytest.approx(1.0, abs=1e-9)
    rand = torch.from_numpy(rng.standard_normal((20, 8, 5)))
    for alpha in (0.5, 1.0, 2.0):
        e = matrix_entropy(rand, alpha, normalize=True)
        assert torch.all((e >= 0) & (e <= 1 + 1e-12))
    # Renyi entropies decrease with alpha
    e = [matrix_entropy(rand, a) for a in (0.5, 1.0, 2.0, 3.0, math.inf)]
    for hi, lo in zip(e, e[1:]):
        assert torch.all(hi >= lo - 1e-12)


def test_centering():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((5, 8)) + 10.0  # a large common offset dominates the raw Gram
    zt = torch.from_numpy(z)
    raw = matrix_entropy(zt)
    centred = matrix_entropy(zt, center=True)
    assert raw.item() < 0.5 < centred.item()
    assert centred.item() == pytest.approx(naive_entropy(z - z.mean(0), 1.0), abs=1e-9)
    # centred rank bound is min(n - 1, d): n - 1 orthonormal-ish directions reach 1
    simplex = torch.eye(4, dtype=torch.float64)  # 4 points, centred rank 3 with a flat spectrum
    assert matrix_entropy(simplex, center=True, normalize=True).item() == pytest.approx(1.0, abs=1e-9)


def test_scale_invariance_and_zero_matrix():
    z = torch.randn(3, 6, 10, dtype=torch.float64)
    for alpha in (0.5, 1.0, 2.0):
        torch.testing.assert_close(matrix_entropy(1e-3 * z, alpha), matrix_entropy(z, alpha))
        torch.testing.assert_close(matrix_entropy(1e4 * z, alpha), matrix_entropy(z, alpha))
    for alpha in (0.5, 1.0, 2.0, math.inf):
        zero = matrix_entropy(torch.zeros(2, 4, 5), alpha, normalize=True)
        assert torch.equal(zero, torch.zeros(2, dtype=torch.float64))
    # a single possible direction: normalised entropy is 0, not NaN
    assert matrix_entropy(torch.randn(1, 5), normalize=True).item() == 0.0


def test_errors():
    with pytest.raises(ConfigError, match="alpha"):
        matrix_entropy(torch.randn(3, 4), alpha=0.0)
    with pytest.raises(SeqVCRError, match=r"\(\.\.\., n, d\)"):
        matrix_entropy(torch.randn(4))
