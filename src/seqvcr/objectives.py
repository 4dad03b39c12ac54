"""The Seq-VCR regulariser (Arefin et al., ICLR 2025, Sec. 3.4, Eq. 3-4).

Pure, shape-generic functions (``seq_vcr_terms``, ``seq_vcr_loss``) plus a thin ``nn.Module``
(``SeqVCR``) that owns the trained projection, in the style of lightly's VICReg loss.

For a batch ``X`` of shape ``(N, T, d)`` (N sequences, T positions, d projected features) the paper
takes, at every position ``i``, the covariance ACROSS THE BATCH (unbiased, ``1/(N-1)``)::

    C_i = 1/(N-1) * sum_j (X[j,i] - mean_j X[j,i]) (X[j,i] - mean_j X[j,i])^T            (d x d)

    variance   = 1/(T*d) * sum_i sum_k       max(0, 1 - sqrt(C_i[k,k] + eta))
    covariance = 1/(T*d) * sum_i sum_{k!=k'} C_i[k,k']^2
    L_SeqVCR   = lambda1 * variance + lambda2 * covariance

Conventions (where the paper is silent or differs from VICReg):

* VICReg's reference code divides its variance term by 2 (it averages the two branches); Seq-VCR's
  Eq. 3-4 has a single branch and no such factor, and neither do we.
* ``rank(C_i) <= N - 1``. With unit variances the off-diagonal sum is therefore at least
  ``d^2/(N-1) - d`` per position, i.e. the normalised covariance term cannot go below ``d/(N-1) - 1``
  (about 65 at d=2048, N=32): the term is never zero for ``d >= N`` and this is expected.
* Efficient and exact: the off-diagonal sum is computed from the N x N Gram matrix of the centred batch,
  ``sum_{k!=k'} C[k,k']^2 = ||Xc Xc^T||_F^2 / (N-1)^2 - sum_k C[k,k]^2``, which costs ``T*N^2*d`` and
  never materialises a ``T x d x d`` tensor. (For ``batch_time``, a single covariance, the smaller of
  the M x M Gram and the d x d covariance is used.)
* Statistics are computed in float32 at least (bf16 / fp16 inputs are upcast, autocast is disabled
  inside); float64 inputs stay float64. The returned scalars have that computation dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from seqvcr.errors import ConfigError, InputShapeError

__all__ = ["DEFAULT_COEFFICIENTS", "DEFAULT_ETA", "DEFAULT_PROJ_DIM", "OVER_CHOICES", "SeqVCR",
           "SeqVCROutput", "check_batch", "check_knobs", "seq_vcr_loss", "seq_vcr_terms"]

#: The paper's (lambda1, lambda2) per task (Sec. 4): multiplication vs arithmetic expressions and LIS.
#: ``seqvcr.config.resolve`` fills ``seqvcr.lambda1`` / ``lambda2`` from here; a new task adds its pair.
DEFAULT_COEFFICIENTS: dict[str, tuple[float, float]] = {
    "mult": (1.0, 0.004),
    "arith": (0.1, 0.5),
    "lis": (0.1, 0.5),
}
#: The paper's variance-hinge constant and projection width (Sec. 3): the defaults of the functions, the
#: module and the config.
DEFAULT_ETA = 1e-3
DEFAULT_PROJ_DIM = 2048
_MULT_L1, _MULT_L2 = DEFAULT_COEFFICIENTS["mult"]

#: ``over="batch"``: one covariance per position across the batch (Eq. 3-4, the paper's main results).
#: ``over="batch_time"``: one covariance over every (sequence, position) vector (Appendix F / H).
OVER_CHOICES: tuple[str, ...] = ("batch", "batch_time")


# ----------------------------------------------------------------------------------------------------
# validation helpers


def _check_over(over: str) -> None:
    if over not in OVER_CHOICES:
        raise ConfigError(f"over: unknown value {over!r}; allowed: {', '.join(OVER_CHOICES)}")


def check_knobs(label: str = "{}:", **knobs: float) -> None:
    """The rules of the Seq-VCR knobs given, each named ``label.format(name)`` (the config checks its
    ``seqvcr.*`` keys with them): ``lambda1``, ``lambda2`` >= 0; ``eta``, ``proj_dim``, ``in_dim`` > 0."""
    for name, value in knobs.items():
        ok, rule = (value >= 0, ">= 0") if name.startswith("lambda") else (value > 0, "> 0")
        if not ok:  # also NaN
            raise ConfigError(f"{label.format(name)} must be {rule}, got {value}")


def check_batch(n: int, what: str = "") -> None:
    """The covariance across the batch needs 2 sequences at least (``what`` names ``n``)."""
    if n < 2:
        raise ConfigError(f"Seq-VCR needs a batch of at least 2 sequences, got {what}{n}")


def _check_x(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputShapeError(f"Seq-VCR expects x of shape (N, T, d), got {shape}")
    check_batch(x.shape[0])
    if x.shape[1] < 1 or x.shape[2] < 1:
        raise InputShapeError(f"Seq-VCR expects x with T >= 1 and d >= 1, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputShapeError(f"Seq-VCR expects a floating point x, got {x.dtype}")


def _check_mask(mask: Tensor, x: Tensor) -> Tensor:
    """Return ``mask`` as a bool tensor on ``x``'s device; (N, T) required."""
    if not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(x.shape[:2]):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise InputShapeError(f"mask must have shape (N, T) = {tuple(x.shape[:2])}, got {shape}")
    if mask.dtype != torch.bool:
        mask = mask != 0
    return mask.to(x.device)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float32 at least: half precision is far too coarse for second moments and their squares."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast so that the Gram / covariance matmuls really run in the computation dtype."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # a device type without autocast support
        return contextlib.nullcontext()


