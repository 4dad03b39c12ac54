"""``seqvcr demo`` end to end at a micro scale (``--scale smoke``): data, a sweep of two trainings in the
sweep executor's worker processes, evaluation, entropy and the report -- and the report's numbers are
those of naive greedy decoding scored by hand and of Eq. 2 from NumPy's eigenvalues, for the same runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from oracles import oracle_entropy_means, oracle_eval

from seqvcr.cli import main
from seqvcr.errors import ConfigError, RunDirError
from seqvcr.experiments import sweep as S
from seqvcr.experiments.demo import SCALES, _makespan, demo_plan, pick_scale, plan_steps, run_demo
from seqvcr.experiments.plan import parse_plan


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
    # OUT is a sweep directory whose runs the sweep worker trained, evaluated and measured; the report
    # reused those measurements instead of decoding again
    s = SCALES["smoke"]
    test_file = str((out / "data" / "test.txt").resolve())
    rsum = json.loads((out / "summary.json").read_text())
    assert [r["method"] for r in rsum["runs"]] == list(s.methods)
    manifest = S.load_manifest(out)
    assert [S.run_status(out, r["id"]) for r in manifest["runs"]] == ["done"] * len(s.methods)
    demo = json.loads((out / "demo.json").read_text())
    for r, d in zip(rsum["runs"], demo["runs"]):
        rd = Path(d["run_dir"])
        assert rd.parent == out / "runs" and r["name"] == rd.name
        result = json.loads((rd / "result.json").read_text())
        assert result["steps"] == s.steps
        assert result["command"] == f"seqvcr sweep-run {out} {rd.name}"
        assert set(r["reused"]) == {"eval", "entropy"}, r["reused"]
        assert Path(r["reused"]["eval"]).parent == rd / "eval"
        # the numbers against naive greedy decoding scored by hand (3x3: 6 digits and <eos>) and Eq. 2
        em, pos, _ = oracle_eval(rd, test_file, budget=7)
        assert r["exact_match"] == pytest.approx(em) and r["n"] == s.test_limit
        assert r["position_accuracy"] == pytest.approx(pos)
        indices = json.loads((out / "analysis" / r["name"] / "entropy.json").read_text())["indices"]
        assert len(set(indices)) == s.entropy_sequences
        assert r["entropy_mean"] == pytest.approx(oracle_entropy_means(rd, test_file, indices), rel=1e-6)
    assert demo["seconds"]["total"] > 0 and demo["steps"] == s.steps
    # a finished demo is not replaced without --force
    with pytest.raises(RunDirError, match="already holds a demo report"):
        run_demo(out, scale="smoke", progress=False)
    assert main(["demo", "--scale", "smoke", "--out", str(out)]) == 2
    assert "already holds a demo report" in capsys.readouterr().err
    # a demo stopped before its report resumes: its finished runs are kept, not trained again
    (out / "report.md").unlink()
    trained = {d["run_dir"]: (Path(d["run_dir"]) / "result.json").stat().st_mtime_ns for d in demo["runs"]}
    again = run_demo(out, scale="smoke", progress=False)
    assert [d["run_dir"] for d in again["runs"]] == list(trained) and (out / "report.md").is_file()
    assert all((Path(rd) / "result.json").stat().st_mtime_ns == t for rd, t in trained.items())


@pytest.mark.slow
def test_the_step_count_is_timed_by_a_probe_sweep() -> None:
    """The probe trains a few steps of every configuration with the sweep executor and fits the step
    count to the budget (30 s, of which 15 s per run a worker starts go to start-up and evaluation)."""
    s = dataclasses.replace(SCALES["smoke"], minutes=0.5, steps=100_000)
    plan = plan_steps(s, None, progress=False)
    assert set(plan["step_seconds"]) == set(s.methods) and all(v > 0 for v in plan["step_seconds"].values())
    assert s.min_steps <= plan["steps"] < s.steps and plan["steps"] == plan["fits"] // 50 * 50


def test_demo_choices() -> None:
    assert pick_scale("smoke", "cpu").name == "smoke"
    assert pick_scale("cpu", "auto").name == "cpu"
    with pytest.raises(ConfigError):
        pick_scale("huge", "auto")
    test = "ref:mult/3x3/test.txt"
    plan = parse_plan(demo_plan(SCALES["cpu"], test, test, 100, "cpu"))
    settings = plan.studies[0].settings
    assert [st.label for st in settings] == ["vanilla", "pause", "seqvcr", "seqvcr_pause"]
    cfg = plan.setting_config(settings[-1], 0)
    assert cfg.method.num_pauses == 2 and cfg.method.seqvcr and cfg.optim.max_steps == 100
    assert cfg.task.test_file == test and cfg.train.threads == 1 and cfg.seqvcr.proj_dim == 512
    assert (cfg.seqvcr.lambda1, cfg.seqvcr.lambda2) == (1.0, 0.004)  # the paper's, from the defaults
    assert plan.eval_data == test and plan.entropy_sequences == 1000 and not plan.entropy_normalize
    # costliest first, each to the first free worker: {3, 1} and {2, 2}
    assert _makespan([3.0, 2.0, 2.0, 1.0], 2) == 4.0 and _makespan([3.0, 2.0], 1) == 5.0
