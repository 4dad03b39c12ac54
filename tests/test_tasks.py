"""Tests of seqvcr.tasks: byte-exact file formats, generators, validation and errors.

The reference files (Deng et al.'s multiplication files, Feng et al.'s format samples) are looked up in
``$SEQVCR_DATA_DIR`` or a ``shared/data`` folder next to / above the repository; tests that need them are
skipped when they are absent.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest

from seqvcr.errors import ConfigError, DataError
from seqvcr.tasks import (
    TASKS,
    ArithmeticTask,
    Example,
    LISTask,
    MultiplicationTask,
    make_task,
    read_examples,
    write_examples,
)
from seqvcr.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path | None:
    candidates = [
        os.environ.get("SEQVCR_DATA_DIR"),
        REPO / "shared" / "data",
        REPO.parent / "shared" / "data",
    ]
    for c in candidates:
        if c and (Path(c) / "multiplication").is_dir():
            return Path(c)
    return None


DATA = _data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="reference data (shared/data) not available")
DENG_SIZES = [3, 4, 5, 6, 7, 8, 9, 11]  # the reference files (there is no 10x10)
OPS = ("+", "-", "*", "/")


def feng_files(kind: str) -> list[tuple[object, Path, bool]]:
    """(task, path, cot) for every Feng sample *_data.txt file of ``kind`` ("arithmetic" or "LIS")."""
    if DATA is None:
        return []
    out = []
    for d in sorted((DATA / "feng_format_samples").glob(f"feng_{kind}_len*")):
        n = int(re.search(r"len(\d+)$", d.name).group(1))
        task = ArithmeticTask(operators=n) if kind == "arithmetic" else LISTask(length=n)
        for f in sorted(d.glob("*/*_data.txt")):
            out.append((task, f, f.parent.name == "chain"))
    return out


# -------------------------------------------------------------------------------------------- helpers
class ModP:
    """An element of Z/pZ whose operators let Python's own parser evaluate an expression (independent of
    the task's evaluator): precedence and left associativity come from Python."""

    def __init__(self, v: int, p: int) -> None:
        self.v, self.p = v % p, p

    def __add__(self, o: ModP) -> ModP:
        return ModP(self.v + o.v, self.p)

    def __sub__(self, o: ModP) -> ModP:
        return ModP(self.v - o.v, self.p)

    def __mul__(self, o: ModP) -> ModP:
        return ModP(self.v * o.v, self.p)

    def __truediv__(self, o: ModP) -> ModP:
        if o.v == 0:
            raise ZeroDivisionError
        return ModP(self.v * pow(o.v, self.p - 2, self.p), self.p)


def naive_eval(tokens: tuple[str, ...] | list[str], p: int) -> int:
    assert all(t.isdigit() or t in OPS or t in "()" for t in tokens), tokens
    src = " ".join(f"ModP({t}, {p})" if t.isdigit() else t for t in tokens)
    return eval(src, {"ModP": ModP}).v  # noqa: S307 - tokens checked above


def naive_one_step(before: list[str], after: list[str], p: int) -> bool:
    """Brute force: ``after`` is ``before`` with one window 'a op b' or '( a op b )' replaced by its value."""
    for i in range(len(before)):
        for width in (3, 5):
            w = before[i : i + width]
            if len(w) < width:
                continue
            core = w[1:4] if width == 5 else w
            if width == 5 and (w[0], w[4]) != ("(", ")"):
                continue
            if not (core[0].isdigit() and core[2].isdigit() and core[1] in OPS):
                continue
            value = naive_eval(core, p)
            if before[:i] + [str(value)] + before[i + width :] == after:
                return True
    return False


def naive_lis_dp(a: list[int]) -> list[int]:
    d = [1] * len(a)
    for j in range(len(a)):
        for i in range(j):
            if a[i] < a[j]:
                d[j] = max(d[j], d[i] + 1)
    return d


def split_chain(ex: Example) -> list[list[str]]:
    """[question, e1, ..., e_last, answer] of an arithmetic example."""
    steps: list[list[str]] = [[]]
    for t in ex.cot:
        if t == "=":
            steps.append([])
        else:
            steps[-1].append(t)
    middle = steps if ex.cot else []
    return [list(ex.question), *middle, list(ex.answer)]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# -------------------------------------------------------------------------------------------- multiplication
