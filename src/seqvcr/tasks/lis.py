"""Longest increasing subsequence, in the format of Feng et al. (2023).

Question: n integers; chain of thought: the dynamic-programming array d, where d[i] is the length of the
longest strictly increasing subsequence ending at position i; answer: max d. File lines (exactly Feng's)::

    chain : "a1 ... an <sep> d1 ... dn <sep> answer "   (ends with a space)
    direct: "a1 ... an <sep> answer"

Feng et al.'s generator, re-implemented here: values lie in ``[n+1, max_value]`` (Feng: number_range 250,
so ``max_value`` 249; the format samples for n = 50, 80, 100 span exactly 51..249, 81..249, 101..249).
Plant 1-3 strictly increasing runs (sorted distinct values) of random total length in ``[3, n]`` at random
sorted positions, fill the other positions uniformly. Every integer 0..max_value is one token (the DP
values 1..n and the values share them).
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

from seqvcr.errors import ConfigError
from seqvcr.tasks.base import Example, Task, bad_line, check_int

SEP = "<sep>"
MAX_LENGTH = 1000
MAX_VALUE = 10_000


def lis_dp(values: Sequence[int]) -> list[int]:
    """d[i] = length of the longest strictly increasing subsequence ending at i, in O(n log n): ``tails[k]``
    is the smallest last value of one of length k+1 so far, so ``x`` extends the runs of its tails below."""
    tails: list[int] = []
    out: list[int] = []
    push, record = tails.append, out.append
    for x in values:
        k = bisect_left(tails, x)
        if k == len(tails):
            push(x)
        else:
            tails[k] = x
        record(k + 1)
    return out


def _distinct(uniform: Callable[[], float], m: int, k: int) -> list[int]:
    """``k`` distinct uniform integers in ``[0, m)`` (partial Fisher-Yates shuffle driven by ``uniform``)."""
    pool = list(range(m))
    for i in range(k):
        j = i + int(uniform() * (m - i))
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


class LISTask(Task):
    """Feng et al.'s LIS task: sequences of ``length`` integers in ``[length+1, max_value]``.

    Args:
        length: n, the sequence length (Feng: 50, 80, 100).
        max_value: the largest value (Feng: 249). Must be at least ``2 * length`` so that a planted run of
            up to n distinct values fits in ``[n+1, max_value]``.
    """

    name = "lis"
    question_end = SEP
    cot_end = SEP
    OPTION_HELP = {"length": "sequence length", "max_value": "largest number in a sequence (>= 2 * length)"}
    DATA_ONLY_OPTIONS = ("max_value",)  # a config key would change the ids of every published run

    def __init__(self, length: int = 50, max_value: int = 249) -> None:
        self.length = check_int("length", length, 3, MAX_LENGTH)
        self.max_value = check_int("max_value", max_value, 6, MAX_VALUE)
        if max_value < 2 * length:
            raise ConfigError(
                f"max_value must be >= 2 * length = {2 * length} (values lie in [length+1, max_value] and a "
                f"planted increasing run can have {length} distinct values), got {max_value}"
            )
        self._strings: tuple[str, ...] = tuple(str(i) for i in range(max_value + 1))
        self._index: dict[str, int] = {s: i for i, s in enumerate(self._strings)}

    # ---------------------------------------------------------------- metadata
    def options(self) -> dict[str, Any]:
        return {"length": self.length, "max_value": self.max_value}

    def max_cot_length(self) -> int:
        """The DP array: one value per input number."""
        return self.length

    def max_answer_length(self) -> int:
        return 1

    def describe(self) -> str:
        return f"lis n={self.length} values {self.length + 1}..{self.max_value}"

    def vocabulary(self) -> list[str]:
        return [*self._strings, SEP]

    # ---------------------------------------------------------------- generation
    def sample(self, rng: random.Random) -> Example:
        return self.example(self.sequence(rng))

    def sequence(self, rng: random.Random) -> list[int]:
        """One sequence from Feng et al.'s distribution (see module doc)."""
        n, lo, hi = self.length, self.length + 1, self.max_value
        span = hi - lo + 1
        uniform = rng.random
        runs = rng.randint(1, 3)
        total = rng.randint(3, n)
        if runs == 1:
            sizes = [total]
        elif runs == 2:
            first = rng.randint(1, total // 2 + 1)
            sizes = [first, total - first]
        else:
            first = rng.randint(1, total // 3 + 1)
            second = rng.randint(1, (total - first) // 2 + 1)
            sizes = [first, second, total - first - second]
        planted: list[int] = []
        for size in sizes:
            planted.extend(sorted(lo + v for v in _distinct(uniform, span, size)))
        # int(random() * m) instead of randrange(m): same distribution up to a bias below 2^-40 for these
        # small m, and several times faster, which matters for million-example training sets.
        seq = [lo + int(uniform() * span) for _ in range(n)]
        for pos, value in zip(sorted(_distinct(uniform, n, total)), planted):
            seq[pos] = value
        return seq

    def example(self, values: Sequence[int]) -> Example:
        """The example of a sequence: question = the values, CoT = the DP array, answer = its maximum."""
        get = self._strings.__getitem__
        dp = lis_dp(values)
        return Example(tuple(map(get, values)), tuple(map(get, dp)), (get(max(dp)),))

    # ---------------------------------------------------------------- file format
    def format_line(self, ex: Example, cot: bool = True) -> str:
        """``a1 ... an <sep> d1 ... dn <sep> answer `` or, without CoT, ``a1 ... an <sep> answer``."""
        if cot and ex.cot:
            return " ".join((*ex.question, SEP, *ex.cot, SEP, *ex.answer)) + " "
        return " ".join((*ex.question, SEP, *ex.answer))

    def parse_line(self, line: str, where: str) -> Example:
        """Parse a chain or direct line; validate the length, the value range, the DP array and the answer."""
        tokens = line.split()
        seps = [i for i, t in enumerate(tokens) if t == SEP]
        if len(seps) not in (1, 2):
            raise bad_line(
                where, f"an {self.describe()} line 'a1 ... an <sep> [d1 ... dn <sep>] answer'", line
            )
        question = tuple(tokens[: seps[0]])
        cot = tuple(tokens[seps[0] + 1 : seps[1]]) if len(seps) == 2 else ()
        answer = tuple(tokens[seps[-1] + 1 :])
        if len(question) != self.length:
            raise bad_line(where, f"{self.length} numbers before '<sep>'", f"{len(question)} tokens")
        index = self._index
        for tok in question:
            if tok not in index:
                raise bad_line(where, f"integers 0..{self.max_value} in the sequence", tok)
        dp = lis_dp([index[t] for t in question])
        if len(seps) == 2:
            expected = tuple(self._strings[d] for d in dp)
            if cot != expected:
                raise bad_line(where, f"the DP array {' '.join(expected)!r}", " ".join(cot))
        best = self._strings[max(dp)]
        if answer != (best,):
            raise bad_line(where, f"the LIS length {best} as the answer", " ".join(answer))
        return Example(question, cot, answer)
