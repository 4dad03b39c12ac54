"""Progress of eval, entropy, report, sweep and bench: a bar on a terminal, plain lines in a log file or
under SLURM, nothing with --quiet (seqvcr.progress and the commands that use it)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import micro_overrides

from seqvcr import config as C
from seqvcr import progress as P
from seqvcr import training
from seqvcr.cli import main
from seqvcr.tasks import make_task, write_examples


class FakeTerminal(io.StringIO):
    """A stream that says it is a TTY (what a person's terminal is)."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_and_a_file_gets_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    term = FakeTerminal()
    with P.ProgressBar(10, "eval", unit="examples", stream=term) as bar:
        assert bar.is_bar
        for _ in range(10):
            bar.update()
        bar.write("an event")
    text = term.getvalue()
    assert "\r" in text and "10/10" in text and "an event" in text  # tqdm redraws in place

    log = io.StringIO()
    with P.ProgressBar(100, "eval", unit="examples", stream=log, interval=0.0) as bar:
        assert not bar.is_bar
        for _ in range(4):
            bar.update(25)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("eval: 25/100 examples (25%)") and "eta" in lines[0]
    assert lines[-1].startswith("eval: 100/100 examples in ")
    assert len(lines) == 4  # three progress lines, then the final one


def test_plain_lines_are_occasional() -> None:
    log = io.StringIO()
    with P.ProgressBar(1000, "entropy", stream=log, interval=3600.0) as bar:
        for _ in range(1000):
            bar.update()
    assert log.getvalue().splitlines() == [log.getvalue().splitlines()[-1]]  # only the final line
    assert log.getvalue().startswith("entropy: 1000/1000")


def test_slurm_means_lines_even_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert not P.interactive(FakeTerminal())
    monkeypatch.delenv("SLURM_JOB_ID")
    assert P.interactive(FakeTerminal()) and not P.interactive(io.StringIO())


def test_quiet_and_failure_write_nothing() -> None:
    term = FakeTerminal()
    with P.ProgressBar(5, "x", stream=term, enabled=False) as bar:
        bar.update(5)
        bar.write("event")
    assert term.getvalue() == ""
    log = io.StringIO()
    with pytest.raises(RuntimeError), P.ProgressBar(5, "x", stream=log, interval=1e9) as bar:
        bar.update(2)
        raise RuntimeError("boom")
    assert log.getvalue() == ""  # an error stays the command's one line


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("progress")
    task = make_task("mult", digits=2)
    test = root / "test.txt"
    write_examples(task, test, task.generate(40, seed=7))
    training.train(C.load_config(None, micro_overrides("seqvcr_pause", 10)), root / "run", progress=False)
    return root / "run", test


def _stderr_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, desc",
    [
        (lambda r, t: ["eval", r, "--data", t, "--batch-size", "8"], "eval: 40/40 examples"),
        (lambda r, t: ["entropy", r, "--data", t, "--n", "20", "--batch-size", "5"],
         "entropy: 20/20 sequences"),
        (lambda r, t: ["report", r, "--data", t, "--n", "10", "--out", str(Path(t).parent / "rep"),
                       "--force"],
         "throughput: 200/200 examples"),
    ],
    ids=["eval", "entropy", "report"],
)
def test_commands_show_progress_and_quiet_silences_it(
    run: tuple[Path, Path], argv, desc: str, capsys: pytest.CaptureFixture[str]
) -> None:
    r, t = map(str, run)
    err = _stderr_of(argv(r, t), capsys)  # stderr is not a terminal here: plain lines
    assert desc in err, err
    quiet = _stderr_of([*argv(r, t), "--quiet"], capsys)
    assert quiet == "", quiet


@pytest.mark.slow
def test_bench_progress_and_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--quick", "--only", "a", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)]
    assert "bench: (a)" in _stderr_of(argv, capsys)
    assert _stderr_of([*argv, "--quiet"], capsys) == ""
    assert json.loads((tmp_path / "bench.json").read_text())["results"]["a"]


@pytest.mark.slow
def test_bench_bar_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    term = FakeTerminal()
    monkeypatch.setattr("sys.stderr", term)
    argv = ["bench", "--quick", "--only", "a", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)]
    assert main(argv) == 0
    text = term.getvalue()
    assert "bench: (a)" in text and "1/1" in text and "\r" in text


def test_local_sweep_progress_and_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bar over the runs on a terminal, a line per run in a log file, neither with quiet (crash lines
    stay). The workers here run ``print`` instead of training: the executor's own output is tested."""
    from seqvcr.experiments import executors as E

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    runs = [{"id": f"r{i}", "setting": f"s{i}", "study": "st", "seed": 0} for i in range(2)]
    for r in runs:
        (tmp_path / "runs" / r["id"]).mkdir(parents=True)
    term = FakeTerminal()
    summary = E.run_local(tmp_path, runs, workers=1, threads=1, stream=term, target=print)
    assert summary.done == ["r0", "r1"]
    assert "\r" in term.getvalue() and "2/2" in term.getvalue() and "done  r1" in term.getvalue()

    log = io.StringIO()
    E.run_local(tmp_path, runs, workers=1, threads=1, stream=log, target=print)
    assert "\r" not in log.getvalue()
    assert "[  1/2] done  r0" in log.getvalue() and "[  2/2] done  r1" in log.getvalue()

    quiet = io.StringIO()
    E.run_local(tmp_path, runs, workers=1, threads=1, stream=quiet, target=print, quiet=True)
    assert quiet.getvalue() == ""
    crash = io.StringIO()
    E.run_local(tmp_path, runs[:1], workers=1, threads=1, stream=crash, target=divmod, quiet=True)
    assert "CRASH r0" in crash.getvalue()  # divmod of 5 arguments fails: a crashed worker


@pytest.mark.slow
@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log"])
def test_training_shows_a_bar_on_a_terminal_and_lines_in_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    """`seqvcr train`'s progress: a tqdm bar redrawn in place on a terminal, with the loss lines above it;
    in a log, the loss lines alone, one per log interval, without carriage returns."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    stream = FakeTerminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    training.train(C.load_config(None, micro_overrides("vanilla", 10)), tmp_path / "run", progress=True)
    text = stream.getvalue()
    loss_lines = [line for line in text.replace("\r", "\n").splitlines() if "/10] loss" in line]
    assert len({line.split("]")[0] for line in loss_lines}) == 2  # steps 5 and 10 (train.log_every=5)
    assert ("\r" in text and "10/10" in text) == terminal