@needs_data
@pytest.mark.parametrize("n", DENG_SIZES)
def test_deng_files_round_trip_byte_for_byte(n: int, tmp_path: Path) -> None:
    task = MultiplicationTask(n)
    for split in ("valid", "test"):
        src = DATA / "multiplication" / f"{n}x{n}" / f"{split}.txt"
        examples = read_examples(task, src)
        assert len(examples) == 1000
        assert all(len(ex.answer) == 2 * n and ex.cot for ex in examples)
        out = tmp_path / f"{split}.txt"
        write_examples(task, out, examples)
        assert out.read_bytes() == src.read_bytes()


def test_deng_readme_example() -> None:
    task = MultiplicationTask(4)
    line = (
        "5 6 3 2 * 7 4 3 4||5 5 5 6 1 + 0 0 6 4 9 0 ( 5 5 1 1 1 1 ) + 0 0 5 9 0 7 0 ( 5 5 6 0 2 8 0 ) "
        "+ 0 0 0 0 6 4 9 0 #### 5 5 6 0 8 2 0 1"
    )
    assert task.format_line(task.example(2365, 4347)) == line
    ex = task.parse_line(line, "x:1")
    assert task.operands(ex) == (2365, 4347)
    assert task.key(ex) == "5 6 3 2 * 7 4 3 4"


def test_mult_direct_form() -> None:
    task = MultiplicationTask(3)
    ex = task.example(615, 940)
    direct = task.format_line(ex, cot=False)
    assert direct == "5 1 6 * 0 4 9||#### 0 0 1 8 7 5"
    parsed = task.parse_line(direct, "x:1")
    assert parsed == Example(ex.question, (), ex.answer)
    assert task.format_line(parsed) == direct  # an example without CoT is written in the direct form


@pytest.mark.parametrize(("na", "nb"), [(1, 1), (2, 5), (5, 2), (3, 3), (20, 20)])
def test_mult_generated_n_by_m(na: int, nb: int) -> None:
    task = MultiplicationTask(na, nb)
    examples = task.generate(50, seed=1)
    for ex in examples:
        a, b = task.operands(ex)
        assert 10 ** (na - 1) <= a < 10**na and 10 ** (nb - 1) <= b < 10**nb  # no leading zero
        assert int("".join(ex.answer)[::-1]) == a * b and len(ex.answer) == na + nb
        # independent reading of the CoT: partial products sum to the product, running sums are right
        text = " ".join(ex.cot)
        groups = re.findall(r"\( ([0-9 ]+) \)", text)
        partials = [int(g.replace(" ", "")[::-1]) for g in re.sub(r"\([0-9 ]+\)", "", text).split("+")]
        assert partials == [a * int(d) * 10**i for i, d in enumerate(str(b)[::-1])]
        assert [int(g.replace(" ", "")[::-1]) for g in groups] == [
            a * (b % 10 ** (i + 1)) for i in range(1, nb - 1)
        ]
        assert task.parse_line(task.format_line(ex), "x:1") == ex


def test_mult_generate_deterministic_distinct_and_excluding(tmp_path: Path) -> None:
    task = MultiplicationTask(3)
    first = task.generate(300, seed=7)
    assert first == task.generate(300, seed=7)
    assert first != task.generate(300, seed=8)
    keys = [task.key(ex) for ex in first]
    assert len(set(keys)) == len(keys)
    # exclusion: 3x3 has 810,000 problems; 10,000 draws hit ~25 of 2,000 excluded keys without it
    excluded = {task.key(ex) for ex in task.generate(2000, seed=99)}
    plain = {task.key(ex) for ex in task.generate(10000, seed=3)}
    assert plain & excluded  # the check below is not vacuous
    kept = {task.key(ex) for ex in task.generate(10000, seed=3, exclude=excluded)}
    assert len(kept) == 10000 and not kept & excluded


@needs_data
def test_mult_exclusion_of_reference_test_file() -> None:
    task = MultiplicationTask(3)
    test_keys = {task.key(ex) for ex in read_examples(task, DATA / "multiplication/3x3/test.txt")}
    assert {task.key(ex) for ex in task.generate(8000, seed=0)} & test_keys  # ~10 hits: not vacuous
    train = task.generate(8000, seed=0, exclude=test_keys)
    assert not {task.key(ex) for ex in train} & test_keys


