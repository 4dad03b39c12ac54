"""The scores seqvcr reports against answers known by construction: hand-made outputs scored by
``seqvcr.evaluation.score``, a scripted model run through the whole ``seqvcr eval`` command, and the
oracles of ``tests/oracles.py`` checked on the same hand-made cases."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from conftest import micro_overrides
from oracles import oracle_scores

from seqvcr import config as C
from seqvcr import training
from seqvcr.cli import main
from seqvcr.evaluation import score
from seqvcr.model import GPT
from seqvcr.sequences import SequenceFormat
from seqvcr.tasks import Task, make_task

# ---------------------------------------------------------------------------------------------- by hand

# 2 x 2 multiplication answered directly (Deng's format: digits least significant first). Each output
# is what the model produced; the expected scores below are counted by hand.
MULT_LINES = [
    "1 2 * 3 4||#### 3 0 9 0",  # 21 * 43 = 903
    "5 2 * 3 7||#### 5 2 8 1",  # 25 * 73 = 1825
    "7 2 * 2 8||#### 4 1 2 2",  # 27 * 82 = 2214
    "8 1 * 2 4||#### 6 5 7 0",  # 18 * 42 = 756
    "9 9 * 9 9||#### 1 0 8 9",  # 99 * 99 = 9801
    "0 1 * 0 1||#### 0 0 1 0",  # 10 * 10 = 100
]
MULT_OUTPUTS = [
    "3 0 9 0 <eos>",  # right
    "5 2 <eos>",  # truncated: a prefix of the answer, closed
    "4 1 2 2 2",  # the right digits, never closed by <eos> (the budget of 5 tokens ran out)
    "6 9 7 0 <eos>",  # a wrong middle digit
    "1 0 8 9 <eos>",  # right
    "<eos>",  # nothing
]
MULT_EXACT = 2 / 6
# position k is right for: k=0 outputs 1, 2, 4, 5; k=1 outputs 1, 2, 5; k=2 and k=3 outputs 1, 4, 5
MULT_POSITIONS = [4 / 6, 3 / 6, 3 / 6, 3 / 6]
MULT_CORRECT = [True, False, False, False, True, False]
MULT_CLOSED = [True, True, False, True, True, True]
MULT_PREDICTIONS = ["3 0 9 0", "5 2", "", "6 9 7 0", "1 0 8 9", ""]

# 3-operator arithmetic modulo 11 with a chain of thought whose steps contain "=", the separator.
ARITH_LINES = [
    "2 + 3 * 4 - 5 = 2 + 1 - 5 = 3 - 5 = 9 ",  # 3 * 4 = 1, 2 + 1 = 3, 3 - 5 = 9 (mod 11)
    "1 * 2 + 3 * 4 = 1 * 2 + 1 = 2 + 1 = 3 ",
    "5 - 6 + 7 * 8 = 5 - 6 + 1 = 10 + 1 = 0 ",
    "4 / 2 + 1 - 3 = 2 + 1 - 3 = 3 - 3 = 0 ",
    "4 + 4 * 4 - 4 = 4 + 5 - 4 = 9 - 4 = 5 ",
]
ARITH_OUTPUTS = [
    "2 + 1 - 5 = 3 - 5 = 9 <eos>",  # right: the answer follows the LAST "="
    "1 * 2 + 1 = 2 + 1 = 3 3 3 3 3 3 3 3",  # never closed: 18 tokens, the budget of 3-operator chains
    "0 <eos>",  # answered directly, no chain: right (Feng's one-operator form)
    "2 + 1 - 3 = 3 - 3 = 1 <eos>",  # a wrong answer after a right chain
    "4 + 5 - 4 = 9 - 4 = 5 5 <eos>",  # one token too many: wrong, its first answer token is right
]
ARITH_EXACT = 2 / 5
ARITH_POSITIONS = [3 / 5]
ARITH_CORRECT = [True, False, True, False, False]
ARITH_PREDICTIONS = ["9", "", "0", "1", "5 5"]


def _golds(task_name: str, options: dict, lines: Sequence[str]) -> list[tuple[str, ...]]:
    """The reference answers of data-file lines."""
    task = make_task(task_name, **options)
    return [task.parse_line(line, f"line {i + 1}").answer for i, line in enumerate(lines)]


def test_score_of_hand_made_direct_answers() -> None:
    fmt = SequenceFormat.for_task(make_task("mult", digits=2), cot=False, pauses=2)
    golds = _golds("mult", {"digits": 2}, MULT_LINES)
    em, pos, records = score(fmt, [o.split() for o in MULT_OUTPUTS], golds)
    assert em == pytest.approx(MULT_EXACT) and pos == pytest.approx(MULT_POSITIONS)
    assert [r["correct"] for r in records] == MULT_CORRECT
    assert [r["closed"] for r in records] == MULT_CLOSED
    assert [r["prediction"] for r in records] == MULT_PREDICTIONS
    assert [r["target"] for r in records] == [line.split("#### ")[1] for line in MULT_LINES]
    # the oracle of the other tests agrees on the same cases
    assert oracle_scores([o.split() for o in MULT_OUTPUTS], golds) == (
        pytest.approx(MULT_EXACT), pytest.approx(MULT_POSITIONS))


def test_score_of_hand_made_arithmetic_chains() -> None:
    fmt = SequenceFormat.for_task(make_task("arith", operators=3), cot=True)
    golds = _golds("arith", {"operators": 3}, ARITH_LINES)
    em, pos, records = score(fmt, [o.split() for o in ARITH_OUTPUTS], golds)
    assert em == pytest.approx(ARITH_EXACT) and pos == pytest.approx(ARITH_POSITIONS)
    assert [r["correct"] for r in records] == ARITH_CORRECT
    assert [r["prediction"] for r in records] == ARITH_PREDICTIONS
    assert oracle_scores([o.split() for o in ARITH_OUTPUTS], golds, cot_end="=", bare_answer_ok=True) == (
        pytest.approx(ARITH_EXACT), pytest.approx(ARITH_POSITIONS))


def test_score_of_hand_made_multiplication_chains() -> None:
    """Multiplication's CoT ends with ``####``, not the question's ``||``: an output without it has no
    answer, even when its digits are the answer's."""
    fmt = SequenceFormat.for_task(make_task("mult", digits=2), cot=True)
    gold = ("4", "1", "2", "2")  # 27 * 82 = 2214
    outputs = [
        "4 5 0 + 0 6 1 2 #### 4 1 2 2 <eos>",  # right
        "4 1 2 2 <eos>",  # no "####": no answer
        "4 5 0 #### 0 6 1 2 #### 4 1 2 2 <eos>",  # the answer follows the last "####"
        "4 5 0 + 0 6 1 2 #### 4 1 3 2 <eos>",  # a wrong third digit
        "4 5 0 + 0 6 1 2 #### 4 1 2 2",  # not closed
    ]
    em, pos, records = score(fmt, [o.split() for o in outputs], [gold] * 5)
    assert em == pytest.approx(2 / 5) and pos == pytest.approx([3 / 5, 3 / 5, 2 / 5, 3 / 5])
    assert [r["correct"] for r in records] == [True, False, True, False, False]
    assert oracle_scores([o.split() for o in outputs], [gold] * 5, cot_end="####") == (
        pytest.approx(2 / 5), pytest.approx([3 / 5, 3 / 5, 2 / 5, 3 / 5]))


