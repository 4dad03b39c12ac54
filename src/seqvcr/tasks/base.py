"""The task abstraction shared by every benchmark: one example, one task, reading and writing files.

A task owns three things: its vocabulary, a seeded sampler of examples, and the exact one-line text
format of its data files (the formats of Deng et al. and Feng et al., so that their published files can be
read and our generated files can be fed to their code). Everything downstream (tokenizer, sequence
assembly, evaluation) only sees :class:`Example` objects and the two separator tokens.
"""

from __future__ import annotations

import os
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqvcr.atomic import write_bytes_atomic
from seqvcr.errors import ConfigError, DataError

#: Consecutive duplicate / excluded draws after which :meth:`Task.generate` gives up: the requested
#: number of distinct examples then (almost surely) does not exist.
MAX_CONSECUTIVE_MISSES = 1_000_000


@dataclass(frozen=True)
class Example:
    """One problem: question, chain of thought and answer, each a tuple of token strings.

    ``cot`` is ``()`` when the source had no chain of thought (a direct-answer file); ``answer`` is ``()``
    only for question-only lines (Feng et al.'s chain-format test files keep the answers in a separate
    ``test_ans.txt``). Lists are converted to tuples so that examples are hashable.
    """

    question: tuple[str, ...]
    cot: tuple[str, ...]
    answer: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("question", "cot", "answer"):
            if type(getattr(self, name)) is not tuple:
                object.__setattr__(self, name, tuple(getattr(self, name)))


class Task(ABC):
    """A benchmark task: vocabulary, sampler and line format.

    Subclasses set ``name``, ``question_end`` and ``cot_end`` and implement the abstract methods. Their
    constructor's keyword arguments are the task's options, with their defaults (the config keys
    ``task.<option>``, but ``DATA_ONLY_OPTIONS``'s, and the flags of ``seqvcr data``); ``OPTION_HELP``
    says what each means. The separators are vocabulary tokens that the assembler puts between question,
    CoT and answer; in the file formats they may be written without surrounding spaces (Deng's ``||``).
    """

    name: str
    question_end: str
    cot_end: str
    OPTION_HELP: dict[str, str] = {}
    DATA_ONLY_OPTIONS: tuple[str, ...] = ()  # flags of `seqvcr data` only: a config keeps their defaults

    @abstractmethod
    def vocabulary(self) -> list[str]:
        """Every token the task can produce, separators included, in a fixed order (stable token ids)."""

    @abstractmethod
    def sample(self, rng: random.Random) -> Example:
        """One example drawn with ``rng`` from the task's distribution."""

    @abstractmethod
    def format_line(self, ex: Example, cot: bool = True) -> str:
        """One line of the task's file format (without the newline); ``cot=False`` gives the direct form."""

    @abstractmethod
    def parse_line(self, line: str, where: str) -> Example:
        """Parse and validate one line (without its newline); a bad one is :func:`bad_line`'s DataError."""

    @abstractmethod
    def describe(self) -> str:
        """A short human-readable name, e.g. ``"mult 4x4"``."""

    @abstractmethod
    def options(self) -> dict[str, Any]:
        """The constructor keyword arguments (defaults resolved): ``make_task(t.name, **t.options())``
        rebuilds an equal task, so a saved config identifies the task exactly."""

    def generate(self, n: int, seed: int, exclude: Iterable[str] = frozenset()) -> list[Example]:
        """``n`` examples with distinct :meth:`key`\\ s, none in ``exclude``, the same on every machine for
        a ``seed``: :meth:`sample` is drawn until they are collected (a repeat is dropped and redrawn).

        Raises:
            ConfigError: ``n`` is not an integer >= 0, or no new example turned up in
                ``MAX_CONSECUTIVE_MISSES`` draws.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"number of examples must be an integer >= 0, got {n!r}")
        rng = random.Random(seed)
        excluded = exclude if isinstance(exclude, (set, frozenset)) else frozenset(exclude)
        seen: set[str] = set()
        out: list[Example] = []
        misses = 0
        while len(out) < n:
            ex = self.sample(rng)
            key = self.key(ex)
            if key in seen or key in excluded:
                misses += 1
                if misses >= MAX_CONSECUTIVE_MISSES:
                    raise ConfigError(
                        f"could only generate {len(out)} distinct {self.describe()} examples of the {n} "
                        f"requested ({len(excluded)} excluded); ask for fewer"
                    )
                continue
            misses = 0
            seen.add(key)
            out.append(ex)
        return out

    def max_cot_length(self) -> int:
        """The most chain-of-thought tokens any example of this task has (without ``cot_end``)."""
        raise NotImplementedError(f"{type(self).__name__} does not bound its chain of thought")

    def max_answer_length(self) -> int:
        """The most answer tokens any example of this task has."""
        raise NotImplementedError(f"{type(self).__name__} does not bound its answers")

    def for_evaluation(self) -> Task:
        """The task that validation and test sets are drawn from (``self``, unless the task mixes easier
        problems into its training set, as Feng et al.'s ``under`` option does)."""
        return self

    def difficulty_of(self, examples: Iterable[Example]) -> str | None:
        """What ``examples`` hold when it is legitimate but not what this task tests (a transfer test, e.g.
        ``"expressions with 3 operators"`` for a 4-operator task), else None."""
        return None

    def key(self, ex: Example) -> str:
        """The question as one string: the identity of a problem, used to keep train and test disjoint."""
        return " ".join(ex.question)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and type(self) is type(other) and self.options() == other.options()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.options().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({args})"


def check_int(name: str, value: object, low: int, high: int) -> int:
    """Validate an integer constructor option in ``[low, high]``; ConfigError names the allowed range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def read_examples(task: Task, path: str | os.PathLike[str]) -> list[Example]:
    """Read a data file of ``task``'s format: one example per line.

    Only the line terminator (``\\n`` or ``\\r\\n``) is removed: trailing spaces are part of Feng et al.'s
    chain format. Every line, including a blank one, must parse; an empty file is a DataError.
    """
    p = Path(path)
    examples: list[Example] = []
    try:
        with open(p, encoding="utf-8", newline="") as f:
            for lineno, raw in enumerate(f, start=1):
                line = raw.removesuffix("\n").removesuffix("\r")
                examples.append(task.parse_line(line, f"{p}:{lineno}"))
    except FileNotFoundError:
        raise DataError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a directory, expected a {task.describe()} data file") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{p}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise DataError(f"{p}: cannot read ({err.strerror or err})") from None
    if not examples:
        raise DataError(f"{p}: file is empty")
    return examples


def write_examples(
    task: Task, path: str | os.PathLike[str], examples: Iterable[Example], cot: bool = True
) -> None:
    """Write ``examples`` in ``task``'s format, one line each ending with ``\\n``, atomically (a crash
    never leaves a half-written data file behind), creating the parent directory if needed."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(
        p, lambda f: f.writelines(f"{task.format_line(ex, cot=cot)}\n".encode() for ex in examples)
    )


def bad_line(where: str, expected: str, got: str) -> DataError:
    """The uniform DataError for a malformed line: ``"where: expected ..., got ..."`` (``got`` shortened)."""
    if len(got) > 80:
        got = got[:77] + "..."
    return DataError(f"{where}: expected {expected}, got {got!r}")
