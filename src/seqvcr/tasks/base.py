"""The task abstraction shared by every benchmark: one example, one task, reading and writing files.

A task owns three things: its vocabulary, a seeded generator of examples, and the exact one-line text
format of its data files (the formats of Deng et al. and Feng et al., so that their published files can be
read and our generated files can be fed to their code). Everything downstream (tokenizer, sequence
assembly, evaluation) only sees :class:`Example` objects and the two separator tokens.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqvcr.errors import ConfigError, DataError

#: Consecutive duplicate / excluded draws after which :func:`generate_unique` gives up: the requested
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
        if type(self.question) is not tuple:
            object.__setattr__(self, "question", tuple(self.question))
        if type(self.cot) is not tuple:
            object.__setattr__(self, "cot", tuple(self.cot))
        if type(self.answer) is not tuple:
            object.__setattr__(self, "answer", tuple(self.answer))


class Task(ABC):
    """A benchmark task: vocabulary, generator and line format.

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
    def generate(self, n: int, seed: int, exclude: Iterable[str] = frozenset()) -> list[Example]:
        """``n`` distinct examples (distinct keys), none of whose :meth:`key` is in ``exclude``.

        Deterministic for a given ``seed`` (and ``exclude``): the same call gives the same list on every
        machine.
        """

    @abstractmethod
    def format_line(self, ex: Example, cot: bool = True) -> str:
        """One line of the task's file format (without the newline); ``cot=False`` gives the direct form."""

    @abstractmethod
    def parse_line(self, line: str, where: str) -> Example:
        """Parse and validate one line (without its newline).

        Raises:
            DataError: ``"{where}: expected ..., got ..."`` if the line is malformed or wrong.
        """

    @abstractmethod
    def describe(self) -> str:
        """A short human-readable name, e.g. ``"mult 4x4"``."""

    @abstractmethod
    def options(self) -> dict[str, Any]:
        """The constructor keyword arguments (defaults resolved): ``make_task(t.name, **t.options())``
        rebuilds an equal task, so a saved config identifies the task exactly."""

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
        """What ``examples`` hold when it is not what this task tests (e.g. ``"expressions with 3
        operators"`` for a 4-operator task), else None. The line parser already rejects problems the
        task cannot hold; this names the legitimate but different ones (a transfer test)."""
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


def generate_unique(
    n: int,
    seed: int,
    exclude: Iterable[str],
    sample: Callable[[random.Random], tuple[str, Example]],
    what: str,
) -> list[Example]:
    """Draw examples with ``sample(rng)`` until ``n`` distinct keys not in ``exclude`` are collected.

    ``sample`` returns ``(key, example)``. Shared by the generators so that de-duplication, exclusion and
    the "not enough distinct problems" error behave the same for every task.

    Raises:
        ConfigError: ``n`` is negative, or no new example turned up in ``MAX_CONSECUTIVE_MISSES`` draws.
    """
    check_count(n)
    rng = random.Random(seed)
    excluded = exclude if isinstance(exclude, (set, frozenset)) else frozenset(exclude)
    seen: set[str] = set()
    out: list[Example] = []
    misses = 0
    while len(out) < n:
        key, ex = sample(rng)
        if key in seen or key in excluded:
            misses += 1
            if misses >= MAX_CONSECUTIVE_MISSES:
                raise ConfigError(
                    f"could only generate {len(out)} distinct {what} examples of the {n} requested "
                    f"({len(excluded)} excluded); ask for fewer"
                )
            continue
        misses = 0
        seen.add(key)
        out.append(ex)
    return out


def check_count(n: int) -> None:
    """Reject a negative or non-integer number of examples with a ConfigError."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"number of examples must be an integer >= 0, got {n!r}")


def check_int(name: str, value: object, low: int, high: int) -> int:
    """Validate an integer constructor option in ``[low, high]``; ConfigError names the allowed range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def read_examples(task: Task, path: str | os.PathLike[str]) -> list[Example]:
    """Read a data file of ``task``'s format: one example per line.

    Only the line terminator (``\\n`` or ``\\r\\n``) is removed: trailing spaces are part of Feng et al.'s
    chain format. Every line, including a blank one, must parse.

    Raises:
        DataError: the file is missing, unreadable, not UTF-8 or empty (``"path: file is empty"``), or a
            line is malformed (``"path:line: expected ..., got ..."``).
    """
    p = Path(path)
    examples: list[Example] = []
    try:
        with open(p, encoding="utf-8", newline="") as f:
            for lineno, raw in enumerate(f, start=1):
                line = raw[:-1] if raw.endswith("\n") else raw
                if line.endswith("\r"):
                    line = line[:-1]
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
    """Write ``examples`` in ``task``'s format, one line each, every line ending with ``\\n``.

    Atomic: the text goes to a temporary file in the same directory which then replaces ``path``
    (``os.replace``), so a crash never leaves a half-written data file behind. The parent directory is
    created if needed.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.parent / f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # os.open with mode 0o666 lets the umask decide the permissions, as for a plainly created file
    # (tempfile.mkstemp would leave the data file readable by its owner only).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for ex in examples:
                f.write(task.format_line(ex, cot=cot))
                f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def bad_line(where: str, expected: str, got: str) -> DataError:
    """The uniform DataError for a malformed line: ``"where: expected ..., got ..."`` (``got`` shortened)."""
    if len(got) > 80:
        got = got[:77] + "..."
    return DataError(f"{where}: expected {expected}, got {got!r}")
