"""Seq-VCR loss against a literal, loop-by-loop float64 transcription of Eq. 3-4."""

from __future__ import annotations

import math

import pytest
import torch

from seqvcr.errors import ConfigError, InputShapeError, SeqVCRError
from seqvcr.objectives import (
    DEFAULT_COEFFICIENTS,
    SeqVCR,
    SeqVCROutput,
    seq_vcr_loss,
    seq_vcr_terms,
)

# ----------------------------------------------------------------------------------------------------
# naive references: explicit loops, explicit d x d covariance with the 1/(n-1) formula


def _naive_cov_terms(vectors: list[torch.Tensor], eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over k of the variance hinge and sum over k != k' of C[k,k']^2 for one set of vectors."""
    n = len(vectors)
    d = vectors[0].shape[0]
    mean = [sum(v[k] for v in vectors) / n for k in range(d)]
    cov = [
        [sum((v[k] - mean[k]) * (v[kp] - mean[kp]) for v in vectors) / (n - 1) for kp in range(d)]
        for k in range(d)
    ]
    var_sum = sum(torch.relu(1 - torch.sqrt(cov[k][k] + eta)) for k in range(d))
    cov_sum = sum(cov[k][kp] ** 2 for k in range(d) for kp in range(d) if kp != k)
    return var_sum, cov_sum


def naive_terms(x: torch.Tensor, eta: float = 1e-3, mask: torch.Tensor | None = None):
    """Eq. 3-4, over="batch": positions with fewer than 2 valid samples are skipped."""
    n_seq, t_len, d = x.shape
    var_total, cov_total, counted = 0.0, 0.0, 0
    for i in range(t_len):
        vectors = [x[j, i] for j in range(n_seq) if mask is None or bool(mask[j, i])]
        if len(vectors) < 2:
            continue
        v, c = _naive_cov_terms(vectors, eta)
        var_total = var_total + v
        cov_total = cov_total + c
        counted += 1
    return var_total / (counted * d), cov_total / (counted * d)


def naive_terms_batch_time(x: torch.Tensor, eta: float = 1e-3, mask: torch.Tensor | None = None):
    """Appendix F: one covariance over all valid (sequence, position) vectors, normalised by 1/d."""
    n_seq, t_len, d = x.shape
    vectors = [x[j, i] for j in range(n_seq) for i in range(t_len) if mask is None or bool(mask[j, i])]
    v, c = _naive_cov_terms(vectors, eta)
    return v / d, c / d


def ragged_mask(n: int, t: int, gen: torch.Generator, min_len: int = 1) -> torch.Tensor:
    """Right padding: sequence j has a random length in [min_len, t]."""
    lengths = torch.randint(min_len, t + 1, (n,), generator=gen)
    return torch.arange(t)[None, :] < lengths[:, None]  # (n, t)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> None:
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------------------------------
# values and gradients vs the naive implementation

SHAPES = [(2, 3, 5), (3, 2, 4), (5, 3, 3), (7, 2, 3), (4, 1, 6), (6, 4, 6)]  # N=2, d>N, d<N, d=N


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_matches_naive_values_and_grads(shape):
    gen = torch.Generator().manual_seed(sum(shape))
    # scale 0.7 keeps some variances below 1 (active hinge) and some above
    x = (0.7 * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()
    var, cov = seq_vcr_terms(x, eta=1e-3)
    ref_var, ref_cov = naive_terms(x, eta=1e-3)
    _close(var, ref_var)
    _close(cov, ref_cov)
    loss = seq_vcr_loss(x, 0.3, 0.7, 1e-3)
    ref = 0.3 * ref_var + 0.7 * ref_cov
    _close(loss, ref)
    (g,) = torch.autograd.grad(loss, x)
    (g_ref,) = torch.autograd.grad(ref, x)
    _close(g, g_ref)


@pytest.mark.parametrize("shape", [(4, 5, 3), (3, 4, 6), (6, 3, 4)])
def test_batch_with_ragged_mask_matches_naive(shape):
    gen = torch.Generator().manual_seed(100 + sum(shape))
    x = (0.7 * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()
    mask = ragged_mask(shape[0], shape[1], gen)
    mask[0] = True  # at least one full sequence, and make sure some positions have < 2 samples:
    mask[1:, -1] = False
    var, cov = seq_vcr_terms(x, mask=mask)
    ref_var, ref_cov = naive_terms(x, mask=mask)
    _close(var, ref_var)
    _close(cov, ref_cov)
    loss = seq_vcr_loss(x, 1.0, 0.004, mask=mask)
    ref = ref_var + 0.004 * ref_cov
    (g,) = torch.autograd.grad(loss, x)
    (g_ref,) = torch.autograd.grad(ref, x)
    _close(g, g_ref)
    assert torch.all(g[~mask] == 0)


@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 2, 8), (3, 3, 2)])  # N*T <= d and N*T > d paths
def test_batch_time_matches_naive(shape):
    gen = torch.Generator().manual_seed(200 + sum(shape))
    x = (0.7 * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()
    for mask in (None, ragged_mask(shape[0], shape[1], gen)):
        var, cov = seq_vcr_terms(x, over="batch_time", mask=mask)
        ref_var, ref_cov = naive_terms_batch_time(x, mask=mask)
        _close(var, ref_var)
        _close(cov, ref_cov)
        loss = seq_vcr_loss(x, 0.5, 0.2, over="batch_time", mask=mask)
        (g,) = torch.autograd.grad(loss, x)
        (g_ref,) = torch.autograd.grad(0.5 * ref_var + 0.2 * ref_cov, x)
        _close(g, g_ref)


def test_full_mask_equals_no_mask():
    x = torch.randn(5, 4, 7, dtype=torch.float64)
    full = torch.ones(5, 4, dtype=torch.bool)
    for over in ("batch", "batch_time"):
        for a, b in zip(seq_vcr_terms(x, over=over), seq_vcr_terms(x, over=over, mask=full)):
            _close(a, b)


@pytest.mark.parametrize("over", ["batch", "batch_time"])
def test_padding_values_have_no_influence(over):
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(6, 5, 8, generator=gen, dtype=torch.float64)
    mask = ragged_mask(6, 5, gen, min_len=2)
    noise = 1e6 * torch.randn(6, 5, 8, generator=gen, dtype=torch.float64)
    garbage = torch.where(mask[..., None], base, noise)
    zeros = torch.where(mask[..., None], base, 0.0)
    results = []
    for x in (garbage, zeros):
        x = x.clone().requires_grad_()
        loss = seq_vcr_loss(x, 1.0, 0.5, over=over, mask=mask)
        (g,) = torch.autograd.grad(loss, x)
        results.append((loss, g))
    assert results[0][0].item() == results[1][0].item()
    assert torch.equal(results[0][1], results[1][1])
    assert torch.all(results[0][1][~mask] == 0)
    # even inf / NaN padding does not leak (torch.where, not multiplication)
    nan_x = torch.where(mask[..., None], base, float("nan")).requires_grad_()
    loss = seq_vcr_loss(nan_x, 1.0, 0.5, over=over, mask=mask)
    (g,) = torch.autograd.grad(loss, nan_x)
    assert loss.item() == results[1][0].item()
    assert torch.isfinite(g).all()


def test_positions_with_fewer_than_two_samples_are_skipped_and_normaliser_shrinks():
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1:, 2:] = False  # positions 2 and 3 have a single valid sequence
    var, cov = seq_vcr_terms(x, mask=mask)
    ref_var, ref_cov = seq_vcr_terms(x[:, :2])  # only positions 0 and 1 count, normaliser 2*d
    _close(var, ref_var)
    _close(cov, ref_cov)


def test_nothing_counts_gives_zero_with_graph():
    x = torch.randn(3, 2, 4, requires_grad=True)
    one_sequence = torch.zeros(3, 2, dtype=torch.bool)
    one_sequence[0] = True  # "batch": every position has a single valid sample
    one_vector = torch.zeros(3, 2, dtype=torch.bool)
    one_vector[0, 0] = True  # "batch_time": a single valid vector
    for over, mask in (("batch", one_sequence), ("batch_time", one_vector)):
        var, cov = seq_vcr_terms(x, over=over, mask=mask)
        assert var.item() == 0 and cov.item() == 0
        (g,) = torch.autograd.grad(var + cov, x)
        assert torch.all(g == 0)


def test_gradcheck_tiny_float64():
    gen = torch.Generator().manual_seed(3)
    x = (0.5 * torch.randn(3, 2, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    mask = torch.tensor([[True, True], [True, True], [True, False]])
    assert torch.autograd.gradcheck(lambda t: seq_vcr_loss(t, 1.0, 0.3), (x,))
    assert torch.autograd.gradcheck(lambda t: seq_vcr_loss(t, 1.0, 0.3, mask=mask), (x,))
    assert torch.autograd.gradcheck(lambda t: seq_vcr_loss(t, 1.0, 0.3, over="batch_time"), (x,))
    y = (0.5 * torch.randn(6, 2, 3, generator=gen, dtype=torch.float64)).requires_grad_()  # d < N path
    assert torch.autograd.gradcheck(lambda t: seq_vcr_loss(t, 1.0, 0.3), (y,))


# ----------------------------------------------------------------------------------------------------
# behaviour


def test_isotropic_unit_gaussian_has_near_zero_variance_term():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 2, 16, generator=gen)
    var, cov = seq_vcr_terms(x)
    assert var.item() < 0.01
    # rank is not limiting here (N >> d): off-diagonal covariances are ~ N(0, 1/N)
    assert cov.item() < 15 * (16 - 1) / 4096
    var2, _ = seq_vcr_terms(2.0 * x)
    assert var2.item() == 0.0


def test_collapsed_batch_has_maximal_variance_term():
    x = torch.ones(4, 3, 8).requires_grad_()  # every sequence identical: zero variance
    var, cov = seq_vcr_terms(x, eta=1e-3)
    assert var.item() == pytest.approx(1 - math.sqrt(1e-3), rel=1e-6)
    assert cov.item() == pytest.approx(0.0, abs=1e-12)


def test_rank_bound_on_covariance_term():
    # unit variances with d > N - 1: sum_{k != k'} C^2 >= d^2/(N-1) - d per position
    n, d = 5, 32
    x = torch.randn(n, 3, d, dtype=torch.float64)
    xc = x - x.mean(0, keepdim=True)
    x = xc / xc.std(0, unbiased=True, keepdim=True)
    var, cov = seq_vcr_terms(x, eta=1e-12)
    assert var.item() == pytest.approx(0.0, abs=1e-9)
    assert cov.item() >= d / (n - 1) - 1 - 1e-9


def test_low_precision_inputs_are_upcast():
    x = torch.randn(6, 3, 10, dtype=torch.float64)
    ref = torch.stack(seq_vcr_terms(x))
    for dtype in (torch.bfloat16, torch.float16):
        xl = x.to(dtype)
        out = torch.stack(seq_vcr_terms(xl))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, torch.stack(seq_vcr_terms(xl.double())).float(), rtol=1e-5, atol=1e-6)
    # autocast does not push the matmuls to bf16
    x32 = x.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = torch.stack(seq_vcr_terms(x32))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref.float(), rtol=1e-5, atol=1e-6)


def test_float32_matches_float64():
    x = torch.randn(16, 8, 64, dtype=torch.float64)
    for over in ("batch", "batch_time"):
        a = torch.stack(seq_vcr_terms(x.float(), over=over)).double()
        b = torch.stack(seq_vcr_terms(x, over=over))
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_integer_mask_is_accepted():
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    for a, b in zip(seq_vcr_terms(x, mask=mask), seq_vcr_terms(x, mask=mask.bool())):
        _close(a, b)


# ----------------------------------------------------------------------------------------------------
# errors


def test_errors():
    x = torch.randn(4, 3, 5)
    with pytest.raises(ConfigError, match="Seq-VCR needs a batch of at least 2 sequences, got 1"):
        seq_vcr_loss(torch.randn(1, 3, 5))
    with pytest.raises(ConfigError, match="lambda1"):
        seq_vcr_loss(x, lambda1=-1.0)
    with pytest.raises(ConfigError, match="lambda2"):
        seq_vcr_loss(x, lambda2=-0.1)
    with pytest.raises(ConfigError, match="eta"):
        seq_vcr_loss(x, eta=0.0)
    with pytest.raises(ConfigError, match="eta"):
        seq_vcr_terms(x, eta=float("nan"))
    with pytest.raises(ConfigError, match="batch, batch_time"):
        seq_vcr_terms(x, over="time")
    with pytest.raises(InputShapeError, match=r"\(N, T, d\)"):
        seq_vcr_loss(torch.randn(4, 5))
    with pytest.raises(InputShapeError, match="mask"):
        seq_vcr_loss(x, mask=torch.ones(4, 2, dtype=torch.bool))
    # every error is a one-line SeqVCRError; shape errors are also ValueErrors
    for bad in (lambda: seq_vcr_loss(torch.randn(4, 5)), lambda: seq_vcr_terms(x, over="nope")):
        with pytest.raises(SeqVCRError) as info:
            bad()
        assert "\n" not in str(info.value)
    assert issubclass(InputShapeError, ValueError)


# ----------------------------------------------------------------------------------------------------
# module


def test_module_outputs_and_gradients_reach_projection():
    torch.manual_seed(0)
    module = SeqVCR(12, proj_dim=20, lambda1=0.1, lambda2=0.5)
    h = torch.randn(5, 4, 12, requires_grad=True)
    out = module(h)
    assert isinstance(out, SeqVCROutput)
    assert out.loss.shape == out.variance.shape == out.covariance.shape == ()
    torch.testing.assert_close(out.loss, 0.1 * out.variance + 0.5 * out.covariance)
    torch.testing.assert_close(out.loss, seq_vcr_loss(module.projection(h), 0.1, 0.5))
    out.loss.backward()
    assert module.projection.weight.grad is not None and module.projection.weight.grad.abs().sum() > 0
    assert module.projection.bias is None  # centred statistics: a bias could not change the loss
    assert h.grad is not None and h.grad.abs().sum() > 0
    with_bias = SeqVCR(12, proj_dim=20, bias=True)
    with_bias.projection.bias.data.normal_()
    no_bias_value = seq_vcr_loss(with_bias.projection(h) - with_bias.projection.bias, 1.0, 0.004)
    torch.testing.assert_close(with_bias(h).loss, no_bias_value)


def test_module_options_mask_and_gather():
    module = SeqVCR(6, proj_dim=9, bias=False, over="batch_time")
    assert module.projection.bias is None and module.projection.out_features == 9
    h = torch.randn(4, 3, 6)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    seen = []

    def gather(t: torch.Tensor) -> torch.Tensor:  # stands in for all_gather_with_grad
        seen.append(tuple(t.shape))
        return torch.cat([t, t.flip(0)], 0)

    out = module(h, mask, gather=gather)
    assert seen == [(4, 3, 9), (4, 3)]
    z = module.projection(h)
    ref = seq_vcr_loss(
        torch.cat([z, z.flip(0)]), 1.0, 0.004, over="batch_time", mask=torch.cat([mask, mask.flip(0)])
    )
    torch.testing.assert_close(out.loss, ref)
    module.gather = gather
    torch.testing.assert_close(module(h, mask).loss, ref)


def test_module_errors_and_defaults():
    with pytest.raises(ConfigError, match="proj_dim"):
        SeqVCR(8, proj_dim=0)
    with pytest.raises(ConfigError, match="lambda2"):
        SeqVCR(8, lambda2=-1)
    with pytest.raises(ConfigError, match="over"):
        SeqVCR(8, over="time")
    with pytest.raises(InputShapeError, match="in_dim|8"):
        SeqVCR(8, proj_dim=4)(torch.randn(2, 3, 7))
    module = SeqVCR(8)
    assert module.projection.out_features == 2048
    assert (module.lambda1, module.lambda2, module.eta, module.over) == (1.0, 0.004, 1e-3, "batch")
    assert DEFAULT_COEFFICIENTS == {"mult": (1.0, 0.004), "arith": (0.1, 0.5), "lis": (0.1, 0.5)}


def test_for_task_uses_the_paper_coefficients_and_layer_selection() -> None:
    head = SeqVCR.for_task("arith", 8, proj_dim=4, layer=0)
    assert (head.lambda1, head.lambda2, head.layer) == (0.1, 0.5, 0)
    assert (SeqVCR.for_task("mult", 8).lambda1, SeqVCR.for_task("mult", 8).lambda2) == (1.0, 0.004)
    states = tuple(torch.full((2, 3, 8), float(i)) for i in range(4))  # L0..L3
    assert head.select(states) is states[0]
    assert SeqVCR(8, proj_dim=4).select(states) is states[-1]
    with pytest.raises(ConfigError, match=r"layer 4 is out of range for 4 hidden states \(allowed -4..3\)"):
        SeqVCR(8, proj_dim=4, layer=4).select(states)
    with pytest.raises(ConfigError, match="unknown task 'sort'"):
        SeqVCR.for_task("sort", 8)
