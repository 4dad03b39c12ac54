"""``seqvcr demo`` end to end at a micro scale (``--scale smoke``): data, two trainings in parallel
processes, evaluation, entropy and the report -- and the report's numbers are those of naive greedy
decoding scored by hand and of Eq. 2 from NumPy's eigenvalues, for the same runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from oracles import oracle_entropy_means, oracle_eval

from seqvcr.analysis.demo import SCALES, _schedule, make_config, pick_scale, run_demo
from seqvcr.cli import main
from seqvcr.errors import ConfigError, RunDirError


@pytest.mark.slow
def test_demo_smoke_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    summary = run_demo(out, scale="smoke", command="seqvcr demo --scale smoke", progress=False)
    report = out / "report.md"
    assert summary["report"] == str(report) and report.is_file()
    text = report.read_text()
    for needle in ("Findings", "Vanilla (no CoT)", "Seq-VCR + Pause (2)", "position_accuracy.png",
                   "entropy_per_layer.png", "entropy_hist.png", "loss_curves.png", "T_norm",
                   "seqvcr demo --scale smoke"):
        assert needle in text, needle
    for png in ("entropy_per_layer.png", "entropy_hist.png", "position_accuracy.png", "loss_curves.png"):
        assert (out / png).stat().st_size > 5000
    # every run is an ordinary run, trained by the CLI from a saved config
    s = SCALES["smoke"]
    test_file = str((out / "data" / "test.txt").resolve())
    rsum = json.loads((out / "summary.json").read_text())
    assert [r["method"] for r in rsum["runs"]] == list(s.methods)
    for r in rsum["runs"]:
        rd = out / "runs" / r["method"]
        result = json.loads((rd / "result.json").read_text())
        assert result["steps"] == s.steps
        assert result["command"].startswith("seqvcr train ") and "configs" in result["command"]
        # the numbers against naive greedy decoding scored by hand (3x3: 6 digits and <eos>) and Eq. 2
        em, pos, _ = oracle_eval(rd, test_file, budget=7)
        assert r["exact_match"] == pytest.approx(em) and r["n"] == s.test_limit
        assert r["position_accuracy"] == pytest.approx(pos)
        indices = json.loads((out / "analysis" / r["name"] / "entropy.json").read_text())["indices"]
        assert len(set(indices)) == s.entropy_sequences
        assert r["entropy_mean"] == pytest.approx(oracle_entropy_means(rd, test_file, indices), rel=1e-6)
    demo = json.loads((out / "demo.json").read_text())
    assert demo["seconds"]["total"] > 0 and demo["steps"] == s.steps
    # a finished demo is not replaced without --force
    with pytest.raises(RunDirError, match="already holds a demo report"):
        run_demo(out, scale="smoke", progress=False)
    assert main(["demo", "--scale", "smoke", "--out", str(out)]) == 2
    assert "already holds a demo report" in capsys.readouterr().err


def test_demo_choices() -> None:
    assert pick_scale("smoke", "cpu").name == "smoke"
    assert pick_scale("cpu", "auto").name == "cpu"
    with pytest.raises(ConfigError):
        pick_scale("huge", "auto")
    cfg = make_config(SCALES["cpu"], "seqvcr_pause", "train.txt", "ref:mult/3x3/test.txt", 100, "cpu")
    assert cfg.method.num_pauses == 2 and cfg.method.seqvcr and cfg.optim.max_steps == 100
    assert cfg.task.test_file == "ref:mult/3x3/test.txt" and cfg.train.threads == 1
    lanes = _schedule({"a": 3.0, "b": 2.0, "c": 2.0, "d": 1.0}, 2)
    assert sorted(map(sorted, lanes)) == [["a", "d"], ["b", "c"]]
