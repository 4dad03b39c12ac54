"""A word-level tokenizer: every digit, number or symbol of a task is one token.

The vocabulary is the five special tokens followed by the task's own tokens, so ids are stable for a
given task and the same on every machine (they are saved with each run in ``config.yaml``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from seqvcr.errors import DataError

PAD = "<pad>"
EOS = "<eos>"
PAUSE_START = "</pause_start>"
PAUSE = "<pause>"
PAUSE_END = "</pause_end>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, EOS, PAUSE_START, PAUSE, PAUSE_END)


class Tokenizer:
    """Maps whitespace-separated task tokens to integer ids and back; ``task_tokens`` is the task's own
    vocabulary (digits, operators, separators)."""

    def __init__(self, task_tokens: Iterable[str]) -> None:
        self.tokens: list[str] = list(dict.fromkeys([*SPECIAL_TOKENS, *task_tokens]))
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        self.pad_id = self.index[PAD]
        self.eos_id = self.index[EOS]
        self.pause_start_id = self.index[PAUSE_START]
        self.pause_id = self.index[PAUSE]
        self.pause_end_id = self.index[PAUSE_END]

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str], where: str = "") -> list[int]:
        """Token strings -> ids; an unknown token is a DataError naming ``where`` (e.g. file:line)."""
        try:
            return [self.index[t] for t in tokens]
        except KeyError as err:
            prefix = f"{where}: " if where else ""
            raise DataError(f"{prefix}unknown token {err.args[0]!r} for this task's vocabulary") from None

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> token strings (ids outside the vocabulary decode to '<unk>')."""
        n = len(self.tokens)
        return [self.tokens[i] if 0 <= i < n else "<unk>" for i in ids]
