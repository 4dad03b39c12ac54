"""Multi-digit multiplication in the format of Deng et al. (implicit chain of thought), byte exact.

A line is ``INPUT||COT #### ANSWER`` with every number written digit by digit, least significant digit
first, single spaces (see ``shared/data/README.md``)::

    5 6 3 2 * 7 4 3 4||5 5 5 6 1 + 0 0 6 4 9 0 ( 5 5 1 1 1 1 ) + ... #### 5 5 6 0 8 2 0 1

For an N-digit ``a`` and an M-digit ``b`` (Deng uses N = M):

- INPUT: ``rev(a, N) * rev(b, M)``;
- COT: the partial products ``a * b_i * 10^i`` (``b_i`` the i-th digit of b, i = 0..M-1), each of width
  ``N+1+i``, joined by ``+``; after partial product i, for 1 <= i <= M-2, the running sum
  ``( rev(a * (b mod 10^(i+1)), N+1+i) )``;
- ANSWER: ``rev(a*b, N+M)``;

where ``rev(x, w)`` is the digits of x, least significant first, padded with 0 to width w. The direct form
(no chain of thought) is ``INPUT||#### ANSWER``: Deng et al. train their no-CoT baselines on the same files
and simply drop the CoT, so this is the same line with an empty CoT; :meth:`parse_line` reads both.

The separators ``||`` and ``####`` are vocabulary tokens: the sequence assembler places them between the
question, the CoT and the answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from seqvcr.errors import ConfigError
from seqvcr.tasks.base import Example, Task, bad_line, check_int

DIGITS: tuple[str, ...] = tuple("0123456789")
_DIGIT_SET = frozenset(DIGITS)
MAX_DIGITS = 20


def _rev(x: int, width: int) -> str:
    """The decimal digits of ``x``, least significant first, right-padded with ``0`` to ``width``."""
    return str(x)[::-1].ljust(width, "0")


class MultiplicationTask(Task):
    """``digits`` x ``digits_b`` multiplication (``digits_b`` defaults to ``digits``), Deng et al.'s format.

    Operands are uniform over the numbers with exactly that many digits (no leading zero), as in Deng et
    al.'s data. Supports 1..20 digits per operand; the published 3x3..11x11 files round-trip byte for byte.
    """

    name = "mult"
    question_end = "||"
    cot_end = "####"
    OPTION_HELP = {"digits": "digits of the first operand",
                   "digits_b": "digits of the second operand (default: digits)"}

    def __init__(self, digits: int = 4, digits_b: int | None = None) -> None:
        self.digits = check_int("digits", digits, 1, MAX_DIGITS)
        self.digits_b = self.digits if digits_b is None else check_int("digits_b", digits_b, 1, MAX_DIGITS)

    # ---------------------------------------------------------------- metadata
    def options(self) -> dict[str, Any]:
        return {"digits": self.digits, "digits_b": self.digits_b}

    def describe(self) -> str:
        return f"mult {self.digits}x{self.digits_b}"

    def vocabulary(self) -> list[str]:
        return [*DIGITS, "*", "+", "(", ")", self.question_end, self.cot_end]

    # ---------------------------------------------------------------- the problem itself
    def question_of(self, a: int, b: int) -> tuple[str, ...]:
        """The question tokens of ``a * b``: both operands reversed, digit by digit."""
        return (*_rev(a, self.digits), "*", *_rev(b, self.digits_b))

    def cot_of(self, a: int, b: int) -> tuple[str, ...]:
        """Deng et al.'s chain of thought for ``a * b``: partial products and running sums (module doc)."""
        # Every CoT token is one character: the CoT is built as one string and split into characters,
        # several times faster than appending tokens (generation speed matters for 808k examples).
        n, m = self.digits, self.digits_b
        b_digits = _rev(b, m)
        steps: list[str] = []
        shift = 1  # 10^i
        for i in range(m):
            width = n + 1 + i
            step = str(a * int(b_digits[i]) * shift)[::-1].ljust(width, "0")  # _rev, inlined for speed
            if 1 <= i <= m - 2:
                step += "(" + str(a * (b % (shift * 10)))[::-1].ljust(width, "0") + ")"
            steps.append(step)
            shift *= 10
        return tuple("+".join(steps))

    def answer_of(self, a: int, b: int) -> tuple[str, ...]:
        """The product, reversed and zero padded to exactly ``digits + digits_b`` digits."""
        return tuple(_rev(a * b, self.digits + self.digits_b))

    def max_cot_length(self) -> int:
        """Every CoT of an N x M task has the same length (each number is zero padded to its width)."""
        return len(self.cot_of(10 ** (self.digits - 1), 10 ** (self.digits_b - 1)))

    def max_answer_length(self) -> int:
        return self.digits + self.digits_b

    def example(self, a: int, b: int, cot: bool = True) -> Example:
        """The example for ``a * b`` (``cot=False``: without chain of thought)."""
        return Example(self.question_of(a, b), self.cot_of(a, b) if cot else (), self.answer_of(a, b))

    def operands(self, ex: Example) -> tuple[int, int]:
        """``(a, b)`` of a well-formed example (the inverse of :meth:`question_of`)."""
        n = self.digits
        return int("".join(ex.question[:n])[::-1]), int("".join(ex.question[n + 1 :])[::-1])

    # ---------------------------------------------------------------- generation
    def sample(self, rng: random.Random) -> Example:
        """Uniform operands with no leading zero."""
        return self.example(rng.randrange(10 ** (self.digits - 1), 10**self.digits),
                            rng.randrange(10 ** (self.digits_b - 1), 10**self.digits_b))

    def generate(self, n: int, seed: int, exclude: Iterable[str] = frozenset()) -> list[Example]:
        space = 81 * 10 ** (self.digits + self.digits_b - 2)  # (9 * 10^(N-1)) * (9 * 10^(M-1))
        if isinstance(n, int) and n > space:
            raise ConfigError(f"{self.describe()} has only {space} distinct problems, {n} requested")
        return super().generate(n, seed, exclude)

    # ---------------------------------------------------------------- file format
    def format_line(self, ex: Example, cot: bool = True) -> str:
        """``INPUT||COT #### ANSWER``; ``INPUT||#### ANSWER`` when ``cot=False`` or the example has no CoT."""
        head = " ".join(ex.question) + "||"
        if cot and ex.cot:
            head += " ".join(ex.cot) + " "
        return head + "#### " + " ".join(ex.answer)

    def parse_line(self, line: str, where: str) -> Example:
        """Parse a Deng line, checking digit counts, the product and (when present) the chain of thought."""
        n, m = self.digits, self.digits_b
        fmt = f"a {self.describe()} line 'INPUT||COT #### ANSWER'"
        parts = line.split("||")
        if len(parts) != 2:
            raise bad_line(where, f"{fmt} with exactly one '||'", line)
        question = tuple(parts[0].split())
        if (
            len(question) != n + 1 + m
            or question[n] != "*"
            or not _DIGIT_SET.issuperset(question[:n])
            or not _DIGIT_SET.issuperset(question[n + 1 :])
        ):
            raise bad_line(where, f"INPUT = {n} digits '*' {m} digits ({self.describe()})", parts[0])
        rest = parts[1].split()
        if rest.count("####") != 1:
            raise bad_line(where, f"{fmt} with exactly one '####'", line)
        sep = rest.index("####")
        cot, answer = tuple(rest[:sep]), tuple(rest[sep + 1 :])
        if len(answer) != n + m or not _DIGIT_SET.issuperset(answer):
            raise bad_line(where, f"ANSWER = {n + m} digits", " ".join(answer))
        ex = Example(question, cot, answer)
        a, b = self.operands(ex)
        if answer != self.answer_of(a, b):
            got = " ".join(answer) + f" (= {int(''.join(answer)[::-1])})"
            raise bad_line(where, f"the product {a} * {b} = {a * b} as ANSWER", got)
        if cot and cot != self.cot_of(a, b):
            expected = " ".join(self.cot_of(a, b))
            raise bad_line(where, f"Deng's chain of thought for {a} * {b} ({expected!r})", " ".join(cot))
        return ex