def test_score_of_hand_made_lis_answers() -> None:
    """LIS, whose CoT separator is the question's ``<sep>``: the answer is one number; a closed
    answer without a chain counts, an answer after a chain is read after its last ``<sep>``."""
    task = make_task("lis", length=5, max_value=20)
    fmt = SequenceFormat.for_task(task, cot=True)
    sep = task.cot_end
    gold = ("3",)
    outputs = [f"1 2 2 3 1 {sep} 3 <eos>", "3 <eos>", f"1 2 {sep} 3 {sep} 2 <eos>", "3", f"1 {sep} <eos>"]
    em, pos, _ = score(fmt, [o.split() for o in outputs], [gold] * 5)
    assert em == pytest.approx(2 / 5) and pos == pytest.approx([2 / 5])
    assert oracle_scores([o.split() for o in outputs], [gold] * 5, cot_end=sep, bare_answer_ok=True) == (
        pytest.approx(2 / 5), pytest.approx([2 / 5]))


# ---------------------------------------------------------------------------------------------- scripted


def scripted_forward(script: dict[tuple[str, ...], list[str]], tokens: Sequence[str], question_end: str
                     ) -> Callable[..., torch.Tensor]:
    """A stand-in for ``GPT._forward_cached`` whose greedy choice for each prompt is fixed.

    ``script`` maps a question (its tokens, up to ``question_end``) to the tokens the model emits one by
    one; past the end of its list the last token repeats. The stub also checks that every token fed
    back is the one it emitted before."""
    index = {t: i for i, t in enumerate(tokens)}
    state: dict[int, tuple[object, list[list[str]], list[int]]] = {}

    def forward(self: GPT, idx: torch.Tensor, caches: list) -> torch.Tensor:
        key = id(caches)
        if key not in state:  # the prefill: one prompt per row
            rows = []
            for row in idx.tolist():
                words = [tokens[i] for i in row]
                rows.append(script[tuple(words[: words.index(question_end)])])
            state[key] = (caches, rows, [0])  # the caches are kept alive, so their id is not reused
        else:
            _, rows, step = state[key]
            for r, fed in zip(rows, idx[:, 0].tolist(), strict=True):
                assert tokens[fed] == r[min(step[0], len(r) - 1)], "a token fed back is not the one emitted"
            step[0] += 1
        _, rows, step = state[key]
        logits = torch.zeros(idx.shape[0], len(tokens))
        for b, r in enumerate(rows):
            logits[b, index[r[min(step[0], len(r) - 1)]]] = 1.0
        return logits

    return forward


