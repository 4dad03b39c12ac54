"""The training loss as a list of terms: next-token loss, Seq-VCR, running sum, and whatever comes next.

A step computes::

    out = model(x, y, output_hidden_states=any(term.needs_hidden for term in terms))
    loss = sum(term(out, batch).loss for term in terms)

Each term is a small ``nn.Module`` (so its trained head, if any, is saved, restored and synchronised with
the model) that returns its weighted contribution to the loss and the named values it logs to
``metrics.jsonl``. Which terms a run has is decided once, from the config, by :data:`TERMS`; the loop
never asks which kind a term is. The running sum (Bai et al. 2025, arXiv 2510.00184, Sec. 6) is training
only: evaluation, entropy and the Hugging Face export load the GPT alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqvcr import config as C
from seqvcr.checkpoints import Heads
from seqvcr.errors import ConfigError
from seqvcr.model import GPT, GPTOutput
from seqvcr.objectives import Gather, SeqVCR
from seqvcr.runs import build_seqvcr
from seqvcr.sequences import SequenceFormat, seqvcr_positions
from seqvcr.tasks import Example, Task


@dataclass
class Batch:
    """One step's sequences: x (B, T) input ids; y (B, T) targets, -100 where nothing is trained; mask
    (B, T) bool, True on real input tokens; rows (B,) the rows of the training set they come from."""

    x: Tensor
    y: Tensor
    mask: Tensor
    rows: Tensor


@dataclass
class TermValue:
    """A term's weighted contribution to the loss and the scalars it logs (names as in metrics.jsonl)."""

    loss: Tensor
    logs: dict[str, Tensor]


class LossTerm(nn.Module):
    """One term of the training loss. ``needs_hidden``: it reads ``out.hidden_states``."""

    name: str = ""
    needs_hidden: bool = False
    #: the names of the values it logs, in order (fixed, so the loop can sum them on the device)
    log_names: tuple[str, ...] = ()

    def stored(self) -> dict[str, nn.Module]:
        """The trained parts saved with the model, by the prefix of their tensors (none by default)."""
        return {}

    def forward(self, out: GPTOutput, batch: Batch) -> TermValue:  # pragma: no cover - interface
        raise NotImplementedError


class LanguageModel(LossTerm):
    """The next-token loss the GPT computes on the trained targets (mean over trained tokens)."""

    name = "lm"
    log_names = ("lm_loss",)

    def forward(self, out: GPTOutput, batch: Batch) -> TermValue:
        assert out.loss is not None, "the model is called with targets"
        return TermValue(out.loss, {"lm_loss": out.loss})


class SeqVCRTerm(LossTerm):
    """Seq-VCR (``objectives.SeqVCR``: projection + loss) on the chosen layer and the states that
    ``positions`` and ``pause_ids`` choose (``sequences.seqvcr_positions``); ``gather`` (set under
    ``torchrun``) takes them over the global batch."""

    name = "seqvcr"
    needs_hidden = True
    log_names = ("seqvcr_loss", "seqvcr_variance", "seqvcr_covariance")

    def __init__(
        self, seqvcr: SeqVCR, positions: str, pause_ids: Sequence[int], gather: Gather | None = None
    ) -> None:
        super().__init__()
        self.seqvcr = seqvcr
        self.positions = positions
        self.pause_ids = tuple(pause_ids)
        self.gather = gather

    def stored(self) -> dict[str, nn.Module]:
        return {"seqvcr": self.seqvcr}

    def forward(self, out: GPTOutput, batch: Batch) -> TermValue:
        assert out.hidden_states is not None
        h = self.seqvcr.select(out.hidden_states)  # (B, T, n_embd) of the regularised layer
        counted = seqvcr_positions(batch.x, batch.y, batch.mask, self.positions, self.pause_ids)  # (B, T)
        sv = self.seqvcr(h, counted, gather=self.gather)
        logs = {"seqvcr_loss": sv.loss, "seqvcr_variance": sv.variance, "seqvcr_covariance": sv.covariance}
        return TermValue(sv.loss, logs)


# ---------------------------------------------------------------------------------------------- running sum


def running_sums(a_digits: Sequence[int], b_digits: Sequence[int], width: int) -> list[int]:
    """The running sums of long multiplication, one per answer digit (Bai et al. 2025, Sec. 3.2 and 6).

    With the digits of ``a`` and ``b`` least significant first, ``c_k = sum_{i+j=k} a_i b_j +
    floor(c_{k-1} / 10)``, ``c_{-1} = 0``; answer digit k is ``c_k mod 10``. ``width`` answer digits.
    """
    out: list[int] = []
    carry = 0
    for k in range(width):
        c = carry + sum(a * b_digits[k - i] for i, a in enumerate(a_digits) if 0 <= k - i < len(b_digits))
        out.append(c)
        carry = c // 10
    return out


def running_sum_targets(task: Task, examples: Sequence[Example]) -> Tensor:
    """(M, A) float running sums of every example (A = the task's answer width); multiplication only."""
    if task.name != "mult":
        raise ConfigError(f"running_sum: needs the multiplication task (mult), not {task.name!r}")
    width = task.max_answer_length()
    rows = []
    for ex in examples:
        star = ex.question.index("*")
        a = [int(t) for t in ex.question[:star]]
        b = [int(t) for t in ex.question[star + 1 :]]
        rows.append(running_sums(a, b, width))
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), width)


