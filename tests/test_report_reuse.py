"""``seqvcr report`` reuses up-to-date ``seqvcr eval`` / ``seqvcr entropy`` results instead of decoding
again, takes ``--limit`` and ``--no-throughput``, and keeps what it has made when it is interrupted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import micro_overrides

import seqvcr.analysis.report as R
import seqvcr.evaluation as EV
from seqvcr import config as C
from seqvcr import training
from seqvcr.cli import main
from seqvcr.tasks import make_task, write_examples


@pytest.fixture
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("reuse")
    task = make_task("mult", digits=2)
    test = root / "test.txt"
    write_examples(task, test, task.generate(50, seed=21))
    cfg = C.load_config(None, micro_overrides("seqvcr_pause", 10) + [f"task.test_file={test}"])
    training.train(cfg, root / "run", progress=False)
    return root / "run", test


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the report decodes (evaluate_file, the throughput's evaluate) and measures entropy."""
    calls = {"eval": 0, "entropy": 0, "throughput": 0}
    real_eval, real_ent, real_thr = EV.evaluate_file, R.compute_layer_entropy, R.measure_throughput

    def eval_file(*a: Any, **k: Any) -> Any:
        calls["eval"] += 1
        return real_eval(*a, **k)

    def entropy(*a: Any, **k: Any) -> Any:
        calls["entropy"] += 1
        return real_ent(*a, **k)

    def throughput(*a: Any, **k: Any) -> Any:
        calls["throughput"] += 1
        return real_thr(*a, **k)

    monkeypatch.setattr(EV, "evaluate_file", eval_file)
    monkeypatch.setattr(R, "compute_layer_entropy", entropy)
    monkeypatch.setattr(R, "measure_throughput", throughput)
    return calls


