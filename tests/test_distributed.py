"""all_gather_with_grad: 2 gloo CPU processes vs one process on the concatenated batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seqvcr import distributed as sd
from seqvcr.errors import ConfigError
from seqvcr.objectives import SeqVCR

WORLD = 2
N, T, IN_DIM, PROJ_DIM = 6, 5, 8, 12

# name -> (shard sizes, over, with a padding mask, with a per-rank mean "LM" loss)
SCENARIOS: dict[str, tuple[tuple[int, int], str, bool, bool]] = {
    "equal": ((3, 3), "batch", False, True),
    "equal_masked": ((3, 3), "batch", True, True),
    "unequal_masked": ((4, 2), "batch", True, False),
    "batch_time": ((2, 4), "batch_time", True, False),
}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """The full batch (identical on every process): hidden states and a ragged right-padding mask."""
    gen = torch.Generator().manual_seed(1234)
    h = torch.randn(N, T, IN_DIM, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 4, 2, 5, 1])
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (N, T)
    return h, mask


def _module(over: str) -> SeqVCR:
    torch.manual_seed(0)
    return SeqVCR(IN_DIM, PROJ_DIM, lambda1=1.0, lambda2=0.5, over=over).double()


def _run(h: torch.Tensor, mask: torch.Tensor | None, module: SeqVCR, lm: bool, gather=None):
    """Seq-VCR (+ an optional per-shard mean standing in for the LM loss) and its gradients."""
    h = h.clone().requires_grad_()
    module.zero_grad()
    out = module(h, mask, gather=gather)
    total = out.loss + (h.pow(2).mean() if lm else 0.0)
    total.backward()
    return out.loss.detach(), h.grad, [p.grad.clone() for p in module.parameters()]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        assert sd.is_distributed() and sd.rank() == rank and sd.world_size() == WORLD
        sd.barrier()
        h, mask = _data()
        results = {}
        for name, (sizes, over, masked, lm) in SCENARIOS.items():
            module = _module(over)
            for p in module.parameters():  # DDP broadcasts rank 0's parameters at construction
                dist.broadcast(p.data, 0)
            start = sum(sizes[:rank])
            shard = slice(start, start + sizes[rank])
            local_mask = mask[shard] if masked else None
            loss, h_grad, p_grads = _run(h[shard], local_mask, module, lm, gather=sd.all_gather_with_grad)
            for g in p_grads:  # what DDP does to parameter gradients
                dist.all_reduce(g)
                g /= WORLD
            results[name] = {"loss": loss, "h_grad": h_grad, "p_grads": p_grads}
        # a tensor without gradient (and a bool one) is gathered as-is
        gathered_mask = sd.all_gather_with_grad(mask[3 * rank : 3 * rank + 3])
        results["mask_ok"] = torch.equal(gathered_mask, mask)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_ranks_match_single_process(two_rank_results, name):
    sizes, over, masked, lm = SCENARIOS[name]
    h, mask = _data()
    ref_loss, ref_h_grad, ref_p_grads = _run(h, mask if masked else None, _module(over), lm)
    for r in range(WORLD):
        res = two_rank_results[r][name]
        start = sum(sizes[:r])
        torch.testing.assert_close(res["loss"], ref_loss, rtol=1e-12, atol=1e-12)
        # parameters (after DDP averaging): exactly the single-process gradient
        for g, g_ref in zip(res["p_grads"], ref_p_grads):
            torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
        # local inputs: world_size times the single-process gradient of that shard
        torch.testing.assert_close(
            res["h_grad"] / WORLD, ref_h_grad[start : start + sizes[r]], rtol=1e-10, atol=1e-12
        )


@pytest.mark.slow
def test_gather_of_plain_bool_tensor(two_rank_results):
    assert all(res["mask_ok"] for res in two_rank_results)


def test_single_process_helpers(monkeypatch):
    assert not sd.is_distributed()
    assert sd.rank() == 0 and sd.world_size() == 1
    sd.barrier()  # no-op
    x = torch.randn(3, 2, requires_grad=True)
    assert sd.all_gather_with_grad(x) is x
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert sd.init_from_env() is False
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert sd.init_from_env() is False
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        sd.init_from_env()
    assert not sd.is_distributed()
