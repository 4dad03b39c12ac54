from __future__ import annotations

import pytest
import torch

from seqvcr.sequences import IGNORE_INDEX, SequenceFormat, encode_examples, make_batch, seqvcr_positions
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


def _naive_positions(fmt: SequenceFormat, ex: Example, width: int, positions: str) -> list[bool]:
    """Which input positions of one sequence enter Seq-VCR, written out from the token layout."""
    tokens = fmt.prompt_tokens(ex) + fmt.target_tokens(ex)
    n_prompt = len(fmt.prompt_tokens(ex))
    out = []
    for j in range(width):  # input position j holds tokens[j] and predicts tokens[j + 1]
        real = j < len(tokens) - 1
        is_pause = real and tokens[j] in ("</pause_start>", "<pause>", "</pause_end>")
        is_answer = real and j + 1 >= n_prompt
        out.append(
            {"all": real, "pause": is_pause, "answer": is_answer, "pause_answer": is_pause or is_answer}[
                positions
            ]
        )
    return out


def test_seqvcr_positions_match_the_layout() -> None:
    short = Example(("5", "*", "7"), (), ("3", "5"))
    for pauses in (0, 2, 3):
        fmt = _fmt(cot=False, pauses=pauses)
        tok = fmt.tokenizer
        data = encode_examples(fmt, [EX, short])
        x, y, mask = make_batch(data, torch.tensor([0, 1]))
        pause_ids = (tok.pause_start_id, tok.pause_id, tok.pause_end_id)
        for positions in ("all", "answer", "pause", "pause_answer"):
            got = seqvcr_positions(x, y, mask, positions, pause_ids)
            assert got.dtype == torch.bool and got.shape == x.shape
            for row, ex in enumerate((EX, short)):
                assert got[row].tolist() == _naive_positions(fmt, ex, x.shape[1], positions), (
                    pauses,
                    positions,
                    row,
                )


def test_seqvcr_positions_rejects_unknown_choice() -> None:
    fmt = _fmt(cot=False, pauses=2)
    x, y, mask = make_batch(encode_examples(fmt, [EX]), torch.tensor([0]))
    with pytest.raises(ValueError, match="not one of all, answer, pause, pause_answer"):
        seqvcr_positions(x, y, mask, "question", (2, 3, 4))
