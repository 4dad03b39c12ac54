"""The catalogue of bad inputs: every case run as a user runs it, through the ``seqvcr`` command.

Each refusal asserts what the README promises for bad input: a non-zero exit, one line on stderr
(``seqvcr <command>: error: ...``) that names the problem (file, line, key, flag, allowed values), no
traceback, and nothing that existed before gone or changed (every file of the test's directory has the
same bytes and modification time afterwards, and no file appeared). Most cases call the command's
``main`` in this process (an exception escaping ``main`` is a traceback for a user and fails the test);
kills and sweeps run in subprocesses. The other cases recover: a torn metrics line, a killed training,
a killed sweep resume; a full disk and a NaN loss stop with one line and keep what was good.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import micro_overrides

from seqvcr import checkpoints, training
from seqvcr import config as C
from seqvcr.checkpoints import CHECKPOINT_FILE, MODEL_FILE, read_checkpoint
from seqvcr.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------------------------------------- fixtures


def _crash_at(step: int) -> Callable[[int, int, C.OptimConfig], float]:
    real = training.lr_at

    def lr_at(s: int, total: int, cfg: C.OptimConfig) -> float:
        if s == step:
            raise KeyboardInterrupt
        return real(s, total, cfg)

    return lr_at


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data files, configs, a finished run, an interrupted run (checkpoint at step 10 of 20), an
    arithmetic run, and a sweep plan; every test works on its own copy."""
    root = tmp_path_factory.mktemp("world")
    assert (
        main(["data", "mult", "--digits", "2", "--train", "0", "--test", "40", "--out", str(root / "data")])
        == 0
    )
    assert (
        main(
            [
                "data",
                "arith",
                "--operators",
                "1",
                "--train",
                "0",
                "--test",
                "20",
                "--out",
                str(root / "arith1"),
            ]
        )
        == 0
    )
    (root / "empty.txt").write_text("")
    (root / "bad.txt").write_text("1 2 * 3 4||#### 3 0 9 0\n1 2 * x 4||#### 3 0 9 0\n")
    (root / "afile").write_text("a regular file\n")
    micro = C.apply_overrides({}, micro_overrides("seqvcr_pause", 20))
    (root / "micro.yaml").write_text(yaml.safe_dump(micro))
    (root / "dup.yaml").write_text("task:\n  name: mult\n  digits: 2\n  name: arith\n")
    nulled = {**micro, "model": None}
    (root / "null.yaml").write_text(yaml.safe_dump(nulled))
    cfg = C.from_dict(micro)
    training.train(cfg, root / "run", progress=False)
    real = training.lr_at
    training.lr_at = _crash_at(13)
    try:
        with pytest.raises(KeyboardInterrupt):
            training.train(cfg, root / "interrupted", progress=False)
    finally:
        training.lr_at = real
    arith = C.apply_overrides(
        micro,
        [
            "task.name=arith",
            "task.operators=2",
            "task.train_size=200",
            "optim.max_steps=4",
            "train.checkpoint_every=4",
        ],
    )
    training.train(C.from_dict(arith), root / "arith_run", progress=False)
    plan = {
        "name": "mini",
        "config": {**micro, "optim": {**micro["optim"], "max_steps": 8}},
        "ablations": [
            {"part": "projection", "action": "REPLACE", "key": "seqvcr.proj_dim", "replacements": [8, 16]}
        ],
        "metrics": ["exact_match"],
        "seeds": [0],
    }
    (root / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    return root


@pytest.fixture
def w(world: Path, tmp_path: Path) -> Path:
    """A fresh copy of the world for one test."""
    dst = tmp_path / "w"
    shutil.copytree(world, dst)
    return dst


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and directory under ``root``: content hash (files) and modification time."""
    out: dict[str, tuple[str, int]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = (digest, st.st_mtime_ns if p.is_file() else 0)
    return out


def cli(argv: list[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``seqvcr ARGV`` in this process: exit status, stdout, stderr."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, command: str, needles: tuple[str, ...]) -> str:
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"seqvcr {command}: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


# ---------------------------------------------------------------------------------------------- refusals


@dataclass
class Case:
    """A bad input: ``argv(w)`` is refused with one line containing every needle."""

    id: str
    argv: Callable[[Path], list[Any]]
    needles: Callable[[Path], tuple[str, ...]]
    prepare: Callable[[Path], None] | None = None


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _train(w: Path, *extra: Any, out: str = "new") -> list[Any]:
    return ["train", w / "micro.yaml", *extra, "--out", w / out, "--quiet"]


def _eval(w: Path, *extra: Any, run: str = "run") -> list[Any]:
    return ["eval", w / run, "--data", w / "data" / "test.txt", *extra]


CASES = [
    # --- bad data files (already refused before)
    Case(
        "malformed data line",
        lambda w: ["eval", w / "run", "--data", w / "bad.txt"],
        lambda w: (f"{w / 'bad.txt'}:2", "expected"),
    ),
    Case(
        "empty data file",
        lambda w: ["eval", w / "run", "--data", w / "empty.txt"],
        lambda w: (str(w / "empty.txt"), "empty"),
    ),
    Case(
        "missing data file",
        lambda w: ["eval", w / "run", "--data", w / "nope.txt"],
        lambda w: (str(w / "nope.txt"), "no such file"),
    ),
    # --- bad config values (already refused before)
    Case(
        "unknown config key", lambda w: _train(w, "model.colour=red"), lambda w: ("'model.colour'", "allowed")
    ),
    Case("wrong type", lambda w: _train(w, "optim.lr=fast"), lambda w: ("'optim.lr'", "expected float")),
    Case("lambda < 0", lambda w: _train(w, "seqvcr.lambda1=-1"), lambda w: ("'seqvcr.lambda1'", ">= 0")),
    Case("proj dim 0", lambda w: _train(w, "seqvcr.proj_dim=0"), lambda w: ("'seqvcr.proj_dim'", "> 0")),
    Case(
        "layer out of range",
        lambda w: _train(w, "seqvcr.layer=7"),
        lambda w: ("'seqvcr.layer'", "out of range"),
    ),
    Case(
        "batch < 2 with Seq-VCR",
        lambda w: _train(w, "optim.batch_size=1"),
        lambda w: ("optim.batch_size=1", "at least 2"),
    ),
    Case(
        "resume with another config",
        lambda w: _train(w, "optim.lr=1e-2", out="interrupted"),
        lambda w: (str(w / "interrupted"), "different config", "--force"),
    ),
    Case(
        "finished run without --force", lambda w: _train(w, out="run"), lambda w: ("finished run", "--force")
    ),
    # --- item 2: --force validates everything before it removes the finished run
    Case(
        "--force with an empty training file",
        lambda w: _train(w, f"task.train_file={w / 'empty.txt'}", "--force", out="run"),
        lambda w: (str(w / "empty.txt"), "empty"),
    ),
    Case(
        "--force with a malformed training file",
        lambda w: _train(w, f"task.train_file={w / 'bad.txt'}", "--force", out="run"),
        lambda w: (f"{w / 'bad.txt'}:2",),
    ),
    Case(
        "--force with a too small block size",
        lambda w: _train(w, "model.block_size=4", "--force", out="run"),
        lambda w: ("model.block_size=4",),
    ),
    # --- item 4: truncated or garbage weights and checkpoints name the file
    Case(
        "truncated model.safetensors: eval",
        _eval,
        lambda w: (str(w / "run" / MODEL_FILE), "truncated or corrupt"),
        lambda w: _truncate(w / "run" / MODEL_FILE),
    ),
    Case(
        "garbage model.safetensors: entropy",
        lambda w: ["entropy", w / "run", "--data", w / "data" / "test.txt", "--out", w / "ent"],
        lambda w: (str(w / "run" / MODEL_FILE), "truncated or corrupt"),
        lambda w: (w / "run" / MODEL_FILE).write_bytes(b"garbage" * 100),
    ),
    Case(
        "truncated model.safetensors: export-hf",
        lambda w: ["export-hf", w / "run", w / "hf"],
        lambda w: (str(w / "run" / MODEL_FILE),),
        lambda w: _truncate(w / "run" / MODEL_FILE),
    ),
    Case(
        "truncated model.safetensors: report",
        lambda w: ["report", w / "run", "--data", w / "data" / "test.txt", "--out", w / "rep", "--quiet"],
        lambda w: (str(w / "run" / MODEL_FILE),),
        lambda w: _truncate(w / "run" / MODEL_FILE),
    ),
    Case(
        "truncated checkpoint: resume",
        lambda w: _train(w, out="interrupted"),
        lambda w: (str(w / "interrupted" / CHECKPOINT_FILE), "truncated or corrupt"),
        lambda w: _truncate(w / "interrupted" / CHECKPOINT_FILE),
    ),
    Case(
        "truncated checkpoint: eval of an interrupted run",
        lambda w: _eval(w, run="interrupted"),
        lambda w: (str(w / "interrupted" / CHECKPOINT_FILE),),
        lambda w: _truncate(w / "interrupted" / CHECKPOINT_FILE),
    ),
    Case(
        "weights of another model",
        _eval,
        lambda w: (str(w / "run" / MODEL_FILE), "another run"),
        lambda w: shutil.copyfile(w / "arith_run" / MODEL_FILE, w / "run" / MODEL_FILE),
    ),
    Case(
        "unreadable result.json",
        _eval,
        lambda w: (str(w / "run" / "result.json"), "unreadable"),
        lambda w: (w / "run" / "result.json").write_text('{"steps": 2'),
    ),
    # --- item 6: filesystem errors are one line, found before the work
    Case(
        "train --out below a file",
        lambda w: ["train", w / "micro.yaml", "--out", w / "afile" / "run", "--quiet"],
        lambda w: (str(w / "afile"), "not a directory"),
    ),
    Case(
        "data --out below a file",
        lambda w: ["data", "mult", "--digits", "2", "--train", "5", "--out", w / "afile" / "d"],
        lambda w: (str(w / "afile"), "not a directory"),
    ),
    Case(
        "export-hf below a file",
        lambda w: ["export-hf", w / "run", w / "afile" / "hf"],
        lambda w: (str(w / "afile"), "not a directory"),
    ),
    Case(
        "export-hf into the run itself",
        lambda w: ["export-hf", w / "run", w / "run", "--force"],
        lambda w: ("the run directory itself",),
    ),
    Case(
        "eval --predictions is a directory",
        lambda w: _eval(w, "--predictions", w / "data"),
        lambda w: ("--predictions", str(w / "data"), "is a directory"),
    ),
    Case(
        "eval --predictions below a file",
        lambda w: _eval(w, "--predictions", w / "afile" / "p.jsonl"),
        lambda w: ("--predictions", str(w / "afile")),
    ),
    Case(
        "entropy --out below a file",
        lambda w: ["entropy", w / "run", "--data", w / "data" / "test.txt", "--out", w / "afile" / "e"],
        lambda w: (str(w / "afile"),),
    ),
    Case(
        "report --out below a file",
        lambda w: ["report", w / "run", "--data", w / "data" / "test.txt", "--out", w / "afile" / "r"],
        lambda w: (str(w / "afile"),),
    ),
    Case(
        "run directory is a file",
        lambda w: ["eval", w / "afile", "--data", w / "data" / "test.txt"],
        lambda w: (str(w / "afile"), "is a file"),
    ),
    # --- item 8: accepted-but-wrong numbers
    Case("eval --limit -1", lambda w: _eval(w, "--limit", "-1"), lambda w: ("--limit", ">= 0")),
    Case("eval --batch-size 0", lambda w: _eval(w, "--batch-size", "0"), lambda w: ("--batch-size", ">= 1")),
    Case(
        "data --train -5",
        lambda w: ["data", "mult", "--train", "-5", "--out", w / "d"],
        lambda w: ("--train", ">= 0"),
    ),
    Case(
        "data with nothing to write",
        lambda w: ["data", "mult", "--train", "0", "--out", w / "d"],
        lambda w: ("nothing to write",),
    ),
    Case(
        "data: more problems than exist",
        lambda w: ["data", "mult", "--digits", "1", "--train", "100", "--out", w / "data", "--force"],
        lambda w: ("81 distinct problems",),
    ),
    Case(
        "sweep --workers 0",
        lambda w: ["sweep", w / "plan.yaml", "--workers", "0", "--dry-run"],
        lambda w: ("--workers", ">= 1"),
    ),
    Case(
        "sweep --workers -2",
        lambda w: ["sweep", w / "plan.yaml", "--workers", "-2", "--dry-run"],
        lambda w: ("--workers", ">= 1"),
    ),
    Case(
        "sweep --threads 0",
        lambda w: ["sweep", w / "plan.yaml", "--threads", "0", "--dry-run"],
        lambda w: ("--threads", ">= 1"),
    ),
    Case("optim.lr=nan", lambda w: _train(w, "optim.lr=nan"), lambda w: ("'optim.lr'", "finite")),
    Case("optim.lr=.inf", lambda w: _train(w, "optim.lr=.inf"), lambda w: ("'optim.lr'", "finite")),
    Case("train.threads=-1", lambda w: _train(w, "train.threads=-1"), lambda w: ("'train.threads'", ">= 1")),
    # --- item 9: YAML that silently meant something else
    Case(
        "duplicate YAML key",
        lambda w: ["train", w / "dup.yaml", "--out", w / "new", "--quiet"],
        lambda w: (f"{w / 'dup.yaml'}:4", "duplicate key 'name'"),
    ),
    Case(
        "null config section",
        lambda w: ["train", w / "null.yaml", "--out", w / "new", "--quiet"],
        lambda w: ("'model'", "empty (null)"),
    ),
    Case(
        "config is a directory",
        lambda w: ["train", w / "data", "--out", w / "new", "--quiet"],
        lambda w: (str(w / "data"), "directory"),
    ),
    # --- item 6: an OSError that no check foresaw is still one line (and leaves no temporary file)
    Case(
        "data --force onto a directory named test.txt",
        lambda w: [
            "data",
            "mult",
            "--digits",
            "2",
            "--test",
            "5",
            "--train",
            "0",
            "--out",
            w / "x",
            "--force",
        ],
        lambda w: (str(w / "x" / "test.txt"), "directory"),
        lambda w: (w / "x" / "test.txt").mkdir(parents=True),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_refused_with_one_line_and_nothing_changes(
    case: Case, w: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if case.prepare is not None:
        case.prepare(w)
    before = snapshot(w)
    code, _, err = cli(case.argv(w), capsys)
    command = str(case.argv(w)[0])
    assert_one_line_error(code, err, command, case.needles(w))
    assert snapshot(w) == before


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_an_unwritable_directory(w: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = w / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        before = snapshot(w)
        for argv in (
            _train(w, out="locked/run"),
            ["data", "mult", "--train", "5", "--out", locked / "d"],
            ["export-hf", w / "run", locked / "hf"],
        ):
            code, _, err = cli(argv, capsys)
            assert_one_line_error(code, err, str(argv[0]), (str(locked), "not writable"))
        assert snapshot(w) == before
    finally:
        locked.chmod(0o755)


# ---------------------------------------------------------------------------------------------- recoveries


def _train_records(run: Path) -> list[int]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in recs if r["kind"] == "train"]


@pytest.mark.slow
def test_torn_metrics_line_is_dropped_on_resume(w: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 3: a kill while a record was written leaves half a line; the run resumes without it."""
    run = w / "interrupted"
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 1')
    code, _, err = cli(_train(w, out="interrupted"), capsys)
    assert code == 0, err
    assert _train_records(run) == [5, 10, 15, 20]
    a = read_checkpoint(w / "run" / CHECKPOINT_FILE).tensors
    b = read_checkpoint(run / CHECKPOINT_FILE).tensors
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed exactly


@pytest.mark.slow
def test_disk_full_while_checkpointing(
    w: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 5: the second checkpoint hits a full disk half-way: one line, the temporary file is gone, the
    step-10 checkpoint is intact and the same command resumes from it."""
    real = checkpoints.write_bytes_atomic
    calls = {"n": 0}

    def write(path: Any, fill: Callable[[Any], None]) -> Path:
        if Path(path).name == CHECKPOINT_FILE:
            calls["n"] += 1
            if calls["n"] == 2:

                def half_then_full(f: Any) -> None:
                    buf = io.BytesIO()
                    fill(buf)
                    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                return real(path, half_then_full)
        return real(path, fill)

    monkeypatch.setattr(checkpoints, "write_bytes_atomic", write)
    run = w / "new"
    code, _, err = cli(_train(w), capsys)
    line = assert_one_line_error(
        code,
        err,
        "train",
        (
            str(run / CHECKPOINT_FILE),
            "step 20",
            "No space left on device",
            "last good checkpoint (step 10) is kept",
        ),
    )
    assert "Traceback" not in line
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.safetensors", "config.yaml", "metrics.jsonl"]
    assert read_checkpoint(run / CHECKPOINT_FILE).step == 10
    monkeypatch.setattr(checkpoints, "write_bytes_atomic", real)
    code, _, err = cli(_train(w), capsys)
    assert code == 0, err
    assert _train_records(run) == [5, 10, 15, 20]


@pytest.mark.slow
def test_nan_before_the_first_checkpoint_names_no_checkpoint(
    w: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 5: the NaN message names a checkpoint only when one exists."""
    real_forward = training.TrainModule.forward

    def nan(self: Any, x: Any, y: Any, mask: Any, rows: Any) -> Any:
        loss, logged = real_forward(self, x, y, mask, rows)
        return loss * float("nan"), logged

    monkeypatch.setattr(training.TrainModule, "forward", nan)
    code, _, err = cli(_train(w), capsys)
    line = assert_one_line_error(code, err, "train", ("NaN/inf between steps 0 and 5", "no checkpoint"))
    assert "step 0)" not in line and "last good checkpoint" not in line
    assert not (w / "new" / CHECKPOINT_FILE).exists()


@pytest.mark.slow
def test_eval_on_another_difficulty_warns(w: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 10: 1-operator expressions scored with a 2-operator model: scored, with a warning that says
    what the file holds and what the model was trained on."""
    code, out, err = cli(["eval", w / "arith_run", "--data", w / "arith1" / "test.txt", "--json"], capsys)
    assert code == 0, err
    assert "warning:" in err and "holds expressions with 1 operator" in err and "arith 2 ops" in err
    assert "1 operator" in json.loads(out)["data_note"]
    code, _, err = cli(["eval", w / "run", "--data", w / "data" / "test.txt"], capsys)
    assert code == 0 and "warning" not in err  # the same difficulty: no warning


# ---------------------------------------------------------------------------------------------- processes


def _seqvcr(*args: Any) -> list[str]:
    return [sys.executable, "-m", "seqvcr", *map(str, args)]


def _wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its new parent, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
def test_kill_9_during_training_then_resume_is_exact(w: Path) -> None:
    """Killed with SIGKILL (at whatever point it was, a checkpoint write included), the same command
    resumes and ends with the weights of an uninterrupted run."""
    steps = [
        "optim.max_steps=400",
        "train.checkpoint_every=20",
        "train.log_every=20",
        "train.eval_every=1000",
    ]
    run = w / "killed"
    proc = subprocess.Popen(
        _seqvcr("train", w / "micro.yaml", *steps, "--out", run, "--quiet"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert _wait_for(lambda: (run / CHECKPOINT_FILE).is_file() or proc.poll() is not None, 120)
        time.sleep(0.2)
        proc.kill()
    finally:
        proc.wait()
    assert not (run / "result.json").exists(), "finished before the kill; the test needs a longer run"
    done = subprocess.run(
        _seqvcr("train", w / "micro.yaml", *steps, "--out", run, "--quiet"),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert not list(run.glob("*.tmp*"))
    code = main(["train", str(w / "micro.yaml"), *steps, "--out", str(w / "straight"), "--quiet"])
    assert code == 0
    a = read_checkpoint(w / "straight" / CHECKPOINT_FILE).tensors
    b = read_checkpoint(run / CHECKPOINT_FILE).tensors
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _train_records(run) == list(range(20, 401, 20))


def _sweep_plan(w: Path, steps: int) -> Path:
    plan = yaml.safe_load((w / "plan.yaml").read_text())
    plan["config"]["optim"]["max_steps"] = steps
    plan["config"]["train"].update({"checkpoint_every": 10, "log_every": 10, "eval_every": 10_000})
    plan["ablations"][0]["replacements"] = [8]
    path = w / "long_plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def _worker_pid(sweep: Path) -> int | None:
    """The pid a worker writes into its run's lock file."""
    for lock in sweep.glob("runs/*/.lock"):
        parts = lock.read_text().split()
        if len(parts) == 2:
            return int(parts[1])
    return None


def _spawned_children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(k) for k in kids if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text(errors="replace")]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("when", ["while the worker starts", "after a checkpoint"])
def test_killed_sweep_leaves_no_worker_and_the_next_sweep_resumes(
    when: str, w: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 7: SIGKILL of ``seqvcr sweep`` (right as its worker starts, or mid-run) takes the worker with
    it; the next ``seqvcr sweep`` finishes the run (resuming its checkpoint when there is one)."""
    plan = _sweep_plan(w, 150)
    sweep = w / "sw"
    parent = subprocess.Popen(
        _seqvcr("sweep", plan, "--out", sweep, "--workers", "1", "--threads", "1", "--no-report"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        if when == "while the worker starts":
            assert _wait_for(lambda: bool(_spawned_children(parent.pid)), 120)
            workers = _spawned_children(parent.pid)
        else:
            assert _wait_for(lambda: bool(list(sweep.glob(f"runs/*/{CHECKPOINT_FILE}"))), 120)
            workers = [pid for pid in [_worker_pid(sweep)] if pid is not None]
        assert workers
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        gone = _wait_for(lambda: not any(_alive(pid) for pid in workers), 20)
    finally:
        for pid in workers:  # never leave a process of this test behind, whatever happened
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert gone, "a worker outlived its killed parent"
    (rid,) = [p.name for p in (sweep / "runs").iterdir()]
    assert not (sweep / "runs" / rid / "result.json").exists(), "an orphaned worker finished the run"
    code, _, err = cli(
        ["sweep", plan, "--out", sweep, "--workers", "1", "--threads", "1", "--no-report"], capsys
    )
    assert code == 0, err
    assert json.loads((sweep / "runs" / rid / "result.json").read_text())["steps"] == 150
    if when == "after a checkpoint":
        assert "resumed at step" in (sweep / "runs" / rid / "train.log").read_text()
