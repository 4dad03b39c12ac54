"""Arithmetic expressions modulo a prime p, in the format of Feng et al. (2023).

An expression uses the numbers 0..p-1 (each one token), ``+ - * /`` and brackets, with the usual
precedence and left associativity; ``a / b`` is ``a`` times the modular inverse of ``b``. Feng et al.'s
generator, re-implemented here:

1. start from one uniform number (the answer);
2. L times, pick a uniform number token x and replace it by ``n1 op n2`` whose value is x: op and n1
   uniform, n2 solved (impossible or degenerate draws are redrawn), bracketed only where precedence
   requires it (after ``/``; ``+``/``-`` after ``*`` or ``-`` or before ``*``/``/``).

The chain of thought is that history in reverse: every step evaluates the last inserted operation, so
``expr = e1 = ... = answer`` evaluates exactly one operation per ``=``. File lines (exactly Feng's)::

    chain : "10 * ( 5 + 5 * 0 + 9 ) = 10 * ( 5 + 0 + 9 ) = 10 * ( 5 + 9 ) = 10 * 3 = 8 "
    direct: "10 * ( 5 + 5 * 0 + 9 ) = 8"

(the chain line ends with a space, the direct line does not).

An :class:`Example` holds ``question`` = the expression, ``cot`` = ``e1 = e2 = ... = e_last`` (the
intermediate expressions joined by ``=``, without the answer; ``()`` for a single operator) and
``answer`` = the value. Feng's chain-format *test* files hold only ``expr = `` (answers in
``test_ans.txt``); such a line parses to an example with an empty answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate
from typing import Any

from seqvcr.errors import ConfigError, DataError
from seqvcr.tasks.base import Example, Task, bad_line, check_int

OPERATORS: tuple[str, ...] = ("+", "-", "*", "/")
BRACKETS: tuple[str, ...] = ("(", ")")
MAX_OPERATORS = 64
MAX_MODULUS = 1000


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def needs_brackets(prev: str | None, nxt: str | None, op: str) -> bool:
    """Whether ``n1 op n2`` written between the tokens ``prev`` and ``nxt`` needs brackets to be evaluated
    as a unit (Feng et al.'s rule, which is exactly what precedence and left associativity require in a
    field): always after ``/``; for ``+``/``-`` also after ``*`` or ``-`` and before ``*`` or ``/``."""
    if prev == "/":
        return True
    return op in ("+", "-") and (prev in ("*", "-") or nxt in ("*", "/"))


class ArithmeticTask(Task):
    """Feng et al.'s arithmetic task: ``operators`` operations modulo the prime ``modulus``.

    Args:
        operators: L, the number of operators of every expression (Feng: 4, 5, 6).
        modulus: the prime p (Feng: 11); numbers 0..p-1 are single tokens.
        under: Feng's ``--under`` training mix: each example has k = 1..L operators with probability
            proportional to k (use it for training sets only; test sets have exactly L operators).
    """

    name = "arith"
    question_end = "="
    cot_end = "="
    OPTION_HELP = {"operators": "number of operators", "modulus": "prime modulus",
                   "under": "the training set mixes in fewer operators, 1:2:...:L (Feng et al.); "
                            "valid and test sets keep exactly the given number"}

    def __init__(self, operators: int = 4, modulus: int = 11, under: bool = False) -> None:
        self.operators = check_int("operators", operators, 1, MAX_OPERATORS)
        self.modulus = check_int("modulus", modulus, 2, MAX_MODULUS)
        if not _is_prime(modulus):
            raise ConfigError(f"modulus must be a prime (division is by the modular inverse), got {modulus}")
        if not isinstance(under, bool):
            raise ConfigError(f"under must be true or false, got {under!r}")
        self.under = under
        p = self.modulus
        self._numbers: tuple[str, ...] = tuple(str(i) for i in range(p))
        self._value: dict[str, int] = {s: i for i, s in enumerate(self._numbers)}
        self._inverse: list[int] = [0] + [pow(i, -1, p) for i in range(1, p)]
        self._cum_weights = list(accumulate(range(1, self.operators + 1)))

    # ---------------------------------------------------------------- metadata
    def options(self) -> dict[str, Any]:
        return {"operators": self.operators, "modulus": self.modulus, "under": self.under}

    def describe(self) -> str:
        return f"arith {self.operators} ops mod {self.modulus}" + (" (under)" if self.under else "")

    def vocabulary(self) -> list[str]:
        return [*self._numbers, *OPERATORS, *BRACKETS, "="]

    # ---------------------------------------------------------------- arithmetic
    def apply(self, a: int, op: str, b: int) -> int:
        """``a op b`` mod p. Raises ZeroDivisionError for ``/ 0``."""
        p = self.modulus
        if op == "+":
            return (a + b) % p
        if op == "-":
            return (a - b) % p
        if op == "*":
            return a * b % p
        if b == 0:
            raise ZeroDivisionError("division by zero")
        return a * self._inverse[b] % p

    def evaluate(self, tokens: Sequence[str], where: str = "") -> tuple[int, int]:
        """``(value mod p, number of operators)`` of an expression, with precedence and left associativity.

        Raises:
            DataError: the tokens are not a well-formed expression, or it divides by zero mod p.
        """
        prefix = f"{where}: " if where else ""
        n = len(tokens)
        pos = 0
        count = 0

        def fail(expected: str) -> DataError:
            got = repr(tokens[pos]) if pos < n else "the end of the expression"
            return DataError(f"{prefix}expected {expected}, got {got} in {' '.join(tokens)!r}")

        def factor() -> int:
            nonlocal pos
            if pos < n:
                tok = tokens[pos]
                value = self._value.get(tok)
                if value is not None:
                    pos += 1
                    return value
                if tok == "(":
                    pos += 1
                    value = expression()
                    if pos >= n or tokens[pos] != ")":
                        raise fail("')'")
                    pos += 1
                    return value
            raise fail(f"a number 0..{self.modulus - 1} or '('")

        def chain(operand: Callable[[], int], ops: tuple[str, str]) -> int:
            """``operand (op operand)*`` for the operators ``ops`` of one precedence, left to right."""
            nonlocal pos, count
            value = operand()
            while pos < n and tokens[pos] in ops:
                op = tokens[pos]
                pos += 1
                count += 1
                right = operand()
                if op == "/" and right == 0:
                    raise DataError(f"{prefix}division by zero (mod {self.modulus}) in {' '.join(tokens)!r}")
                value = self.apply(value, op, right)
            return value

        def term() -> int:
            return chain(factor, ("*", "/"))

        def expression() -> int:
            return chain(term, ("+", "-"))

        value = expression()
        if pos != n:
            raise fail("an operator or the end of the expression")
        return value, count

    def is_step(self, before: Sequence[str], after: Sequence[str]) -> bool:
        """Whether ``after`` is ``before`` with exactly one operation evaluated.

        The evaluated operation is a window ``n1 op n2`` (or ``( n1 op n2 )``, brackets dropped) replaced
        by its value; an unbracketed window must be a unit in its context (no brackets needed, see
        :func:`needs_brackets`), so the step preserves the value for every assignment of the numbers,
        not by coincidence mod p.
        """
        drop = len(before) - len(after)
        if drop not in (2, 4):
            return False
        width = drop + 1
        limit = len(after)
        pre = 0
        while pre < limit and before[pre] == after[pre]:
            pre += 1
        suf = 0
        while suf < limit and before[-1 - suf] == after[-1 - suf]:
            suf += 1
        for i in range(max(0, len(before) - width - suf), min(pre, limit - 1) + 1):
            window = before[i : i + width]
            prev = before[i - 1] if i > 0 else None
            nxt = before[i + width] if i + width < len(before) else None
            if width == 5:
                if window[0] != "(" or window[4] != ")":
                    continue
                core = window[1:4]
            else:
                core = window
                if needs_brackets(prev, nxt, core[1]) or (prev == "(" and nxt == ")"):
                    continue
            a, op, b = self._value.get(core[0]), core[1], self._value.get(core[2])
            if a is None or b is None or op not in OPERATORS or (op == "/" and b == 0):
                continue
            if after[i] == self._numbers[self.apply(a, op, b)] and list(before[i + width :]) == list(
                after[i + 1 :]
            ):
                return True
        return False

    # ---------------------------------------------------------------- generation
    def _split(self, x: int, rng: random.Random) -> tuple[int, str, int]:
        """A uniform ``(n1, op, n2)`` with ``n1 op n2 == x`` (Feng's rejection rules)."""
        p = self.modulus
        inverse = self._inverse
        while True:
            op = OPERATORS[rng.randrange(4)]
            n1 = rng.randrange(p)
            if op == "+":
                return n1, op, (x - n1) % p
            if op == "-":
                return n1, op, (n1 - x) % p
            if op == "*":
                if n1 == 0:
                    if x != 0:
                        continue  # 0 * n2 cannot be x
                    return n1, op, rng.randrange(p)  # 0 * anything = 0
                return n1, op, x * inverse[n1] % p
            # op == "/": n1 / n2 == x with n2 != 0
            if x == 0 and n1 == 0:
                n2 = rng.randrange(p)
                if n2 == 0:
                    continue
                return n1, op, n2
            if x == 0 or n1 == 0:
                continue
            return n1, op, n1 * inverse[x] % p

    def history(self, k: int, rng: random.Random) -> list[list[str]]:
        """Feng's generation history with ``k`` operators: ``[answer], ..., expression`` (k+1 token lists)."""
        numbers = self._numbers
        tokens = [numbers[rng.randrange(self.modulus)]]
        out = [tokens]
        for _ in range(k):
            positions = [i for i, t in enumerate(tokens) if t in self._value]
            i = positions[rng.randrange(len(positions))]
            n1, op, n2 = self._split(self._value[tokens[i]], rng)
            sub = [numbers[n1], op, numbers[n2]]
            prev = tokens[i - 1] if i > 0 else None
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if needs_brackets(prev, nxt, op):
                sub = ["(", *sub, ")"]
            tokens = tokens[:i] + sub + tokens[i + 1 :]
            out.append(tokens)
        return out

    def for_evaluation(self) -> ArithmeticTask:
        """Without ``under``: Feng et al.'s validation and test sets have exactly L operators."""
        if not self.under:
            return self
        return ArithmeticTask(self.operators, self.modulus, under=False)

    def max_cot_length(self) -> int:
        """Expressions with L-1, ..., 1 operators joined by ``=``: an expression with k operators has at
        most 1 + 4k tokens (each operator inserts ``n1 op n2`` for a number, bracketed at worst)."""
        L = self.operators
        return sum(1 + 4 * k for k in range(1, L)) + max(0, L - 2)

    def max_answer_length(self) -> int:
        return 1

    def difficulty_of(self, examples: Iterable[Example]) -> str | None:
        """``"expressions with 3 operators"`` (or ``1..4``) unless every expression has exactly L."""
        ops = set(OPERATORS)
        counts = {sum(t in ops for t in ex.question) for ex in examples}
        if not counts or counts == {self.operators}:
            return None
        lo, hi = min(counts), max(counts)
        span = f"{lo}" if lo == hi else f"{lo}..{hi}"
        return f"expressions with {span} operator{'s' if hi > 1 else ''}"

    def sample(self, rng: random.Random) -> Example:
        """L operators, or with ``under`` a k in 1..L drawn with probability proportional to k (a repeated
        expression is redrawn whole, as in Feng's set-based de-duplication, so the few hundred one-operator
        expressions run out gracefully). The CoT is the history's middle, reversed, joined by ``=``."""
        k = self.operators
        if self.under:
            k = rng.choices(range(1, self.operators + 1), cum_weights=self._cum_weights)[0]
        history = self.history(k, rng)  # [answer], e_k, ..., e_1, expression
        cot = " = ".join(" ".join(expr) for expr in reversed(history[1:-1])).split()  # no token holds a space
        return Example(tuple(history[-1]), tuple(cot), tuple(history[0]))

    # ---------------------------------------------------------------- file format
    def format_line(self, ex: Example, cot: bool = True) -> str:
        """Feng's chain line ``expr = e1 = ... = answer `` (trailing space) or direct ``expr = answer``.

        With ``cot=True`` an example without CoT is written ``expr = answer `` (Feng's chain line of a
        one-operator expression); it reads back as the same example.
        """
        if not cot:
            return " ".join((*ex.question, "=", *ex.answer))
        tokens = [*ex.question, "="]
        if ex.cot:
            tokens += [*ex.cot, "="]
        tokens += ex.answer
        return " ".join(tokens) + " "

    def parse_line(self, line: str, where: str) -> Example:
        """Parse a chain or direct line; validate the syntax, the operator count, every step and the value."""
        tokens = line.split()
        fmt = f"an {self.describe()} line 'EXPR = ... = ANSWER'"
        if "=" not in tokens:
            raise bad_line(where, fmt, line)
        for tok in tokens:
            if tok not in self._value and tok not in OPERATORS and tok not in BRACKETS and tok != "=":
                raise bad_line(where, f"numbers 0..{self.modulus - 1}, + - * / ( ) and '='", tok)
        segments = [segment.split() for segment in " ".join(tokens).split("=")]  # "=" is a token of its own
        question, middle, answer = segments[0], segments[1:-1], segments[-1]
        value, count = self.evaluate(question, where)
        if not 1 <= count <= self.operators:
            raise bad_line(where, f"an expression with 1..{self.operators} operators", " ".join(question))
        if not answer:
            if middle:
                raise bad_line(where, "an answer after the last '='", line)
            return Example(tuple(question), (), ())  # Feng's chain test format: question only
        if len(answer) != 1 or answer[0] not in self._value:
            raise bad_line(where, f"one number 0..{self.modulus - 1} as the answer", " ".join(answer))
        if self._value[answer[0]] != value:
            expected = f"the value {value} (mod {self.modulus}) of {' '.join(question)!r}"
            raise bad_line(where, expected, answer[0])
        if middle:
            chain = [question, *middle, answer]
            for j in range(1, len(chain)):
                if not chain[j]:
                    raise bad_line(where, "an expression between two '='", line)
                if not self.is_step(chain[j - 1], chain[j]):
                    expected = f"step {j} to evaluate exactly one operation of {' '.join(chain[j - 1])!r}"
                    raise bad_line(where, expected, " ".join(chain[j]))
        cot = tokens[len(question) + 1 : len(tokens) - len(answer) - 1]  # between the first and the last "="
        return Example(tuple(question), tuple(cot), tuple(answer))
