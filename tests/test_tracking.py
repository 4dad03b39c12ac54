"""Metrics everywhere they are wanted, and weights kept along the way: ``train.log_to`` (metrics.jsonl,
TensorBoard event files read back with TensorBoard's own reader, a Weights & Biases run in offline
mode), the elapsed time on every record, and ``train.snapshot_steps`` with ``eval`` / ``entropy
--step``."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import micro_overrides

from seqvcr import config as C
from seqvcr import training
from seqvcr.checkpoints import read_safetensors
from seqvcr.cli import main
from seqvcr.errors import ConfigError
from seqvcr.runs import load_run, saved_snapshot_steps
from seqvcr.tasks import make_task, write_examples

_REAL_LOG = training._log


def _cfg(*extra: str, steps: int = 20) -> C.Config:
    return C.load_config(None, micro_overrides("seqvcr_pause", steps) + list(extra))


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _tensorboard(run: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return acc


# ---------------------------------------------------------------------------------------------- records


@pytest.mark.slow
def test_every_record_carries_the_elapsed_time(tmp_path: Path) -> None:
    run = tmp_path / "run"
    training.train(_cfg(), run, progress=False)
    recs = _records(run)
    assert {r["kind"] for r in recs} == {"train", "eval"}
    for r in recs:
        assert isinstance(r["elapsed_s"], float) and r["elapsed_s"] > 0, r
        assert isinstance(r["time"], float) and r["time"] > 1.6e9, r
    elapsed = [r["elapsed_s"] for r in recs]
    assert elapsed == sorted(elapsed)
    result = json.loads((run / "result.json").read_text())
    assert elapsed[-1] <= result["train_time_s"] + 1.0


def _interrupt_after_logging(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Stop training (as a kill would) right after the record of ``step`` has been logged."""
    def log_then_die(logger: Any, record: dict[str, Any]) -> None:
        _REAL_LOG(logger, record)
        if record["kind"] == "train" and record["step"] == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_log", log_then_die)


@pytest.mark.slow
def test_tensorboard_events_read_back_and_survive_a_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    cfg = _cfg("train.log_to=[jsonl, tensorboard]")
    # killed after logging step 15, past the checkpoint of step 10: the resumed run redoes 11..20
    _interrupt_after_logging(monkeypatch, 15)
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, run, progress=False)
    monkeypatch.undo()
    first = {r["step"]: r for r in _records(run) if r["kind"] == "train"}
    training.train(cfg, run, progress=False)

    recs = _records(run)
    train = [r for r in recs if r["kind"] == "train"]
    evals = [r for r in recs if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert train[1]["elapsed_s"] == first[10]["elapsed_s"]  # kept from the first attempt
    assert train[2]["elapsed_s"] > train[1]["elapsed_s"]  # the count goes on after the resume

    acc = _tensorboard(run)
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lm_loss", "train/seqvcr_variance", "train/elapsed_s", "valid/exact_match",
            "valid/position_accuracy/1"} <= tags
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [5, 10, 15, 20]  # the first attempt's step 15 is purged
    for event, rec in zip(loss, train):
        assert event.value == pytest.approx(rec["loss"], rel=1e-6)
        assert event.wall_time == pytest.approx(rec["time"], abs=1e-3)
    assert [e.step for e in acc.Scalars("valid/exact_match")] == sorted({r["step"] for r in evals})
    assert acc.Scalars("valid/exact_match")[-1].value == pytest.approx(evals[-1]["exact_match"])


@pytest.mark.slow
def test_wandb_offline_run_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wandb_home").mkdir()  # W&B's own files (settings, cache) go here, not to ~ or the cwd
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run = tmp_path / "run"
    cfg = _cfg("train.log_to=[jsonl, wandb]", "train.wandb_project=seqvcr-test")
    assert cfg.train.wandb_mode == "offline"  # the default: no network, no account
    _interrupt_after_logging(monkeypatch, 15)
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, run, progress=False)
    run_id = (run / "wandb" / "run_id.txt").read_text().strip()

    def run_files() -> list[Path]:
        return sorted((run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))

    assert len(run_files()) == 1 and run_files()[0].stat().st_size > 0
    monkeypatch.setattr(training, "_log", _REAL_LOG)
    time.sleep(1.1)  # W&B names an offline run's directory by the second it starts in
    training.train(cfg, run, progress=False)
    assert (run / "wandb" / "run_id.txt").read_text().strip() == run_id  # the resumed attempt: same run
    files = run_files()
    assert len(files) == 2  # one offline run directory per attempt, both of the same W&B run
    data = b"".join(f.read_bytes() for f in files)
    for key in (b"train/loss", b"train/elapsed_s", b"valid/exact_match", b"seqvcr-test"):
        assert key in data, key


