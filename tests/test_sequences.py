from __future__ import annotations

import torch

from seqvcr.sequences import IGNORE_INDEX, SequenceFormat, encode_examples, make_batch
from seqvcr.tasks import Example, make_task

EX = Example(question=("5", "6", "*", "7", "4"), cot=("1", "2", "+", "3"), answer=("1", "2", "3", "4"))


def _fmt(cot: bool, pauses: int) -> SequenceFormat:
    return SequenceFormat.for_task(make_task("mult", digits=2), cot=cot, pauses=pauses)


def test_layout_with_pauses_and_cot() -> None:
    fmt = _fmt(cot=False, pauses=2)
    assert fmt.prompt_tokens(EX) == [
        "5",
        "6",
        "*",
        "7",
        "4",
        "||",
        "</pause_start>",
        "<pause>",
        "<pause>",
        "</pause_end>",
    ]
    assert fmt.target_tokens(EX) == ["1", "2", "3", "4", "<eos>"]
    fmt = _fmt(cot=True, pauses=0)
    assert fmt.prompt_tokens(EX) == ["5", "6", "*", "7", "4", "||"]
    assert fmt.target_tokens(EX) == ["1", "2", "+", "3", "####", "1", "2", "3", "4", "<eos>"]


def test_all_pauses_share_one_token_id() -> None:
    fmt = _fmt(cot=False, pauses=4)
    data = encode_examples(fmt, [EX])
    ids = data.ids[0].tolist()
    pause_ids = [i for i, t in zip(ids, fmt.tokenizer.decode(ids)) if t == "<pause>"]
    assert len(pause_ids) == 4 and len(set(pause_ids)) == 1


def test_targets_cover_only_cot_answer_and_eos() -> None:
    for cot, pauses in [(False, 0), (False, 2), (True, 0), (True, 3)]:
        fmt = _fmt(cot=cot, pauses=pauses)
        data = encode_examples(fmt, [EX, Example(EX.question, EX.cot, ("9", "9", "9", "9"))], pad_to=30)
        x, y, mask = make_batch(data, torch.tensor([0, 1]))
        assert x.shape == y.shape == mask.shape == (2, 29)
        for row in range(2):
            trained = [fmt.tokenizer.tokens[t] for t in y[row].tolist() if t != IGNORE_INDEX]
            assert trained == fmt.target_tokens(data_example(row))
            n = len(fmt.prompt_tokens(EX)) + len(fmt.target_tokens(EX))
            assert mask[row].tolist() == [j < n - 1 for j in range(29)]  # every token but <eos>
            # the target at input position j is the token at j + 1
            for j, t in enumerate(y[row].tolist()):
                if t != IGNORE_INDEX:
                    assert t == data.ids[row, j + 1].item()


def data_example(row: int) -> Example:
    return EX if row == 0 else Example(EX.question, EX.cot, ("9", "9", "9", "9"))


def test_extract_answer() -> None:
    fmt = _fmt(cot=True, pauses=0)
    assert fmt.extract_answer(["1", "+", "####", "4", "2", "<eos>", "7"]) == ["4", "2"]
    assert fmt.extract_answer(["1", "+", "4"]) == []
    fmt = _fmt(cot=False, pauses=2)
    assert fmt.extract_answer(["4", "2", "<eos>", "<eos>"]) == ["4", "2"]