def test_mult_too_many_requested() -> None:
    with pytest.raises(ConfigError, match="81 distinct"):
        MultiplicationTask(1).generate(82, seed=0)
    assert len(MultiplicationTask(1).generate(81, seed=0)) == 81


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("5 1 6 * 0 4 9||0 0 0 0 + 0 0 6 4 2 ( 0 0 6 4 2 ) + 0 0 5 3 5 5 #### 0 0 1 8 7 6", "product"),
        (
            "5 1 6 * 0 4 9||0 0 0 0 + 0 0 6 4 2 ( 0 0 6 4 3 ) + 0 0 5 3 5 5 #### 0 0 1 8 7 5",
            "chain of thought",
        ),
        ("5 1 6 * 0 4||0 0 0 0 #### 0 0 1 8 7 5", "INPUT"),
        ("5 1 6 * 0 4 9 #### 0 0 1 8 7 5", "'||'"),
        ("5 1 6 * 0 4 9||0 0 1 8 7 5", "'####'"),
        ("5 1 x * 0 4 9||#### 0 0 1 8 7 5", "INPUT"),
        ("5 1 6 * 0 4 9||#### 0 0 1 8 7", "ANSWER"),
        ("", "'||'"),
    ],
)
def test_mult_bad_lines(line: str, why: str, tmp_path: Path) -> None:
    task = MultiplicationTask(3)
    good = task.format_line(task.example(615, 940))
    path = write_lines(tmp_path / "bad.txt", [good, good, line])
    with pytest.raises(DataError) as err:
        read_examples(task, path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:3: expected ") and why in msg and ", got " in msg


# -------------------------------------------------------------------------------------------- Feng samples
@needs_data
@pytest.mark.parametrize("kind", ["arithmetic", "LIS"])
def test_feng_samples_round_trip(kind: str, tmp_path: Path) -> None:
    files = feng_files(kind)
    assert len(files) == 12
    for task, path, cot in files:
        lines = path.read_text(encoding="utf-8").split("\n")
        assert lines[-1] == ""
        for i, line in enumerate(lines[:-1], start=1):
            assert task.format_line(task.parse_line(line, f"{path}:{i}"), cot=cot) == line
        out = tmp_path / "copy.txt"
        write_examples(task, out, read_examples(task, path), cot=cot)
        assert out.read_bytes() == path.read_bytes(), path


@needs_data
@pytest.mark.parametrize("kind", ["arithmetic", "LIS"])
def test_feng_chain_and_decoder_files_agree(kind: str) -> None:
    """Feng writes the same sets twice: chain/ and decoder/ hold the same problems and answers."""
    by_name = {(p.parent.parent.name, p.parent.name, p.name): (t, p) for t, p, _ in feng_files(kind)}
    for (folder, fmt, name), (task, path) in by_name.items():
        if fmt != "chain":
            continue
        chain = read_examples(task, path)
        decoder = read_examples(task, by_name[(folder, "decoder", name)][1])
        assert [ex.question for ex in chain] == [ex.question for ex in decoder]
        answers = [ex.answer for ex in chain]
        ans_file = path.with_name("test_ans.txt")
        if name == "test_data.txt" and ans_file.exists():  # arithmetic: question-only lines + test_ans.txt
            assert all(a == () for a in answers)
            answers = [(line,) for line in ans_file.read_text().split()]
        assert answers == [ex.answer for ex in decoder]
        assert all(ex.cot == () for ex in decoder)


# -------------------------------------------------------------------------------------------- arithmetic
@pytest.mark.parametrize(("ops", "under"), [(4, False), (5, False), (6, False), (6, True), (1, False)])
def test_arith_generated_chains_are_valid(ops: int, under: bool) -> None:
    task = ArithmeticTask(operators=ops, under=under)
    examples = task.generate(150, seed=5)
    for ex in examples:
        chain = split_chain(ex)
        n_ops = [sum(t in OPS for t in expr) for expr in chain]
        assert n_ops == list(range(n_ops[0], -1, -1))  # one operation per step
        assert n_ops[0] == ops or (under and 1 <= n_ops[0] <= ops)
        values = {naive_eval(expr, 11) for expr in chain}
        assert values == {int(ex.answer[0])}
        for before, after in zip(chain, chain[1:]):
            assert naive_one_step(before, after, 11), (before, after)
        assert task.evaluate(ex.question) == (int(ex.answer[0]), n_ops[0])
        line = task.format_line(ex)
        assert line.endswith(" ") and task.parse_line(line, "x:1") == ex
        direct = task.format_line(ex, cot=False)
        assert direct == " ".join(ex.question) + " = " + ex.answer[0]
        assert task.parse_line(direct, "x:1") == Example(ex.question, (), ex.answer)


def test_arith_brackets_only_where_needed() -> None:
    """Every bracket pair of a generated expression is one that precedence requires: after '/', or around
    a top-level + / - that follows * or - or precedes * or /."""
    task = ArithmeticTask(operators=6)
    for ex in task.generate(300, seed=11):
        q = list(ex.question)
        for i, t in enumerate(q):
            if t != "(":
                continue
            depth, j = 0, i
            while True:
                depth += {"(": 1, ")": -1}.get(q[j], 0)
                if depth == 0:
                    break
                j += 1
            inner = q[i + 1 : j]
            top = [
                t2 for k, t2 in enumerate(inner) if t2 in OPS and inner[:k].count("(") == inner[:k].count(")")
            ]
            prev = q[i - 1] if i > 0 else None
            nxt = q[j + 1] if j + 1 < len(q) else None
            # a bracket is needed after '/', or around + / - next to * / or after -
            assert prev == "/" or (
                any(o in "+-" for o in top) and (prev in ("*", "-") or nxt in ("*", "/"))
            ), " ".join(q)


def test_arith_evaluator_agrees_with_python() -> None:
    task = ArithmeticTask(operators=6, modulus=13)
    for ex in task.generate(300, seed=2):
        assert task.evaluate(ex.question)[0] == naive_eval(ex.question, 13)
    assert task.evaluate(["2", "-", "3", "-", "4"])[0] == (2 - 3 - 4) % 13
    assert task.evaluate(["12", "/", "4", "/", "3"])[0] == 1
    assert task.evaluate(["1", "+", "2", "*", "3"]) == (7, 2)


def test_arith_under_distribution() -> None:
    """With ``under`` the operator count k is drawn with probability k / (1 + ... + L)."""
    task = ArithmeticTask(operators=4, modulus=101, under=True)  # large p: duplicates negligible
    counts = Counter(sum(t in OPS for t in ex.question) for ex in task.generate(4000, seed=0))
    for k in range(1, 5):
        assert abs(counts[k] / 4000 - k / 10) < 0.03, counts
    plain = ArithmeticTask(operators=4)
    assert {sum(t in OPS for t in ex.question) for ex in plain.generate(200, seed=0)} == {4}


def test_arith_deterministic_and_exclusion() -> None:
    task = ArithmeticTask(operators=4)
    a = task.generate(500, seed=1)
    assert a == task.generate(500, seed=1) and a != task.generate(500, seed=2)
    keys = {task.key(ex) for ex in a}
    assert len(keys) == 500
    b = task.generate(500, seed=2, exclude=keys)
    assert not {task.key(ex) for ex in b} & keys


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("1 + 2 * 3 = 1 + 6 = 8 ", "value"),  # wrong answer
        ("1 + 2 * 3 = 7 + 0 = 7 ", "exactly one operation"),  # not a step
        ("1 * 2 + 3 = 1 * 5 = 5 ", "exactly one operation"),  # right value by coincidence, wrong order
        ("1 + 2 + 3 * 4 = 6 = 4 ", "exactly one operation"),  # two operations at once
        ("1 / 0 = 0", "division by zero"),
        ("1 + 11 = 1", "numbers 0..10"),
        ("1 + = 1", "a number"),
        ("( 1 + 2 = 3", "')'"),
        ("1 + 2 3 = 3", "an operator"),
        ("1 + 2 = 3 4", "one number"),
        ("1 + 2 = 3 = ", "answer"),
        ("1 + 1 + 1 + 1 + 1 + 1 = 6", "1..4 operators"),
        ("1 + 2", "EXPR = "),
        ("", "EXPR = "),
    ],
)
def test_arith_bad_lines(line: str, why: str, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.txt", ["1 + 2 = 3", line])
    with pytest.raises(DataError) as err:
        read_examples(ArithmeticTask(operators=4), path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:2: ") and why in msg


def test_arith_question_only_line() -> None:
    task = ArithmeticTask(operators=4)
    ex = task.parse_line("( 1 + 2 ) * 3 = ", "x:1")
    assert ex == Example(("(", "1", "+", "2", ")", "*", "3"), (), ())
    assert task.format_line(ex) == "( 1 + 2 ) * 3 = "


# -------------------------------------------------------------------------------------------- LIS
@pytest.mark.parametrize("length", [3, 50, 100])
def test_lis_generated_examples(length: int) -> None:
    task = LISTask(length=length)
    examples = task.generate(100, seed=3)
    for ex in examples:
        values = [int(v) for v in ex.question]
        assert len(values) == length and all(length + 1 <= v <= 249 for v in values)
        dp = naive_lis_dp(values)
        assert [int(d) for d in ex.cot] == dp and ex.answer == (str(max(dp)),)
        assert task.parse_line(task.format_line(ex), "x:1") == ex
        assert task.format_line(ex, cot=False) == " ".join(ex.question) + " <sep> " + ex.answer[0]
    assert examples == task.generate(100, seed=3) and examples != task.generate(100, seed=4)
    keys = {task.key(ex) for ex in examples}
    assert len(keys) == 100
    assert not keys & {task.key(ex) for ex in task.generate(100, seed=4, exclude=keys)}


def test_lis_planted_runs_make_long_subsequences() -> None:
    """The planted runs (total length uniform in [3, n]) give answers spread far above random sequences'."""
    answers = [int(ex.answer[0]) for ex in LISTask(length=50).generate(300, seed=0)]
    assert min(answers) >= 3 and max(answers) > 30 and len(set(answers)) > 15


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("60 70 55 <sep> 1 2 2 <sep> 2 ", "DP array"),
        ("60 70 55 <sep> 1 2 1 <sep> 3 ", "LIS length 2"),
        ("60 70 55 <sep> 3", "LIS length 2"),
        ("60 70 <sep> 2", "3 numbers"),
        ("60 70 250 <sep> 3", "integers 0..249"),
        ("60 70 x <sep> 3", "integers 0..249"),
        ("60 70 55 2", "<sep>"),
        ("60 70 55 <sep> 1 2 1 <sep> 2 <sep> 2", "<sep>"),
    ],
)
def test_lis_bad_lines(line: str, why: str, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.txt", ["60 70 55 <sep> 1 2 1 <sep> 2 ", line])
    with pytest.raises(DataError) as err:
        read_examples(LISTask(length=3, max_value=249), path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:2: expected ") and why in msg


# -------------------------------------------------------------------------------------------- common API
@pytest.mark.parametrize(
    "task", [MultiplicationTask(4), MultiplicationTask(2, 3), ArithmeticTask(5, under=True), LISTask(80)]
)
def test_vocabulary_options_and_separators(task) -> None:
    vocab = task.vocabulary()
    assert len(vocab) == len(set(vocab))
    assert task.question_end in vocab and task.cot_end in vocab
    tok = Tokenizer(vocab)
    for ex in task.generate(50, seed=0):
        tok.encode([*ex.question, task.question_end, *ex.cot, task.cot_end, *ex.answer])
    rebuilt = make_task(task.name, **task.options())
    assert rebuilt == task and hash(rebuilt) == hash(task) and repr(rebuilt) == repr(task)
    assert rebuilt.describe() == task.describe() and task.name in TASKS


def test_make_task_errors() -> None:
    assert make_task("mult", digits=5).describe() == "mult 5x5"
    assert make_task("arith").options() == {"operators": 4, "modulus": 11, "under": False}
    with pytest.raises(ConfigError, match="allowed: mult, arith, lis"):
        make_task("multiply")
    with pytest.raises(ConfigError, match="unknown option.*digitz.*allowed: digits, digits_b"):
        make_task("mult", digitz=3)
    bad = [
        ("mult", {"digits": 0}),
        ("mult", {"digits": 21}),
        ("mult", {"digits": True}),
        ("arith", {"modulus": 12}),
        ("arith", {"under": "yes"}),
        ("arith", {"operators": 0}),
        ("lis", {"length": 100, "max_value": 150}),
        ("lis", {"length": 2}),
    ]
    for name, options in bad:
        with pytest.raises(ConfigError):
            make_task(name, **options)


def test_read_examples_file_errors(tmp_path: Path) -> None:
    task = MultiplicationTask(3)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match=re.escape(f"{empty}: file is empty")):
        read_examples(task, empty)
    missing = tmp_path / "missing.txt"
    with pytest.raises(DataError, match=re.escape(f"{missing}: no such file")):
        read_examples(task, missing)
    with pytest.raises(DataError, match="is a directory"):
        read_examples(task, tmp_path)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="not UTF-8"):
        read_examples(task, binary)