def answer_positions(mask: Tensor, width: int) -> Tensor:
    """(B, A) index of the state that predicts answer digit k of each sequence: its inputs end with the
    A answer tokens (the ``<eos>`` after them is no input), so it is ``n_inputs - 1 - A + k``, whatever
    comes before the answer (pause block, a partly removed chain of thought)."""
    n_inputs = mask.sum(dim=1)  # (B,)
    k = torch.arange(width, device=mask.device)  # (A,)
    return (n_inputs - 1 - width)[:, None] + k[None, :]  # (B, A)


class RunningSum(LossTerm):
    """``weight * mean_k (head(h_k) - c_k / scale)^2``: a bias-carrying linear head on layer ``layer``.
    ``targets``, the (M, A) running sums of the training set indexed by the batch's rows, is data, not
    state: neither saved nor synchronised."""

    name = "running_sum"
    needs_hidden = True
    log_names = ("running_sum_mse",)

    def __init__(self, in_dim: int, targets: Tensor, *, weight: float, layer: int, scale: float) -> None:
        super().__init__()
        self.head = nn.Linear(in_dim, 1)
        self.targets = targets
        self.weight = float(weight)
        self.layer = int(layer)
        self.scale = float(scale)

    def stored(self) -> dict[str, nn.Module]:
        return {"running_sum": self.head}

    def forward(self, out: GPTOutput, batch: Batch) -> TermValue:
        assert out.hidden_states is not None
        h = out.hidden_states[self.layer]  # (B, T, n_embd)
        width = self.targets.shape[1]
        pos = answer_positions(batch.mask, width)  # (B, A)
        states = torch.gather(h, 1, pos[:, :, None].expand(-1, -1, h.shape[-1]))  # (B, A, n_embd)
        pred = self.head(states).squeeze(-1).float()  # (B, A)
        target = self.targets[batch.rows] / self.scale  # (B, A)
        mse = ((pred - target) ** 2).mean()
        return TermValue(self.weight * mse, {"running_sum_mse": mse})


# ---------------------------------------------------------------------------------------------- registry


@dataclass
class TermContext:
    """What building a term may need beyond the config (``gather``: the all-gather under torchrun)."""

    n_embd: int
    task: Task
    train_examples: Sequence[Example]
    pause_ids: tuple[int, ...]
    device: torch.device | str = "cpu"
    gather: Gather | None = None


def _seqvcr(cfg: C.Config, ctx: TermContext) -> LossTerm | None:
    head = build_seqvcr(cfg, ctx.n_embd)
    return None if head is None else SeqVCRTerm(head, cfg.seqvcr.positions, ctx.pause_ids, ctx.gather)


def _running_sum(cfg: C.Config, ctx: TermContext) -> LossTerm | None:
    r = cfg.running_sum
    if r.weight == 0:
        return None
    targets = running_sum_targets(ctx.task, ctx.train_examples).to(ctx.device)
    return RunningSum(ctx.n_embd, targets, weight=r.weight, layer=r.layer, scale=r.scale)


#: Every term a run can have, in the order they are summed: name -> builder (None: not in this run).
TERMS: dict[str, Callable[[C.Config, TermContext], LossTerm | None]] = {
    "lm": lambda cfg, ctx: LanguageModel(),
    "seqvcr": _seqvcr,
    "running_sum": _running_sum,
}


def build_terms(cfg: C.Config, ctx: TermContext) -> nn.ModuleDict:
    """The terms of this run's loss, by name, in :data:`TERMS` order."""
    built = {name: make(cfg, ctx) for name, make in TERMS.items()}
    return nn.ModuleDict({name: term for name, term in built.items() if term is not None})


# ---------------------------------------------------------------------------------------------- the sum


class TrainModule(nn.Module):
    """The model and its loss terms as one module, so DDP synchronises every trained part. ``forward``
    returns the loss to backpropagate and the (n,) vector of the values the terms log (``log_names``)."""

    def __init__(self, model: GPT, terms: nn.ModuleDict) -> None:
        super().__init__()
        self.model = model
        self.terms = terms
        self.needs_hidden = any(t.needs_hidden for t in terms.values())
        self.log_names: tuple[str, ...] = tuple(n for t in terms.values() for n in t.log_names)

    def heads(self) -> Heads:
        """The terms' trained heads, by the prefix their tensors are stored under."""
        return {name: m for t in self.terms.values() for name, m in t.stored().items()}

    def forward(self, x: Tensor, y: Tensor, mask: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        batch = Batch(x, y, mask, rows)
        out = self.model(x, y, output_hidden_states=self.needs_hidden)
        total: Tensor | None = None
        logged: list[Tensor] = []
        for term in self.terms.values():
            value = term(out, batch)
            total = value.loss if total is None else total + value.loss
            logged += [value.logs[name].detach() for name in term.log_names]
        assert total is not None, "a run has at least the LM term"
        dtype = functools.reduce(torch.promote_types, (v.dtype for v in logged))
        return total, torch.stack([v.to(dtype) for v in logged])


def build_train_module(
    cfg: C.Config, model: GPT, fmt: SequenceFormat, train_examples: Sequence[Example],
    device: torch.device | str = "cpu", gather: Gather | None = None,
) -> TrainModule:
    """``model`` with the loss terms of ``cfg`` (:func:`build_terms`) on ``device``."""
    tok = fmt.tokenizer
    pause_ids = (tok.pause_start_id, tok.pause_id, tok.pause_end_id)
    ctx = TermContext(model.config.n_embd, fmt.task, train_examples, pause_ids, device, gather)
    return TrainModule(model, build_terms(cfg, ctx).to(device))
