"""Multi-process helpers, and an all-gather with gradients for global-batch Seq-VCR statistics.

Seq-VCR's covariance is taken across the batch, so under data parallelism each rank should see the
projected states of the whole global batch, not only its own shard. ``all_gather_with_grad`` gives every
rank the concatenation (along dim 0, in rank order) and routes gradients back to each rank's own shard.

Gradient convention (the usual one, as in SimCLR / lightly's ``GatherLayer``)
-----------------------------------------------------------------------------
Every rank computes the SAME global Seq-VCR loss ``L(X_all)`` on the gathered tensor plus its own
next-token loss (a mean over its shard), and DDP averages the parameter gradients over the ``W`` ranks.
The backward of the gather all-reduces (SUM) the incoming gradient of ``X_all`` and returns the local
slice, so each rank holds ``W * dL/dX_r`` for its shard, just as a per-rank LM mean has ``W`` times the
full-batch mean's gradient there. After DDP's division by ``W`` the parameters get exactly the
single-process gradient of ``mean-LM-loss(full batch) + L(X_all)`` (for unequal shard sizes the Seq-VCR
part stays exact; only the LM part's per-rank mean weighting differs, as it always does under DDP).
Ranks computing different losses ``L_r`` on the gathered tensor get that of ``(1/W) sum_r L_r(X_all)``.

Shards may differ in size along dim 0 (the last batch of an epoch): one tiny extra all-gather per call
exchanges the sizes first.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from seqvcr.errors import ConfigError, RunDirError, SeqVCRError

__all__ = ["all_gather_with_grad", "any_rank", "barrier", "gather_to_rank0", "init_from_env",
           "is_distributed", "local_rank", "on_rank0", "rank", "shutdown", "world_size"]


# ----------------------------------------------------------------------------------------------------
# process-group helpers (all safe to call in a single, non-distributed process)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank(group: Any = None) -> int:
    """This process's rank in ``group`` (the default group if None); 0 when not distributed."""
    return dist.get_rank(group) if is_distributed() else 0


def world_size(group: Any = None) -> int:
    """Number of processes in ``group`` (the default group if None); 1 when not distributed."""
    return dist.get_world_size(group) if is_distributed() else 1


def local_rank() -> int:
    """The rank on this node from torchrun's ``LOCAL_RANK`` (0 if unset): picks the CUDA device."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier() -> None:
    """Wait for every rank; a no-op in a single process."""
    if is_distributed():
        dist.barrier()


def init_from_env(backend: str | None = None) -> bool:
    """Initialise the default process group from torchrun's environment (``env://``) when ``WORLD_SIZE``
    is over 1, once; True when running distributed after the call. The backend is ``nccl`` when CUDA is
    available (on the device ``LOCAL_RANK``), else ``gloo``. A ConfigError when ``RANK``,
    ``MASTER_ADDR`` or ``MASTER_PORT`` is missing."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ConfigError(
            f"distributed: WORLD_SIZE > 1 but {', '.join(missing)} not set; launch with torchrun"
        )
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, init_method="env://")
    # The group stays up for later calls in this process (a second group on the same MASTER_PORT could
    # meet the first one's store before it is gone) and is left once, at exit.
    atexit.register(shutdown)
    return True


def shutdown() -> None:
    """Leave the process group if this process is in one: a process that exits while still in it can be
    aborted by gloo's threads at interpreter exit ("terminate called without an active exception").
    Registered with ``atexit`` by :func:`init_from_env`; callers synchronise the ranks before (``train``
    ends with a barrier)."""
    if is_distributed():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------------
# all-gather


def _gather_sizes(n: int, device: torch.device, group: Any) -> list[int]:
    """Every rank's dim-0 size, in rank order."""
    local = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, local, group=group)
    return [int(s.item()) for s in sizes]


def _gather_cat(x: Tensor, sizes: list[int], group: Any) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0; shards of unequal size are padded to the max."""
    n_max = max(sizes)
    x = x.contiguous()
    if x.shape[0] < n_max:
        x = torch.cat([x, x.new_zeros((n_max - x.shape[0], *x.shape[1:]))], 0)  # (n_max, ...)
    buffers = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(buffers, x, group=group)
    return torch.cat([b[:s] for b, s in zip(buffers, sizes)], 0)  # (sum(sizes), ...)


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenation of every rank's tensor. Backward: SUM all-reduce, then the local slice."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:  # type: ignore[override]
        ctx.group, ctx.rank = group, dist.get_rank(group)
        ctx.sizes = _gather_sizes(x.shape[0], x.device, group)
        return _gather_cat(x, ctx.sizes, group)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()  # (sum(sizes), ...) never reduce autograd's buffer in place
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def all_gather_with_grad(x: Tensor, group: Any = None) -> Tensor:
    """Concatenate ``x`` (n_r, ...) from every rank along dim 0, in rank order, with gradients (the
    module docstring says which); ``x`` itself in a single process. Tensors that need no gradient (a bool
    padding mask) are gathered without autograd, bools as uint8. Shards may differ in size along dim 0
    but must agree on the other dims and dtype."""
    if not is_distributed() or dist.get_world_size(group) == 1:
        return x
    if x.requires_grad:
        return _AllGatherWithGrad.apply(x, group)
    sizes = _gather_sizes(x.shape[0], x.device, group)
    if x.dtype == torch.bool:
        return _gather_cat(x.to(torch.uint8), sizes, group).bool()
    return _gather_cat(x, sizes, group)


T = TypeVar("T")


def on_rank0(fn: Callable[[], T], distributed: bool) -> T | None:
    """Run ``fn`` on rank 0 and give every rank its verdict: the value, or the same one-line error
    (so no rank waits forever in a collective for a rank that has given up)."""
    value: T | None = None
    error: BaseException | None = None
    if rank() == 0:
        try:
            value = fn()
        except (SeqVCRError, OSError) as err:
            error = err
    if distributed:
        box: list[Any] = [value, None if error is None else str(error)]
        torch.distributed.broadcast_object_list(box, src=0)
        value = box[0]
        if box[1] is not None and error is None:
            error = RunDirError(box[1])
    if error is not None:
        raise error
    return value


def gather_to_rank0(own: T) -> list[T]:
    """Every rank's ``own``, in rank order, on rank 0 (the others get ``[]``); a collective."""
    if world_size() == 1:
        return [own]
    out: list[Any] = [None] * world_size() if rank() == 0 else []
    torch.distributed.gather_object(own, out if rank() == 0 else None, dst=0)
    return out


def any_rank(flag: torch.Tensor) -> bool:
    """True if ``flag`` is set on any process (so every rank stops together on a NaN)."""
    if world_size() > 1:
        flag = flag.to(torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag)