def test_write_examples_atomic_and_crlf(tmp_path: Path) -> None:
    task = LISTask(length=5, max_value=20)
    examples = task.generate(10, seed=0)
    path = tmp_path / "sub" / "data.txt"
    write_examples(task, path, examples)
    write_examples(task, path, examples[:3], cot=False)  # replaces the old file
    assert os.listdir(path.parent) == ["data.txt"]  # no temporary file left behind
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 3
    assert read_examples(task, path) == [Example(ex.question, (), ex.answer) for ex in examples[:3]]
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b"".join(task.format_line(ex).encode() + b"\r\n" for ex in examples))
    assert read_examples(task, crlf) == examples

    class Boom(Exception):
        pass

    def failing():
        yield examples[0]
        raise Boom

    with pytest.raises(Boom):
        write_examples(task, path, failing())
    assert os.listdir(path.parent) == ["data.txt"] and path.read_text() == text  # old file intact


def test_example_is_hashable_and_normalises_lists() -> None:
    ex = Example(["1", "2"], [], ["3"])
    assert ex == Example(("1", "2"), (), ("3",)) and isinstance(ex.question, tuple)
    assert len({ex, Example(("1", "2"), (), ("3",))}) == 1


@pytest.mark.parametrize("n", [3, 4, 5])
@pytest.mark.parametrize("split", ["valid", "test"])
def test_shipped_reference_files_round_trip_byte_for_byte(tmp_path: Path, n: int, split: str) -> None:
    """The copies shipped with the package (``ref:``) need no shared data folder: always tested."""
    from seqvcr.datafiles import resolve_data_path

    src = resolve_data_path(f"ref:mult/{n}x{n}/{split}.txt")
    task = make_task("mult", digits=n)
    examples = read_examples(task, src)
    assert len(examples) == 1000
    out = tmp_path / "copy.txt"
    write_examples(task, out, examples)
    assert out.read_bytes() == src.read_bytes()


