"""Results that must be exact: answers closed by ``<eos>``, batch-independent decoding, Feng et al.'s
arithmetic data, and configs that are what they say they are."""

from __future__ import annotations

import collections
import runpy
from pathlib import Path

import pytest
import torch
import yaml

from seqvcr import config as C
from seqvcr.cli import main
from seqvcr.evaluation import generate_continuations, score
from seqvcr.model import GPT, GPTConfig
from seqvcr.runs import build_task, load_splits
from seqvcr.sequences import SequenceFormat, encode_examples
from seqvcr.tasks import Example, make_task, read_examples

ROOT = Path(__file__).resolve().parents[1]
OPS = {"+", "-", "*", "/"}


def _operators(ex: Example) -> int:
    return sum(t in OPS for t in ex.question)


# ---------------------------------------------------------------------------------------------- item 12


def test_an_answer_counts_only_when_eos_closes_it() -> None:
    fmt = SequenceFormat.for_task(make_task("mult", digits=2), cot=True)
    gold = ("4", "2", "0", "0")
    cut = ["1", "+", "####", *gold]  # the budget ran out: the last segment equals the answer, no <eos>
    closed = [*cut, "<eos>"]
    assert fmt.extract_answer(cut) == []
    assert fmt.extract_answer(closed) == list(gold)
    em, pos, records = score(fmt, [cut, closed], [gold, gold])
    assert em == 0.5 and pos == [0.5] * 4
    assert [r["correct"] for r in records] == [False, True] and [r["closed"] for r in records] == [
        False,
        True,
    ]
    direct = SequenceFormat.for_task(make_task("mult", digits=2), cot=False)
    assert score(direct, [list(gold)], [gold])[0] == 0.0  # the digits alone, never ended
    assert score(direct, [[*gold, "<eos>"]], [gold])[0] == 1.0


def test_decoding_is_the_same_for_any_batch_size() -> None:
    """Arithmetic with a chain of thought: the targets of one prompt length differ in length, so a budget
    taken from the batch's references would cut rows differently in different batches. The budget is the
    task's and the format's, so every prompt decodes the same alone and in a batch of 64."""
    task = make_task("arith", operators=3)
    fmt = SequenceFormat.for_task(task, cot=True, pauses=1)
    examples = task.generate(64, seed=3)
    data = encode_examples(fmt, examples)
    lengths = collections.defaultdict(set)
    for p, n in zip(data.prompt_lengths.tolist(), data.lengths.tolist()):
        lengths[p].add(n)
    assert any(len(v) > 1 for v in lengths.values()), "the test needs different targets per prompt length"
    torch.manual_seed(0)
    gcfg = GPTConfig(vocab_size=fmt.tokenizer.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)
    model = GPT(gcfg).double()  # float64: no rounding difference between batch shapes
    one = generate_continuations(model, data, fmt, batch_size=1)
    many = generate_continuations(model, data, fmt, batch_size=64)
    assert one == many
    budget = fmt.max_new_tokens()
    assert all(len(c) <= budget for c in many)
    assert score(fmt, one, data.answers) == score(fmt, many, data.answers)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("mult", {"digits": 3}),
        ("mult", {"digits": 4, "digits_b": 2}),
        ("arith", {"operators": 5}),
        ("lis", {"length": 12, "max_value": 40}),
    ],
)
@pytest.mark.parametrize("cot", [False, True])
def test_the_budget_covers_every_target_of_the_task(name: str, options: dict, cot: bool) -> None:
    task = make_task(name, **options)
    fmt = SequenceFormat.for_task(task, cot=cot, pauses=2)
    longest = max(len(fmt.target_tokens(ex)) for ex in task.generate(300, seed=1))
    assert longest <= fmt.max_new_tokens()
    if name != "arith":  # multiplication and LIS targets all have one length: the bound is exact
        assert longest == fmt.max_new_tokens()


# ---------------------------------------------------------------------------------------------- item 13


def test_arith_configs_train_with_fengs_mix() -> None:
    files = sorted((ROOT / "configs").glob("arith*.yaml"))
    assert len(files) == 15
    for f in files:
        assert C.load_config(f).task.under is True, f.name


def test_under_mixes_the_training_set_only() -> None:
    cfg = C.resolve(
        C.load_config(
            None,
            [
                "task.name=arith",
                "task.operators=3",
                "task.under=true",
                "task.train_size=3000",
                "task.valid_size=200",
            ],
        )
    )
    train, valid = load_splits(cfg, build_task(cfg))
    assert {_operators(ex) for ex in valid} == {3}
    counts = collections.Counter(_operators(ex) for ex in train)
    assert set(counts) == {1, 2, 3}
    share = {k: counts[k] / len(train) for k in counts}  # Feng: 1:2:3 (one-operator problems run out)
    assert share[3] > share[2] > share[1] > 0


def test_data_arith_under_keeps_valid_and_test_at_l_operators(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a3"
    assert (
        main(
            [
                "data",
                "arith",
                "--operators",
                "3",
                "--under",
                "--train",
                "1500",
                "--valid",
                "100",
                "--test",
                "200",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    task = make_task("arith", operators=3)
    for split in ("valid", "test"):
        assert {_operators(ex) for ex in read_examples(task, out / f"{split}.txt")} == {3}, split
    assert {_operators(ex) for ex in read_examples(task, out / "train.txt")} == {1, 2, 3}


def test_a_one_operator_example_reads_like_feng() -> None:
    task = make_task("arith", operators=2)
    fmt = SequenceFormat.for_task(task, cot=True)
    ex = task.parse_line("3 / 5 = 5 ", "x")  # 3 * 5^-1 = 3 * 9 = 27 = 5 (mod 11)
    assert ex.cot == ()
    assert fmt.prompt_tokens(ex) + fmt.target_tokens(ex) == ["3", "/", "5", "=", "5", "<eos>"]
    assert fmt.extract_answer(["5", "<eos>"]) == ["5"]
    two = task.parse_line("3 / 5 + 0 = 5 + 0 = 5 ", "x")
    assert fmt.target_tokens(two) == ["5", "+", "0", "=", "5", "<eos>"]  # unchanged with a CoT
    assert fmt.extract_answer(["5", "+", "0", "=", "5", "<eos>"]) == ["5"]


# ---------------------------------------------------------------------------------------------- item 14


def test_the_from_scratch_configs_of_appendix_h() -> None:
    for name, over in (
        ("mult5x5_seqvcr_pause_scratch_l0", "batch"),
        ("mult5x5_seqvcr_pause_scratch_l0_batch_time", "batch_time"),
    ):
        cfg = C.resolve(C.load_config(ROOT / "configs" / f"{name}.yaml"))
        assert cfg.model.init_from is None and cfg.method.name == "seqvcr_pause"
        assert cfg.seqvcr.layer == 0 and cfg.seqvcr.over == over
        assert cfg.task.digits == 5 and cfg.model.n_layer == 12
        assert name in (ROOT / "README.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "0.03" in readme and "from scratch" in readme
    header = (ROOT / "configs" / "mult5x5_seqvcr_pause.yaml").read_text().split("task:")[0]
    assert "model.init_from" in header and "0.03" in header


def test_configs_are_what_make_configs_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "scripts" / "make_configs.py"), run_name="__main__")
    made = {p.name: p.read_text() for p in (tmp_path / "configs").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (ROOT / "configs").glob("*.yaml")}
    assert made == shipped
    for text in made.values():
        yaml.safe_load(text)
