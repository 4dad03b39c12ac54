"""Shared fixtures: deterministic seeds and micro configs that train in seconds on a CPU."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)  # micro models: one thread is fastest and avoids oversubscription


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def micro_overrides(method: str = "seqvcr_pause", steps: int = 20) -> list[str]:
    """A 2x2-digit multiplication run with a 2-layer 32-wide model: a few seconds on CPU."""
    return [
        "task.name=mult",
        "task.digits=2",
        "task.train_size=512",
        "task.valid_size=64",
        "model.preset=tiny",
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=32",
        f"method.name={method}",
        "seqvcr.proj_dim=16",
        "optim.batch_size=16",
        f"optim.max_steps={steps}",
        "optim.lr=3e-3",
        "train.device=cpu",
        "train.log_every=5",
        "train.eval_every=10",
        "train.checkpoint_every=10",
        "train.eval_examples=32",
    ]
