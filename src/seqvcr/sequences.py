"""Assemble training sequences: question, pause block, chain of thought, answer; and their loss targets.

A sequence is::

    question  question_end  [</pause_start> <pause> x k </pause_end>]  [cot  cot_end]  answer  <eos>

The prompt given at inference ends after the pause block (after ``question_end`` when k = 0). Only the
tokens after the prompt -- the chain of thought, the answer and the end token -- are loss targets; the
question and the pause block never are (targets -100), so the model is never asked to predict a pause
(as in pause training, Goyal et al. 2023). Every ``<pause>`` is the same token, hence one shared learned
embedding.

Data are pre-tokenised once into padded tensors that can live on the GPU, so a training step does no
Python tokenising.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from seqvcr.errors import DataError
from seqvcr.model import IGNORE_INDEX
from seqvcr.tasks import Example, Task
from seqvcr.tokenizer import PAUSE, PAUSE_END, PAUSE_START, Tokenizer

#: Which positions enter the Seq-VCR statistics (``seqvcr.positions``; the paper does not say):
#: ``all`` every real input token (question, pause block, answer); ``answer`` the states that predict a
#: trained token (the last prompt token through the last answer token); ``pause`` the pause block
#: (``</pause_start>``, the pauses, ``</pause_end>``); ``pause_answer`` both of the last two.
SEQVCR_POSITIONS: tuple[str, ...] = ("all", "answer", "pause", "pause_answer")


@dataclass
class SequenceFormat:
    """How examples of one task become token sequences for one configuration."""

    task: Task
    tokenizer: Tokenizer
    cot: bool = False
    pauses: int = 0

    @classmethod
    def for_task(cls, task: Task, cot: bool = False, pauses: int = 0) -> SequenceFormat:
        return cls(task=task, tokenizer=Tokenizer(task.vocabulary()), cot=cot, pauses=pauses)

    def pause_block(self) -> list[str]:
        return [PAUSE_START] + [PAUSE] * self.pauses + [PAUSE_END] if self.pauses > 0 else []

    def prompt_tokens(self, ex: Example) -> list[str]:
        """What the model is given at inference."""
        return [*ex.question, self.task.question_end, *self.pause_block()]

    def target_tokens(self, ex: Example) -> list[str]:
        """What the model must produce: [CoT, cot_end,] answer, <eos>.

        An example without a chain of thought (Feng et al.'s one-operator expressions) has no CoT block
        where the CoT separator is the question's own (``=``, ``<sep>``): Feng writes ``a / b = c``, not
        ``a / b = = c``. Multiplication keeps its ``####`` before the answer.
        """
        out: list[str] = []
        if self.cot and (ex.cot or self.task.cot_end != self.task.question_end):
            out += [*ex.cot, self.task.cot_end]
        return out + [*ex.answer, self.tokenizer.tokens[self.tokenizer.eos_id]]

    def max_new_tokens(self) -> int:
        """The decoding budget: the longest target any example of this task can have in this format, never
        a property of a batch, so a prompt decodes to the same output whatever it is batched with."""
        cot = self.task.max_cot_length() + 1 if self.cot else 0
        return cot + self.task.max_answer_length() + 1

    def extract_answer(self, generated: Sequence[str]) -> list[str]:
        """The answer part of a generated continuation, or ``[]`` when <eos> does not close it (an output
        cut at the decoding budget is no answer). With a chain of thought the answer is what follows the
        last ``cot_end`` (or, where ``cot_end`` is the question's separator, the whole continuation when it
        has none: a one-operator expression answered directly).
        """
        eos = self.tokenizer.tokens[self.tokenizer.eos_id]
        toks = list(generated)
        if eos not in toks:
            return []
        toks = toks[: toks.index(eos)]
        if self.cot:
            if self.task.cot_end not in toks:
                return toks if self.task.cot_end == self.task.question_end else []
            last = len(toks) - 1 - toks[::-1].index(self.task.cot_end)
            toks = toks[last + 1 :]
        return toks


@dataclass
class EncodedData:
    """A data set as padded tensors on one device: ids (M, L) right-padded with the pad id, lengths (M,),
    prompt_lengths (M,), and the gold answer tokens of each example."""

    ids: torch.Tensor
    lengths: torch.Tensor
    prompt_lengths: torch.Tensor
    answers: list[tuple[str, ...]]

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def max_length(self) -> int:
        return self.ids.shape[1]

    def to(self, device: torch.device | str) -> EncodedData:
        return EncodedData(
            self.ids.to(device), self.lengths.to(device), self.prompt_lengths.to(device), self.answers
        )

    def subset(self, index: torch.Tensor | Sequence[int]) -> EncodedData:
        idx = torch.as_tensor(index, dtype=torch.long)
        answers = [self.answers[i] for i in idx.tolist()]
        idx = idx.to(self.ids.device)
        return EncodedData(self.ids[idx], self.lengths[idx], self.prompt_lengths[idx], answers)


def encode_examples(
    fmt: SequenceFormat, examples: Sequence[Example], pad_to: int | None = None, where: str = ""
) -> EncodedData:
    """Tokenise examples into an ``EncodedData`` (padded to the longest, or to ``pad_to``)."""
    tok = fmt.tokenizer
    rows: list[list[int]] = []
    prompt_lengths: list[int] = []
    for i, ex in enumerate(examples):
        prompt = fmt.prompt_tokens(ex)
        label = f"{where} example {i + 1}" if where else f"example {i + 1}"
        if not ex.answer:
            raise DataError(f"{label}: has no answer (a question-only file cannot be trained or scored)")
        rows.append(tok.encode(prompt + fmt.target_tokens(ex), where=label))
        prompt_lengths.append(len(prompt))
    longest = max((len(r) for r in rows), default=0)
    width = longest if pad_to is None else pad_to
    if width < longest:
        raise ValueError(f"pad_to={pad_to} is shorter than the longest sequence ({longest} tokens)")
    ids = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    prompts = torch.tensor(prompt_lengths, dtype=torch.long)
    return EncodedData(ids, lengths, prompts, answers=[tuple(ex.answer) for ex in examples])


def make_batch(data: EncodedData, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (B, L-1) input ids, y (B, L-1) targets (-100 on prompt and padding) and mask (B, L-1), True where
    x is a real input token (every token but the final <eos>) of rows ``index``. Shapes are always the data
    set's padded length, so compiled graphs are reused."""
    ids = data.ids[index]  # (B, L)
    lengths = data.lengths[index]  # (B,)
    prompt = data.prompt_lengths[index]  # (B,)
    x = ids[:, :-1]
    target_pos = torch.arange(1, ids.shape[1], device=ids.device)  # (L-1,) index of each target
    trained = (target_pos[None, :] >= prompt[:, None]) & (target_pos[None, :] < lengths[:, None])
    y = torch.where(trained, ids[:, 1:], torch.full_like(x, IGNORE_INDEX))
    # the final <eos> predicts nothing and is an input only in shorter, padded rows: never count it
    mask = torch.arange(x.shape[1], device=ids.device)[None, :] < (lengths - 1)[:, None]
    return x, y, mask


def seqvcr_positions(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, positions: str, pause_ids: Sequence[int]
) -> torch.Tensor:
    """The (B, T) bool mask of the positions whose states enter the Seq-VCR statistics (x, y, mask: as
    ``make_batch`` returns them; ``positions``: one of ``SEQVCR_POSITIONS``; ``pause_ids``: the pause
    block's token ids). Chosen per sequence, so a position index can count for some sequences and not for
    others (the Seq-VCR padding rule then applies)."""
    if positions not in SEQVCR_POSITIONS:
        raise ValueError(f"seqvcr positions: {positions!r} is not one of {', '.join(SEQVCR_POSITIONS)}")
    if positions == "all":
        return mask
    answer = y != IGNORE_INDEX  # (B, T) states that predict a trained token
    pause = torch.isin(x, torch.as_tensor(list(pause_ids), device=x.device)) & mask  # (B, T)
    if positions == "answer":
        return answer
    if positions == "pause":
        return pause
    return answer | pause
