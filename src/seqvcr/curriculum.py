"""What each training step's sequences look like: the same format throughout, or a data curriculum.

The loop asks a curriculum for the batch of a step (``batch(rows, step)``) and whether the optimiser
starts afresh there (``resets_optimizer(step)``); both are pure functions of the step (and the run's
seed), so a resumed run sees the batches an uninterrupted one would. :data:`CURRICULA` lists them:

* :class:`FixedFormat` -- every step trains on the run's own format (``sequences.make_batch``).
* :class:`CotRemoval` -- stepwise internalisation of the chain of thought (ICoT-SI; Deng, Choi and
  Shieber 2024, arXiv 2405.14838). Training starts on ``question || CoT #### answer`` and removes CoT tokens
  from the left, ending on the run's own format without CoT, which is what evaluation always decodes.
  As in Deng et al.'s ``src/train.py`` (github da03/Internalize_CoT_Step_by_Step, ``--removal_side left``):

  - the scheduled count ``s`` grows by one token every ``steps_per_token`` steps (their
    ``steps_per_epoch / remove_per_epoch``, Delta = 8 tokens per epoch by default), after ``start_step``
    steps of full CoT (their ``--pretrain_epochs``);
  - removal smoothing: each sequence removes ``s + o`` tokens, ``P(o) = (1 - e^-lambda) e^(-lambda o)``
    truncated at 100 (the rest of the mass on the last value), lambda = 4 by default, ``inf``: off;
  - ``--reset_optimizer``: AdamW's state is cleared whenever ``s`` grows, until the schedule has removed
    every CoT token (they test whether the previous batch still held CoT; we test the schedule, a pure
    function of the step, so it resumes exactly);
  - one deliberate difference: once a sequence's whole CoT is removed, its ``####`` goes too, so training
    ends on exactly the format evaluation uses (Deng et al. keep it). Positions are renumbered after a
    removal, as in their default (no ``--keep_position``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor

from seqvcr import config as C
from seqvcr.sequences import EncodedData, SequenceFormat, encode_examples, make_batch
from seqvcr.tasks import Example
from seqvcr.terms import Batch


class BatchSampler:
    """Batch indices as a pure function of (seed, step): a fresh permutation per epoch, last partial
    batch dropped, so every step has the same shape and resuming needs no sampler state."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n = n
        self.batch_size = min(batch_size, n)
        self.seed = seed
        self.steps_per_epoch = max(1, n // self.batch_size)
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def indices(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm[k * self.batch_size : (k + 1) * self.batch_size]


class Curriculum(Protocol):
    """Which sequences a step trains on."""

    max_length: int  # the longest sequence it can produce (the model's positions must cover it)

    def to(self, device: torch.device) -> Curriculum: ...

    def batch(self, rows: Tensor, step: int) -> Batch: ...

    def resets_optimizer(self, step: int) -> bool: ...

    def logs(self, step: int) -> dict[str, float]: ...


class FixedFormat:
    """Every step: the rows of the encoded training set as they are (fixed shapes, for ``torch.compile``)."""

    def __init__(self, data: EncodedData) -> None:
        self.data = data
        self.max_length = data.max_length

    def to(self, device: torch.device) -> FixedFormat:
        self.data = self.data.to(device)
        return self

    def batch(self, rows: Tensor, step: int) -> Batch:
        x, y, mask = make_batch(self.data, rows)  # (B, T) each
        return Batch(x, y, mask, rows)

    def resets_optimizer(self, step: int) -> bool:
        return False

    def logs(self, step: int) -> dict[str, float]:
        return {}


def smoothing_distribution(lam: float, truncate: int = 100) -> Tensor:
    """(truncate,) probabilities of the removal offset (module docstring); ``lam = inf``: all on 0."""
    if math.isinf(lam):
        p = torch.zeros(truncate, dtype=torch.float64)
        p[0] = 1.0
        return p
    o = torch.arange(truncate, dtype=torch.float64)
    p = (1 - math.exp(-lam)) * torch.exp(-lam * o)
    p[-1] += 1 - p.sum()
    return p


def remove_cot(
    data: EncodedData, cot_lengths: Tensor, rows: Tensor, to_remove: Tensor, pad_id: int
) -> EncodedData:
    """The rows of ``data`` (encoded WITH their CoT) with the first ``to_remove`` CoT tokens cut out,
    padded to the longest of them. ``cot_lengths`` (M,) counts each example's CoT tokens (without the
    separator); a row asked to remove at least its whole CoT loses the separator too."""
    ids = data.ids[rows]  # (B, L)
    prompt = data.prompt_lengths[rows]  # (B,)
    n_cot = cot_lengths[rows]  # (B,)
    removed = torch.where(to_remove >= n_cot, n_cot + 1, to_remove)  # (B,)
    j = torch.arange(ids.shape[1], device=ids.device)  # (L,)
    src = j[None, :] + removed[:, None] * (j[None, :] >= prompt[:, None])  # (B, L) each token's source
    out = ids.gather(1, src.clamp(max=ids.shape[1] - 1))  # (B, L)
    lengths = data.lengths[rows] - removed  # (B,)
    out = torch.where(j[None, :] < lengths[:, None], out, torch.full_like(out, pad_id))
    width = int(lengths.max())
    return EncodedData(out[:, :width], lengths, prompt, answers=[])  # make_batch needs no answers


class CotRemoval:
    """ICoT-SI: remove CoT tokens from the left on a schedule (module docstring)."""

    def __init__(self, data: EncodedData, cot_lengths: Tensor, *, pad_id: int, steps_per_token: int,
                 smoothing_lambda: float, reset_optimizer: bool, start_step: int, seed: int) -> None:
        self.data = data  # encoded with the CoT, padded to the longest
        self.cot_lengths = cot_lengths.to(data.ids.device)
        self.pad_id = int(pad_id)
        self.steps_per_token = max(1, int(steps_per_token))
        self.smoothing = smoothing_distribution(smoothing_lambda)
        self.reset = reset_optimizer
        self.start_step = int(start_step)
        self.seed = int(seed)
        self.longest_cot = int(cot_lengths.max()) if len(cot_lengths) else 0
        self.max_length = data.max_length

    def to(self, device: torch.device) -> CotRemoval:
        self.data = self.data.to(device)
        self.cot_lengths = self.cot_lengths.to(device)
        return self

    def scheduled(self, step: int) -> int:
        """CoT tokens every sequence loses at ``step`` before its random offset."""
        return 0 if step < self.start_step else (step - self.start_step) // self.steps_per_token

    def batch(self, rows: Tensor, step: int) -> Batch:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        offset = torch.multinomial(self.smoothing, len(rows), replacement=True, generator=g)  # (B,)
        to_remove = (self.scheduled(step) + offset).to(self.data.ids.device)
        if step < self.start_step:  # full CoT first, no smoothing (Deng et al.'s pretraining epochs)
            to_remove = torch.zeros_like(to_remove)
        part = remove_cot(self.data, self.cot_lengths, rows, to_remove, self.pad_id)
        x, y, mask = make_batch(part, torch.arange(len(rows), device=part.ids.device))
        return Batch(x, y, mask, rows)

    def resets_optimizer(self, step: int) -> bool:
        grew = step > 0 and self.scheduled(step) > self.scheduled(step - 1)
        return self.reset and grew and self.scheduled(step - 1) < self.longest_cot

    def logs(self, step: int) -> dict[str, float]:
        return {"cot_removed": float(min(self.scheduled(step), self.longest_cot + 1))}


def _fixed(cfg: C.Config, fmt: SequenceFormat, examples: Sequence[Example], pad_to: int) -> Curriculum:
    data = encode_examples(fmt, examples, where="train")
    if data.max_length < pad_to:  # as long as the validation sequences (one width for both)
        data = encode_examples(fmt, examples, pad_to=pad_to, where="train")
    return FixedFormat(data)


def steps_per_token(cfg: C.Config, n_examples: int) -> int:
    """ICoT-SI's steps between removals: ``curriculum.steps_per_token``, else an epoch of ``n_examples``
    over Deng et al.'s Delta (``curriculum.tokens_per_epoch``)."""
    c = cfg.curriculum
    if c.steps_per_token is not None:
        return c.steps_per_token
    steps_per_epoch = max(1, n_examples // cfg.optim.batch_size)
    return max(1, round(steps_per_epoch / c.tokens_per_epoch))


def _icot_si(cfg: C.Config, fmt: SequenceFormat, examples: Sequence[Example], pad_to: int) -> Curriculum:
    c = cfg.curriculum
    with_cot = SequenceFormat(fmt.task, fmt.tokenizer, cot=True, pauses=fmt.pauses)
    data = encode_examples(with_cot, examples, where="train")
    steps = steps_per_token(cfg, len(examples))
    cot_lengths = torch.tensor([len(ex.cot) for ex in examples], dtype=torch.long)
    lam = math.inf if c.smoothing_lambda is None else c.smoothing_lambda
    return CotRemoval(data, cot_lengths, pad_id=fmt.tokenizer.pad_id, steps_per_token=steps,
                      smoothing_lambda=lam, reset_optimizer=c.reset_optimizer, start_step=c.start_step,
                      seed=cfg.train.seed)


#: Every curriculum, by ``curriculum.name``.
CURRICULA: dict[str, Callable[[C.Config, SequenceFormat, Sequence[Example], int], Curriculum]] = {
    "none": _fixed,
    "icot_si": _icot_si,
}


def build_curriculum(
    cfg: C.Config, fmt: SequenceFormat, examples: Sequence[Example], pad_to: int, device: torch.device
) -> Curriculum:
    """The run's curriculum on ``device`` (``pad_to``: the fixed format's least width, the validation's)."""
    return CURRICULA[cfg.curriculum.name](cfg, fmt, examples, pad_to).to(device)