# ----------------------------------------------------------------------------------------------------
# the two statistics


def _offdiag_sq_sum(xc: Tensor, denom: Tensor, var: Tensor, gram_only: bool = False) -> Tensor:
    """``sum_{k != k'} C[k,k']^2`` for a batch of centred blocks, on the smaller matrix.

    Args:
        xc: (B, M, d) centred vectors, rows that do not count are exactly 0.
        denom: (B,) the unbiased normaliser ``n - 1`` (clamped to >= 1).
        var: (B, d) the diagonal of C, ``sum_j xc[j]^2 / denom``.
        gram_only: always use the (B, M, M) Gram, never a (B, d, d) covariance.
    Returns:
        (B,) the off-diagonal sum of squares of ``C = xc^T xc / denom``.
    """
    m, d = xc.shape[-2], xc.shape[-1]
    if m <= d or gram_only:
        # Gram identity: ||C||_F^2 = ||xc xc^T||_F^2 / denom^2, then remove the diagonal of C.
        gram = xc @ xc.transpose(-1, -2)  # (B, M, M)
        return gram.pow(2).sum((-1, -2)) / denom.pow(2) - var.pow(2).sum(-1)  # (B,)
    # d < M: the d x d covariance is the smaller matrix; sum its off-diagonal entries directly.
    cov = (xc.transpose(-1, -2) @ xc) / denom[:, None, None]  # (B, d, d)
    off = ~torch.eye(d, dtype=torch.bool, device=xc.device)  # (d, d)
    return torch.where(off, cov, 0.0).pow(2).sum((-1, -2))  # (B,)


