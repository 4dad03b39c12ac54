"""Run files without pickles: the safetensors writer, loading a run, and the converter of the earlier format.

``tests/data/legacy/`` holds two run directories written by seqvcr's earlier format (``checkpoint.pt``, a
``torch.save`` pickle), made with the code of that format from one config (2x2 multiplication, a
1-layer 16-wide model with dropout 0.1, Seq-VCR + 1 pause, 6 steps, a checkpoint every 3):
``legacy_run`` trained straight through, ``legacy_interrupted`` stopped after its step-3 checkpoint.
"""

from __future__ import annotations

import json
import shutil
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
    LEGACY_CHECKPOINT_FILE,
    MODEL_FILE,
    load_state_tensors,
    read_checkpoint,
    state_tensors,
    write_safetensors,
)
from seqvcr.cli import main
from seqvcr.model import GPT, GPTConfig
from seqvcr.runs import load_run

LEGACY = Path(__file__).resolve().parent / "data" / "legacy"


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


def _legacy_copy(tmp_path: Path, name: str = "legacy_run") -> Path:
    dst = tmp_path / name
    shutil.copytree(LEGACY / name, dst)
    return dst


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


# ---------------------------------------------------------------------------------------------- conversion


def test_converted_run_has_identical_weights_and_needs_no_optimizer_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _legacy_copy(tmp_path)
    old = torch.load(LEGACY / "legacy_run" / LEGACY_CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    code, out, err = _cli(["convert-checkpoint", run], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["converted"] and summary["step"] == 6 and summary["finished"]
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["config.yaml", "metrics.jsonl", "result.json", MODEL_FILE, CHECKPOINT_FILE]
    )
    # the other files are untouched
    for name in ("config.yaml", "metrics.jsonl", "result.json"):
        assert (run / name).read_bytes() == (LEGACY / "legacy_run" / name).read_bytes()
    weights = load_file(str(run / MODEL_FILE))
    for key, value in old["model"].items():
        if key == "lm_head.weight":  # tied: stored once, as the token embedding
            assert "model.lm_head.weight" not in weights
            assert torch.equal(value, weights["model.transformer.wte.weight"])
        else:
            assert torch.equal(weights[f"model.{key}"], value), key
    for key, value in old["seqvcr"].items():
        assert torch.equal(weights[f"seqvcr.{key}"], value), key
    ck = read_checkpoint(run / CHECKPOINT_FILE)
    assert ck.step == 6 and ck.train_time == old["train_time_s"]
    assert torch.equal(ck.rng_states[0]["torch"], old["rng"]["torch"])
    assert ck.rng_states[0]["python"] == old["rng"]["python"]
    for idx, st in old["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(ck.tensors[f"optimizer.{idx}.{name}"], st[name])

    # shared without its optimiser state: model.safetensors + config.yaml are enough for every command
    (run / CHECKPOINT_FILE).unlink()
    loaded = load_run(run)
    assert loaded.step == 6 and loaded.model.lm_head.weight is loaded.model.transformer.wte.weight
    test = _test_file(tmp_path, capsys)
    for argv in (
        ["eval", run, "--data", test],
        ["entropy", run, "--data", test, "--n", "8", "--out", tmp_path / "ent"],
        ["report", run, "--data", test, "--n", "8", "--out", tmp_path / "rep", "--quiet"],
        ["export-hf", run, tmp_path / "hf"],
    ):
        code, _, err = _cli(argv, capsys)
        assert code == 0, (argv, err)
    # converting again is a no-op
    code, out, _ = _cli(["convert-checkpoint", run], capsys)
    assert code == 0 and json.loads(out)["converted"] is False


def test_converted_interrupted_run_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Optimiser and RNG state survive the conversion: the legacy run stopped at step 3, converted and
    resumed by this version, ends where the legacy run trained straight through ended (dropout 0.1, so
    a lost RNG state would show)."""
    run = _legacy_copy(tmp_path, "legacy_interrupted")
    code, out, err = _cli(["convert-checkpoint", run], capsys)
    assert code == 0, err
    assert json.loads(out)["files"] == [CHECKPOINT_FILE]  # not finished: no model.safetensors yet
    assert _cli(["eval", run, "--data", _test_file(tmp_path, capsys)], capsys)[0] == 0  # from the checkpoint
    code, out, err = _cli(["train", run / "config.yaml", "--out", run, "--quiet"], capsys)
    assert code == 0, err
    old = torch.load(LEGACY / "legacy_run" / LEGACY_CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    resumed = load_file(str(run / MODEL_FILE))
    for key, value in old["model"].items():
        stored = "transformer.wte.weight" if key == "lm_head.weight" else key
        # the same machine gives identical weights; another CPU may differ in the last bits
        torch.testing.assert_close(resumed[f"model.{stored}"], value, rtol=0, atol=1e-6)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 3, 6, 6]  # train + eval records at 3 (kept) and 6 (resumed), none twice


def test_convert_a_sweep_directory_and_keep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "sw"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "manifest.json").write_text("{}")
    shutil.copytree(LEGACY / "legacy_run", sweep / "runs" / "a")
    shutil.copytree(LEGACY / "legacy_interrupted", sweep / "runs" / "b")
    code, out, err = _cli(["convert-checkpoint", sweep, "--keep"], capsys)
    assert code == 0, err
    assert [json.loads(line)["run_dir"] for line in out.splitlines()] == [
        str(sweep / "runs" / "a"),
        str(sweep / "runs" / "b"),
    ]
    assert (sweep / "runs" / "a" / LEGACY_CHECKPOINT_FILE).is_file()  # --keep
    assert (sweep / "runs" / "a" / MODEL_FILE).is_file()
    assert (sweep / "runs" / "b" / CHECKPOINT_FILE).is_file()
    # a second conversion never overwrites the new files with the kept old one
    before = (sweep / "runs" / "a" / CHECKPOINT_FILE).read_bytes()
    code, out, _ = _cli(["convert-checkpoint", sweep / "runs" / "a"], capsys)
    assert code == 0 and json.loads(out)["converted"] is False
    assert (sweep / "runs" / "a" / CHECKPOINT_FILE).read_bytes() == before


# ---------------------------------------------------------------------------------------------- security


COMMANDS = ("eval", "entropy", "report", "export-hf", "train", "convert-checkpoint")


def _argv(command: str, run: Path, tmp_path: Path, test: Path) -> list[Any]:
    return {
        "eval": ["eval", run, "--data", test],
        "entropy": ["entropy", run, "--data", test, "--n", "5", "--out", tmp_path / "ent"],
        "report": [
            "report",
            run,
            "--data",
            test,
            "--n",
            "5",
            "--out",
            tmp_path / "rep",
            "--force",
            "--quiet",
        ],
        "export-hf": ["export-hf", run, tmp_path / "hf", "--force"],
        "train": ["train", LEGACY / "legacy_run" / "config.yaml", "--out", run, "--quiet"],
        "convert-checkpoint": ["convert-checkpoint", run],
    }[command]


def test_legacy_checkpoint_with_a_payload_is_never_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real earlier-format checkpoint with a pickle payload added: every command refuses it with one
    line (naming the conversion command) and the payload never runs, the converter included."""
    test = _test_file(tmp_path, capsys)
    marker = tmp_path / "PAYLOAD_RAN"
    run = _legacy_copy(tmp_path, "legacy_interrupted")
    ckpt = torch.load(run / LEGACY_CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    ckpt["extra"] = Payload(marker)
    torch.save(ckpt, run / LEGACY_CHECKPOINT_FILE)
    before = (run / LEGACY_CHECKPOINT_FILE).read_bytes()
    for command in COMMANDS:
        code, _, err = _cli(_argv(command, run, tmp_path, test), capsys)
        line = _one_line_error(code, err, command)
        if command == "convert-checkpoint":
            assert "refused" in line and "nothing in it was run" in line
        else:
            assert f"seqvcr convert-checkpoint {run}" in line
        assert not marker.exists(), command
    assert (run / LEGACY_CHECKPOINT_FILE).read_bytes() == before


@pytest.mark.parametrize("name", ["config.yaml", "metrics.jsonl", "result.json", MODEL_FILE, CHECKPOINT_FILE])
def test_a_pickle_in_any_run_file_is_never_run(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever file of a run directory is replaced by a pickle payload, no command runs it; each either
    works (the file is not needed) or stops with a one-line error."""
    import pickle

    test = _test_file(tmp_path, capsys)
    marker = tmp_path / "PAYLOAD_RAN"
    run = _legacy_copy(tmp_path)
    assert _cli(["convert-checkpoint", run], capsys)[0] == 0
    (run / name).write_bytes(pickle.dumps(Payload(marker)))
    for command in COMMANDS:
        if command == "convert-checkpoint":
            (run / LEGACY_CHECKPOINT_FILE).write_bytes(pickle.dumps(Payload(marker)))
        code, _, err = _cli(_argv(command, run, tmp_path, test), capsys)
        assert "Traceback" not in err
        if code != 0:
            _one_line_error(code, err, command)
        assert not marker.exists(), command


def test_convert_refuses_a_torch_whose_weights_only_load_is_unsafe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _legacy_copy(tmp_path)
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    code, _, err = _cli(["convert-checkpoint", run], capsys)
    assert "torch >= 2.6" in _one_line_error(code, err, "convert-checkpoint")
    assert (run / LEGACY_CHECKPOINT_FILE).is_file() and not (run / MODEL_FILE).exists()
