"""Run files without pickles: the safetensors writer, loading a run, and no command running a pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import micro_overrides
from safetensors.torch import load_file

from seqvcr import config as C
from seqvcr import training
from seqvcr.checkpoints import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    load_state_tensors,
    state_tensors,
    write_safetensors,
)
from seqvcr.cli import main
from seqvcr.model import GPT, GPTConfig


class Payload:
    """Pickles to ``open(marker, "w")``: unpickling it creates the marker file (code ran)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"seqvcr {command}: error: "), err
    return lines[0]


def _test_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert (
        main(
            ["data", "mult", "--digits", "2", "--train", "0", "--test", "20", "--out", str(tmp_path / "data")]
        )
        == 0
    )
    capsys.readouterr()
    return tmp_path / "data" / "test.txt"


# ---------------------------------------------------------------------------------------------- format


def test_safetensors_writer_is_read_by_the_safetensors_library(tmp_path: Path) -> None:
    tensors = {
        "f32": torch.randn(3, 4),
        "bf16": torch.randn(5).to(torch.bfloat16),
        "f64": torch.randn(2, 2, dtype=torch.float64),
        "i64": torch.arange(7),
        "u8": torch.randint(0, 255, (9,), dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "strided": torch.randn(4, 6).t(),  # not contiguous
    }
    path = write_safetensors(tmp_path / "x.safetensors", tensors, {"k": "v"})
    back = load_file(str(path))
    assert back.keys() == tensors.keys()
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]  # no temporary file left


def test_tied_weights_are_stored_once_and_tied_again() -> None:
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, tie_weights=True))
    stored = state_tensors(model, "model.")
    assert "model.lm_head.weight" not in stored and "model.transformer.wte.weight" in stored
    fresh = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, tie_weights=True))
    load_state_tensors(fresh, {k: v.clone() for k, v in stored.items()}, "model.", Path("x"))
    assert fresh.lm_head.weight is fresh.transformer.wte.weight
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


@pytest.mark.slow
def test_no_command_unpickles_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Train, resume, eval, entropy, report and export-hf never call torch.load (or any unpickler on a
    file): the run directory holds YAML, JSON and safetensors only."""
    test = _test_file(tmp_path, capsys)
    real_lr_at = training.lr_at

    def crash(step: int, total: int, cfg: C.OptimConfig) -> float:
        if step == 13:
            raise KeyboardInterrupt
        return real_lr_at(step, total, cfg)

    def no_torch_load(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", no_torch_load)
    cfg = C.load_config(None, micro_overrides("seqvcr_pause", 20))
    run = tmp_path / "run"
    monkeypatch.setattr(training, "lr_at", crash)
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, run, progress=False)
    monkeypatch.setattr(training, "lr_at", real_lr_at)
    training.train(cfg, run, progress=False)  # resumes
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["config.yaml", "metrics.jsonl", "result.json", MODEL_FILE, CHECKPOINT_FILE]
    )
    for argv in (
        ["eval", run, "--data", test],
        ["entropy", run, "--data", test, "--n", "10", "--out", tmp_path / "ent"],
        ["report", run, "--data", test, "--n", "10", "--out", tmp_path / "rep", "--quiet"],
        ["export-hf", run, tmp_path / "hf"],
    ):
        assert _cli(argv, capsys)[0] == 0, argv


# ---------------------------------------------------------------------------------------------- security


COMMANDS = ("eval", "entropy", "report", "export-hf", "train")


def _argv(command: str, run: Path, tmp_path: Path, test: Path) -> list[Any]:
    return {
        "eval": ["eval", run, "--data", test],
        "entropy": ["entropy", run, "--data", test, "--n", "5", "--out", tmp_path / "ent"],
        "report": ["report", run, "--data", test, "--n", "5", "--out", tmp_path / "rep",
                   "--force", "--quiet"],
        "export-hf": ["export-hf", run, tmp_path / "hf", "--force"],
        "train": ["train", tmp_path / "config.yaml", "--out", run, "--quiet"],
    }[command]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["config.yaml", "metrics.jsonl", "result.json", MODEL_FILE, CHECKPOINT_FILE])
def test_a_pickle_in_any_run_file_is_never_run(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever file of a run directory is replaced by a pickle payload, no command runs it; each either
    works (the file is not needed) or stops with a one-line error."""
    import pickle

    test = _test_file(tmp_path, capsys)
    marker = tmp_path / "PAYLOAD_RAN"
    run = tmp_path / "run"
    cfg = C.load_config(None, micro_overrides("seqvcr_pause", 6))
    training.train(cfg, run, progress=False)
    (tmp_path / "config.yaml").write_bytes((run / "config.yaml").read_bytes())
    (run / name).write_bytes(pickle.dumps(Payload(marker)))
    for command in COMMANDS:
        code, _, err = _cli(_argv(command, run, tmp_path, test), capsys)
        assert "Traceback" not in err
        if code != 0:
            _one_line_error(code, err, command)
        assert not marker.exists(), command