def _terms_batch(x: Tensor, mask: Tensor | None, eta: float) -> tuple[Tensor, Tensor]:
    """Eq. 3-4: one covariance per position, across the (valid) sequences of the batch."""
    n_seq, t_len, d = x.shape
    xt = x.transpose(0, 1)  # (T, N, d)
    if mask is None:
        n = torch.full((t_len,), float(n_seq), dtype=x.dtype, device=x.device)  # (T,)
        xc = xt - xt.mean(1, keepdim=True)  # (T, N, d)
        counted: Tensor | None = None
        t_eff: Tensor | float = float(t_len)
    else:
        valid = mask.transpose(0, 1)[..., None]  # (T, N, 1)
        # torch.where (not a multiplication) so that padded values, even inf/NaN, never enter the
        # forward pass and receive exactly zero gradient.
        xt = torch.where(valid, xt, 0.0)  # (T, N, d)
        n = valid.sum(1).squeeze(-1).to(x.dtype)  # (T,) valid samples per position
        mean = xt.sum(1, keepdim=True) / n.clamp(min=1.0)[:, None, None]  # (T, 1, d)
        xc = torch.where(valid, xt - mean, 0.0)  # (T, N, d)
        counted = n >= 2  # (T,) positions with a defined unbiased covariance
        t_eff = counted.sum().clamp(min=1).to(x.dtype)  # no host sync
    denom = (n - 1.0).clamp(min=1.0)  # (T,)
    var = xc.pow(2).sum(1) / denom[:, None]  # (T, d) diagonal of every C_i
    var_pos = torch.relu(1.0 - torch.sqrt(var + eta)).sum(-1)  # (T,)
    cov_pos = _offdiag_sq_sum(xc, denom, var, gram_only=True)  # (T,), via the (T, N, N) Gram
    if counted is not None:
        var_pos = torch.where(counted, var_pos, 0.0)
        cov_pos = torch.where(counted, cov_pos, 0.0)
    return var_pos.sum() / (t_eff * d), cov_pos.sum() / (t_eff * d)


def _terms_batch_time(x: Tensor, mask: Tensor | None, eta: float) -> tuple[Tensor, Tensor]:
    """Appendix F: a single covariance over all (valid) N*T vectors, normalised by 1/d."""
    n_seq, t_len, d = x.shape
    rows = x.reshape(1, n_seq * t_len, d)  # (1, M, d) with M = N*T
    if mask is None:
        n = torch.full((1,), float(n_seq * t_len), dtype=x.dtype, device=x.device)  # (1,)
        xc = rows - rows.mean(1, keepdim=True)  # (1, M, d)
    else:
        valid = mask.reshape(1, n_seq * t_len, 1)  # (1, M, 1)
        rows = torch.where(valid, rows, 0.0)
        n = valid.sum(1).squeeze(-1).to(x.dtype)  # (1,)
        mean = rows.sum(1, keepdim=True) / n.clamp(min=1.0)[:, None, None]  # (1, 1, d)
        xc = torch.where(valid, rows - mean, 0.0)  # (1, M, d)
    denom = (n - 1.0).clamp(min=1.0)  # (1,)
    var = xc.pow(2).sum(1) / denom[:, None]  # (1, d)
    variance = torch.relu(1.0 - torch.sqrt(var + eta)).sum() / d
    covariance = _offdiag_sq_sum(xc, denom, var).sum() / d
    if mask is not None:  # fewer than 2 valid vectors: nothing to regularise
        enough = (n >= 2).squeeze(0)
        variance = torch.where(enough, variance, 0.0)
        covariance = torch.where(enough, covariance, 0.0)
    return variance, covariance


# ----------------------------------------------------------------------------------------------------
# public functions