def test_data_flags_are_the_tasks_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``seqvcr data`` takes each task's own options with the task's defaults, and refuses another's."""
    from seqvcr import config as C
    from seqvcr.cli import main
    from seqvcr.tasks import task_options

    assert main(["data", "lis", "--length", "6", "--max-value", "20", "--train", "3", "--out",
                 str(tmp_path / "lis")]) == 0
    lines = (tmp_path / "lis" / "train.txt").read_text().splitlines()
    assert len(lines) == 3 and max(int(t) for t in lines[0].split("<sep>")[0].split()) <= 20
    assert main(["data", "mult", "--length", "6", "--train", "3", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "--length is not an option of task mult; its options: --digits, --digits-b" in err
    # the config's task keys default to what the tasks declare
    defaults = C.TaskConfig()
    for name in TASKS:
        for key, default in C.TaskConfig(name=name).task_options().items():
            assert task_options(name)[key] == default == getattr(defaults, key)


def test_the_config_task_keys_are_made_from_the_registered_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """``TaskConfig``'s task keys are the tasks' constructor options (``tasks.config_options``), in the
    order the published configs and run ids have them, with their types and defaults; a task's
    ``DATA_ONLY_OPTIONS`` are no keys, and a task registered in ``tasks/`` brings its own."""
    import dataclasses
    import typing

    from seqvcr import config as C
    from seqvcr import tasks as T

    keys = ["digits", "digits_b", "operators", "modulus", "under", "length"]
    assert list(T.config_options()) == keys and "max_value" in T.task_options("lis")
    assert [f.name for f in dataclasses.fields(C.TaskConfig)] == [
        "name", *keys, "train_size", "valid_size", "train_file", "valid_file", "test_file", "data_seed"]
    hints = typing.get_type_hints(C.TaskConfig)
    assert hints["digits_b"] == int | None and hints["under"] is bool
    for key, (hint, default) in T.config_options().items():
        assert hints[key] == hint and getattr(C.TaskConfig(), key) == default
    for key, owners in T.option_owners().items():  # an option several tasks take is one key
        assert len({(T.option_type(n, key), T.task_options(n)[key]) for n in owners}) == 1, key

    class Toy(MultiplicationTask):
        name = "toy"
        DATA_ONLY_OPTIONS = ("hidden",)

        def __init__(self, digits: int = 4, width: int | None = 3, hidden: int = 0) -> None:
            super().__init__(digits)

    monkeypatch.setitem(T._CLASSES, "toy", Toy)
    monkeypatch.setattr(T, "TASKS", (*T.TASKS, "toy"))
    plain = type("Made", (), {"__annotations__": {"name": str, "seed": int}, "name": "toy", "seed": 1})
    made = dataclasses.dataclass(C._with_task_options(plain))
    assert [f.name for f in dataclasses.fields(made)] == ["name", *keys, "width", "seed"]
    assert typing.get_type_hints(made)["width"] == int | None and made().width == 3