def _stub_run(tmp_path: Path, overrides: list[str]) -> Path:
    """A run directory (config.yaml, model.safetensors) after one training step: its weights do not
    matter, the scripted forward replaces the model's decoding."""
    run = tmp_path / "run"
    cfg = C.load_config(None, overrides)
    training.train(cfg, run, progress=False)
    return run


def _scripted_eval(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], run: Path,
                   data: Path, lines: Sequence[str], outputs: Sequence[str], task: Task, question_end: str,
                   batch_size: int) -> tuple[dict, list[dict]]:
    """``seqvcr eval RUN --data DATA`` with the model's decoding replaced by the script ``outputs`` (one
    per line of ``lines``): the printed summary and the predictions file's records."""
    data.write_text("".join(line + "\n" for line in lines))
    script = {task.parse_line(line, "x").question: out.split() for line, out in zip(lines, outputs)}
    fmt_tokens = SequenceFormat.for_task(task).tokenizer.tokens
    monkeypatch.setattr(GPT, "_forward_cached", scripted_forward(script, fmt_tokens, question_end))
    preds = run.parent / "preds.jsonl"
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(data), "--predictions", str(preds),
                 "--batch-size", str(batch_size), "--no-save", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    return summary, [json.loads(x) for x in preds.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [4, 256])
def test_seqvcr_eval_of_a_scripted_model_gives_the_known_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], batch_size: int
) -> None:
    """The whole command: data file, run, greedy decoding with its budget and <eos> handling, scoring,
    summary and predictions file, for outputs fixed by a script."""
    run = _stub_run(tmp_path, micro_overrides("pause", 1) + ["task.valid_size=8"])
    task = make_task("mult", digits=2)
    summary, records = _scripted_eval(monkeypatch, capsys, run, tmp_path / "test.txt", MULT_LINES,
                                      MULT_OUTPUTS, task, "||", batch_size)
    assert summary["n"] == 6
    assert summary["exact_match"] == pytest.approx(MULT_EXACT)
    assert summary["position_accuracy"] == pytest.approx(MULT_POSITIONS)
    assert [r["correct"] for r in records] == MULT_CORRECT
    assert [r["closed"] for r in records] == MULT_CLOSED
    assert [r["prediction"] for r in records] == MULT_PREDICTIONS
    # what was decoded: cut after <eos>, or the whole budget of 4 digits + 1
    assert [r["output"] for r in records] == [o if "<eos>" in o else "4 1 2 2 2" for o in MULT_OUTPUTS]


@pytest.mark.slow
def test_seqvcr_eval_of_a_scripted_arithmetic_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [o for o in micro_overrides("cot", 1) if not o.startswith("task.")]
    run = _stub_run(tmp_path, overrides + ["task.name=arith", "task.operators=3", "task.train_size=64",
                                           "task.valid_size=4", "train.eval_examples=4",
                                           "model.block_size=64"])
    task = make_task("arith", operators=3)
    summary, records = _scripted_eval(monkeypatch, capsys, run, tmp_path / "test.txt", ARITH_LINES,
                                      ARITH_OUTPUTS, task, "=", 2)
    assert summary["exact_match"] == pytest.approx(ARITH_EXACT)
    assert summary["position_accuracy"] == pytest.approx(ARITH_POSITIONS)
    assert [r["correct"] for r in records] == ARITH_CORRECT
    assert [r["prediction"] for r in records] == ARITH_PREDICTIONS
    assert [r["output"] for r in records] == ARITH_OUTPUTS  # the unclosed one cut at the budget