def _report(run: Path, test: Path, out: Path, *extra: str) -> dict[str, Any]:
    argv = ["report", str(run), "--data", str(test), "--n", "20", "--out", str(out), "--quiet", *extra]
    assert main(argv) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_report_reuses_eval_and_entropy_of_the_run_directory(
    run: tuple[Path, Path], tmp_path: Path, counted: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    rd, test = run
    assert main(["eval", str(rd), "--data", str(test), "--quiet", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert Path(ev["saved"]).parent == rd / "eval"
    assert main(["entropy", str(rd), "--data", str(test), "--n", "20", "--quiet"]) == 0
    capsys.readouterr()
    counted.update(eval=0, entropy=0)

    summary = _report(rd, test, tmp_path / "rep", "--no-throughput")
    assert counted == {"eval": 0, "entropy": 0, "throughput": 0}  # nothing decoded or measured again
    r = summary["runs"][0]
    assert r["exact_match"] == ev["exact_match"] and r["position_accuracy"] == ev["position_accuracy"]
    assert r["reused"] == {"eval": ev["saved"], "entropy": str(rd / "entropy.json")}
    assert r["T_norm"] is None and summary["throughput_measured"] is False
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Reused, not measured again" in text and "Not measured (`--no-throughput`)" in text
    assert not (tmp_path / "rep" / "throughput.md").exists()
    assert (tmp_path / "rep" / "analysis" / "run" / "predictions.jsonl").is_file()


@pytest.mark.slow
def test_stale_results_are_measured_again(
    run: tuple[Path, Path], tmp_path: Path, counted: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    rd, test = run
    assert main(["eval", str(rd), "--data", str(test), "--quiet"]) == 0
    assert main(["entropy", str(rd), "--data", str(test), "--n", "20", "--quiet"]) == 0
    capsys.readouterr()
    counted.update(eval=0, entropy=0)
    _report(rd, test, tmp_path / "a", "--no-throughput", "--limit", "10")  # another limit: eval again
    assert counted["eval"] == 1 and counted["entropy"] == 0
    _report(rd, test, tmp_path / "b", "--no-throughput", "--n", "15")  # another sample: entropy again
    assert counted["eval"] == 1 and counted["entropy"] == 1
    # other data under the same name: both again
    task = make_task("mult", digits=2)
    write_examples(task, test, task.generate(50, seed=22))
    _report(rd, test, tmp_path / "c", "--no-throughput")
    assert counted["eval"] == 2 and counted["entropy"] == 2
    # other weights (the run retrained): both again
    cfg = C.load_config(rd / "config.yaml", ["optim.max_steps=5"])
    training.train(cfg, rd, force=True, progress=False)
    summary = _report(rd, test, tmp_path / "d", "--no-throughput")
    assert counted["eval"] == 3 and counted["entropy"] == 3
    assert summary["runs"][0]["reused"] == {}


@pytest.mark.slow
def test_limit_and_throughput(run: tuple[Path, Path], tmp_path: Path, counted: dict[str, int]) -> None:
    rd, test = run
    summary = _report(rd, test, tmp_path / "rep", "--limit", "12")
    r = summary["runs"][0]
    assert r["n"] == 12 and r["limit"] == 12 and r["throughput"]["n"] == 12
    assert counted["throughput"] == 1 and summary["throughput_measured"] is True
    assert (tmp_path / "rep" / "throughput.csv").is_file()
    assert "--limit 12" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.slow
def test_an_interrupted_report_keeps_its_work_and_the_same_command_finishes_it(
    run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: dict[str, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    rd, test = run
    out = tmp_path / "rep"

    def ctrl_c(*a: Any, **k: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(R, "measure_throughput", ctrl_c)  # Ctrl-C during the timed decodings
    argv = ["report", str(rd), "--data", str(test), "--n", "20", "--out", str(out), "--quiet"]
    assert main(argv) == 130
    assert not (out / "report.md").exists()  # never looks complete
    for name in ("entropy_per_layer.png", "position_accuracy.png", "loss_curves.png", "accuracy.md",
                 "entropy.csv", "analysis/run/eval.json", "analysis/run/entropy.json"):
        assert (out / name).is_file(), name
    assert not list(tmp_path.glob(".rep.tmp-*"))
    assert counted["eval"] == 1 and counted["entropy"] == 1

    monkeypatch.setattr(R, "measure_throughput", _real_throughput)
    assert main(argv) == 0  # no --force needed: there was no report yet
    summary = json.loads((out / "summary.json").read_text())
    assert counted["eval"] == 1 and counted["entropy"] == 1  # picked up from analysis/run/
    assert summary["runs"][0]["reused"]["eval"] == str(out / "analysis" / "run" / "eval.json")
    assert (out / "report.md").is_file() and (out / "throughput.md").is_file()


_real_throughput = R.measure_throughput


@pytest.mark.slow
def test_force_keeps_nothing_of_the_old_report_but_reusable_measurements(
    run: tuple[Path, Path], tmp_path: Path, counted: dict[str, int]
) -> None:
    rd, test = run
    out = tmp_path / "rep"
    _report(rd, test, out, "--no-throughput")
    (out / "throughput.md").write_text("stale")  # as if an earlier report had measured it
    _report(rd, test, out, "--no-throughput", "--force")
    assert not (out / "throughput.md").exists()
    assert counted["eval"] == 1  # the second report reused analysis/run/


@pytest.mark.slow
def test_a_copied_run_directory_is_still_up_to_date(
    run: tuple[Path, Path], tmp_path: Path, counted: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """Results are matched by content (SHA-256 of weights and data), not by path or date."""
    rd, test = run
    assert main(["eval", str(rd), "--data", str(test), "--quiet"]) == 0
    capsys.readouterr()
    copy = tmp_path / "copy"
    shutil.copytree(rd, copy)  # new modification times, another path
    counted["eval"] = 0
    _report(copy, test, tmp_path / "rep", "--no-throughput")
    assert counted["eval"] == 0


@pytest.mark.slow
def test_a_demo_layout_is_reused_without_decoding(
    run: tuple[Path, Path], tmp_path: Path, counted: dict[str, int]
) -> None:
    """A run at OUT/runs/NAME (``seqvcr demo``'s layout) whose report kept its measurements in
    OUT/analysis/NAME/: a report elsewhere decodes nothing and measures no entropy again."""
    rd, test = run
    demo = tmp_path / "demo_out"
    shutil.copytree(rd, demo / "runs" / "vanilla")
    _report(demo / "runs" / "vanilla", test, demo, "--no-throughput")  # what the demo does
    assert counted["eval"] == 1 and counted["entropy"] == 1
    summary = _report(demo / "runs" / "vanilla", test, tmp_path / "other", "--no-throughput")
    assert counted["eval"] == 1 and counted["entropy"] == 1
    kept = demo / "analysis" / "vanilla"
    assert summary["runs"][0]["reused"] == {"eval": str(kept / "eval.json"),
                                            "entropy": str(kept / "entropy.json")}


@pytest.mark.slow
def test_a_published_runs_test_eval_is_reused(
    run: tuple[Path, Path], tmp_path: Path, counted: dict[str, int]
) -> None:
    """``test_eval.json`` (the re-scoring ``seqvcr.experiments.publish`` writes) is reused; its
    predictions are in the run's ``eval/`` directory."""
    rd, test = run
    summary = EV.evaluate_file(str(rd), str(test), save=True)
    (rd / "test_eval.json").write_text(json.dumps(summary))
    Path(summary["saved"]).unlink()  # only test_eval.json is left to find
    counted["eval"] = 0
    report = _report(rd, test, tmp_path / "rep", "--no-throughput")
    assert counted["eval"] == 0
    assert report["runs"][0]["reused"]["eval"] == str(rd / "test_eval.json")