def test_a_missing_tracker_is_a_one_line_error_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard"
                        else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'seqvcr\[tensorboard\]'"):
        training.train(_cfg("train.log_to=[jsonl, tensorboard]"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # found before anything was written
    path = tmp_path / "micro.yaml"
    C.save_yaml(_cfg("train.log_to=[jsonl, tensorboard]"), path)
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "seqvcr[tensorboard]" in err and "train.log_to" in err


@pytest.mark.parametrize("bad, message", [
    ("train.log_to=[tensorboard]", "must include jsonl"),
    ("train.log_to=[jsonl, mlflow]", "'mlflow' is not one of jsonl, tensorboard, wandb"),
    ("train.log_to=[jsonl, jsonl]", "twice"),
    ("train.wandb_mode=cloud", "online, offline, disabled"),
    ("train.snapshot_steps=0", "interval N >= 1"),
    ("train.snapshot_steps=[10, -1]", "steps must be >= 1"),
])
def test_bad_tracking_values(bad: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(bad)


# ---------------------------------------------------------------------------------------------- snapshots


@pytest.fixture(scope="module")
def snapped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("snap")
    task = make_task("mult", digits=2)
    test = root / "test.txt"
    write_examples(task, test, task.generate(30, seed=11))
    training.train(_cfg("train.snapshot_steps=[5, 15, 20, 99]", f"task.test_file={test}"), root / "run",
                   progress=False)
    return root / "run", test


@pytest.mark.slow
def test_snapshots_are_weights_at_the_steps(snapped: tuple[Path, Path]) -> None:
    run, _ = snapped
    assert saved_snapshot_steps(run) == [5, 15, 20]  # 99 is past the end of training
    assert (run / "snapshots" / "step_000005.safetensors").is_file()
    tensors, info = read_safetensors(run / "snapshots" / "step_000005.safetensors", "model")
    assert info["step"] == 5 and info["kind"] == "model"
    assert not any(k.startswith(("optimizer.", "rng.")) for k in tensors)  # weights only
    assert any(k.startswith("seqvcr.") for k in tensors)  # the Seq-VCR projection too
    final, _ = read_safetensors(run / "model.safetensors", "model")
    last, _ = read_safetensors(run / "snapshots" / "step_000020.safetensors", "model")
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    early = load_run(run, step=5)
    assert early.step == 5
    assert not torch.equal(early.model.transformer.wte.weight, load_run(run).model.transformer.wte.weight)


def test_every_n_steps() -> None:
    assert C.snapshot_steps(_cfg("train.snapshot_steps=10").train, 25) == [10, 20]
    assert C.snapshot_steps(_cfg("train.snapshot_steps=[20, 5]").train, 25) == [5, 20]


@pytest.mark.slow
def test_eval_and_entropy_of_a_snapshot(
    snapped: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, test = snapped
    assert main(["eval", str(run), "--data", str(test), "--step", "5", "--quiet", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["step"] == 5 and ev["source"]["weights"] == "snapshots/step_000005.safetensors"
    saved = list((run / "snapshots" / "step_000005" / "eval").glob("*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["step"] == 5
    assert main(["entropy", str(run), "--data", str(test), "--n", "10", "--step", "15", "--quiet",
                 "--json"]) == 0
    ent = json.loads(capsys.readouterr().out)
    assert ent["step"] == 15
    assert json.loads((run / "snapshots" / "step_000015" / "entropy.json").read_text())["step"] == 15
    assert not (run / "entropy.json").exists()  # the final weights' entropy file is not touched


@pytest.mark.slow
def test_a_missing_snapshot_is_a_one_line_error(
    snapped: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, test = snapped
    assert main(["entropy", str(run), "--data", str(test), "--step", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no snapshot of step 7" in err and "snapshots: 5, 15, 20" in err


@pytest.mark.slow
def test_report_plots_entropy_against_step(
    snapped: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, test = snapped
    out = tmp_path / "rep"
    assert main(["report", str(run), "--data", str(test), "--n", "10", "--out", str(out), "--quiet",
                 "--no-throughput"]) == 0
    png = (out / "entropy_vs_step.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    rows = (out / "entropy_steps.csv").read_text().splitlines()
    assert rows[0] == "run,step,L0,L1,L2" and [r.split(",")[1] for r in rows[1:]] == ["5", "15", "20"]
    assert "Entropy per layer during training" in (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert [s["step"] for s in summary["runs"][0]["entropy_steps"]] == [5, 15, 20]


@pytest.mark.slow
def test_force_removes_old_snapshots(
    snapped: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(snapped[0], run)
    training.train(_cfg("train.snapshot_steps=[10]"), run, force=True, progress=False)
    assert saved_snapshot_steps(run) == [10]
    # --step of the final step, which has no snapshot, is the final weights
    assert main(["eval", str(run), "--data", str(snapped[1]), "--step", "20", "--quiet", "--no-save",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"]["weights"] == "model.safetensors"
    assert not (run / "eval").exists()  # --no-save