def seq_vcr_terms(
    x: Tensor,
    eta: float = DEFAULT_ETA,
    *,
    over: str = "batch",
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The two Seq-VCR statistics of a batch of projected representations, already normalised.

    Args:
        x: (N, T, d) projected representations; N >= 2 sequences.
        eta: the small constant inside the square root of the variance hinge (paper: 1e-3).
        over: ``"batch"`` (Eq. 3-4: at each position i a d x d covariance across the N sequences,
            both terms normalised by ``1/(T*d)``) or ``"batch_time"`` (Appendix F: one covariance
            over all N*T vectors, both terms normalised by ``1/d``).
        mask: optional (N, T) bool, True = real token (integer / float masks are read as ``!= 0``).

    Padding rule (the paper does not say; this is what users expect): with ``over="batch"``, at each
    position i the mean and covariance use only the ``n_i`` sequences valid there, with the unbiased
    ``1/(n_i - 1)``; positions with ``n_i < 2`` are skipped, and the normaliser T becomes the number of
    positions that count. With ``over="batch_time"`` only the valid vectors enter, with ``1/(M - 1)``
    for M valid vectors. Padded values never enter the computation (they are selected away with
    ``torch.where``), so they have no influence on the result and receive exactly zero gradient,
    whatever they hold. With ``mask=None`` every position counts. If nothing counts (no position with
    two valid sequences, or fewer than two valid vectors) both terms are 0.

    Returns:
        ``(variance, covariance)``: two scalars in float32 (or float64 for float64 input), unweighted::

            variance   = 1/(T*d) * sum_i sum_k max(0, 1 - sqrt(C_i[k,k] + eta))
            covariance = 1/(T*d) * sum_i sum_{k != k'} C_i[k,k']^2

        No division of the variance by 2 (VICReg's code does that; Seq-VCR's Eq. 3-4 does not).
        Because ``rank(C_i) <= N - 1`` the covariance term is bounded below by ``d/(N-1) - 1`` when all
        variances are 1 and ``d >= N``.

    The off-diagonal sum uses the Gram identity
    ``sum_{k!=k'} C_kk'^2 = ||Xc Xc^T||_F^2/(N-1)^2 - sum_k C_kk^2`` (a (T, N, N) Gram, cost
    ``T*N^2*d``); no T x d x d tensor is ever built. For ``batch_time`` (a single covariance) the
    smaller of the (M x M) Gram and the (d x d) covariance is used.

    Raises:
        ConfigError: N < 2, eta <= 0, unknown ``over``.
        InputShapeError: x not 3-D / not floating point, mask not (N, T).
    """
    _check_over(over)
    check_knobs(eta=eta)
    _check_x(x)
    if mask is not None:
        mask = _check_mask(mask, x)
    with _no_autocast(x.device):
        xf = x.to(_compute_dtype(x))
        if over == "batch":
            return _terms_batch(xf, mask, eta)
        return _terms_batch_time(xf, mask, eta)


def seq_vcr_loss(
    x: Tensor,
    lambda1: float = _MULT_L1,
    lambda2: float = _MULT_L2,
    eta: float = DEFAULT_ETA,
    *,
    over: str = "batch",
    mask: Tensor | None = None,
) -> Tensor:
    """The Seq-VCR loss ``lambda1 * variance + lambda2 * covariance`` (Eq. 3-4).

    See ``seq_vcr_terms`` for the two terms, the padding rule and the conventions. The paper adds this
    to the next-token loss with no extra global weight: ``L = L_next_token + L_SeqVCR``. Defaults are
    the multiplication coefficients; see ``DEFAULT_COEFFICIENTS`` for the other tasks.

    Raises:
        ConfigError: lambda1 or lambda2 < 0, eta <= 0, N < 2, unknown ``over``.
        InputShapeError: x not 3-D, mask not (N, T).
    """
    check_knobs(lambda1=lambda1, lambda2=lambda2)
    variance, covariance = seq_vcr_terms(x, eta, over=over, mask=mask)
    return lambda1 * variance + lambda2 * covariance


# ----------------------------------------------------------------------------------------------------
# module


class SeqVCROutput(NamedTuple):
    """What ``SeqVCR.forward`` returns: the weighted loss and its two unweighted terms (for logging)."""

    loss: Tensor
    variance: Tensor
    covariance: Tensor


Gather = Callable[[Tensor], Tensor]


class SeqVCR(nn.Module):
    """Seq-VCR with its trained projection: ``h -> Linear(in_dim, proj_dim) -> seq_vcr_loss``.

    The paper projects the regularised layer's states to 2048 dimensions with a linear layer that is
    trained end to end and fed only by the Seq-VCR loss. Bias and initialisation are not stated: we use
    ``nn.Linear``'s default initialisation (Kaiming-uniform weights) and NO bias by default: every
    statistic is centred across the batch, so a bias cannot change the loss and would only receive a
    zero gradient (whose rounding noise AdamW would turn into random steps). ``bias=True`` adds one.

    Args:
        in_dim: width of the regularised hidden states.
        proj_dim: projection width d (paper: 2048).
        lambda1, lambda2: weights of the variance and covariance terms.
        eta: variance hinge constant (paper: 1e-3).
        over: ``"batch"`` or ``"batch_time"``, see ``seq_vcr_terms``.
        bias: whether the projection has a bias.
        layer: which hidden state ``select`` picks (0 = embeddings, -1 = the last layer, the paper's
            default).
        gather: optional callable applied to the projected tensor (and the mask) before the statistics,
            e.g. ``seqvcr.distributed.all_gather_with_grad`` to take them over the global batch under
            DDP. A ``gather`` passed to ``forward`` takes precedence.
    """

    def __init__(
        self,
        in_dim: int,
        proj_dim: int = DEFAULT_PROJ_DIM,
        lambda1: float = _MULT_L1,
        lambda2: float = _MULT_L2,
        eta: float = DEFAULT_ETA,
        over: str = "batch",
        bias: bool = False,
        gather: Gather | None = None,
        layer: int = -1,
    ) -> None:
        super().__init__()
        check_knobs(in_dim=in_dim, proj_dim=proj_dim, lambda1=lambda1, lambda2=lambda2, eta=eta)
        _check_over(over)
        self.in_dim = int(in_dim)
        self.proj_dim = int(proj_dim)
        self.lambda1 = float(lambda1)
        self.lambda2 = float(lambda2)
        self.eta = float(eta)
        self.over = over
        self.gather = gather
        self.layer = int(layer)
        self.projection = nn.Linear(in_dim, proj_dim, bias=bias)

    @classmethod
    def for_task(cls, task: str, in_dim: int, **kwargs: object) -> SeqVCR:
        """A head with the paper's coefficients for ``task`` (``DEFAULT_COEFFICIENTS``)."""
        if task not in DEFAULT_COEFFICIENTS:
            raise ConfigError(f"unknown task {task!r}; allowed: {', '.join(DEFAULT_COEFFICIENTS)}")
        lambda1, lambda2 = DEFAULT_COEFFICIENTS[task]
        return cls(in_dim, **{"lambda1": lambda1, "lambda2": lambda2, **kwargs})  # type: ignore[arg-type]

    def select(self, hidden_states: tuple[Tensor, ...] | list[Tensor]) -> Tensor:
        """The regularised layer out of all hidden states (L0 = embeddings ... LN = last layer)."""
        n = len(hidden_states)
        if not -n <= self.layer < n:
            raise ConfigError(
                f"Seq-VCR layer {self.layer} is out of range for {n} hidden states (allowed {-n}..{n - 1})"
            )
        return hidden_states[self.layer]

    def forward(self, h: Tensor, mask: Tensor | None = None, gather: Gather | None = None) -> SeqVCROutput:
        """Project ``h`` (N, T, in_dim) and return the Seq-VCR loss and its unweighted terms.

        Args:
            h: (N, T, in_dim) hidden states of the regularised layer.
            mask: optional (N, T) bool, True = real token (see the padding rule of ``seq_vcr_terms``).
            gather: optional override of the constructor's ``gather``.
        """
        if h.dim() != 3 or h.shape[-1] != self.in_dim:
            raise InputShapeError(f"SeqVCR expects h of shape (N, T, {self.in_dim}), got {tuple(h.shape)}")
        z = self.projection(h)  # (N, T, proj_dim)
        gather = gather if gather is not None else self.gather
        if gather is not None:
            z = gather(z)  # (N_global, T, proj_dim)
            if mask is not None:
                mask = gather(mask)  # (N_global, T)
        variance, covariance = seq_vcr_terms(z, self.eta, over=self.over, mask=mask)
        loss = self.lambda1 * variance + self.lambda2 * covariance
        return SeqVCROutput(loss=loss, variance=variance, covariance=covariance)

    def extra_repr(self) -> str:
        return (
            f"layer={self.layer}, lambda1={self.lambda1}, lambda2={self.lambda2}, eta={self.eta}, "
            f"over={self.over!r}, "
            f"gather={'yes' if self.gather is not None else 'no'}"
        )
