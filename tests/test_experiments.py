"""Ablation plans and sweeps: validation, expansion, executors, idempotency, resume, aggregation."""

from __future__ import annotations

import copy
import csv
import itertools
import json
import math
import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from oracles import oracle_eval

from seqvcr import config as C
from seqvcr.checkpoints import CHECKPOINT_FILE
from seqvcr.errors import ConfigError, SeqVCRError
from seqvcr.experiments import aggregate as A
from seqvcr.experiments import executors as E
from seqvcr.experiments import sweep as S
from seqvcr.experiments.plan import load_plan, parse_plan

ROOT = Path(__file__).resolve().parents[1]
PLANS = sorted((ROOT / "plans").rglob("*.yaml"))

# A model and task small enough that a run trains in about a second on one CPU core.
MINI: dict[str, Any] = {
    "task": {"name": "mult", "digits": 2, "train_size": 200, "valid_size": 16},
    "model": {"preset": "tiny", "n_layer": 1, "n_head": 2, "n_embd": 32},
    "method": {"name": "seqvcr_pause", "pauses": 1},
    "seqvcr": {"proj_dim": 16},
    "optim": {"max_steps": 8, "batch_size": 8, "lr": 1e-3},
    "train": {"device": "cpu", "log_every": 4, "eval_every": 1000, "checkpoint_every": 4,
              "eval_examples": 8},
}


def mini_plan(**extra: Any) -> dict[str, Any]:
    plan = {
        "name": "mini",
        "config": copy.deepcopy(MINI),
        "ablations": [
            {"part": "projection", "action": "REPLACE", "key": "seqvcr.proj_dim", "replacements": [8, 16]}
        ],
        "metrics": ["exact_match", "position_accuracy"],
        "seeds": [0],
    }
    plan.update(extra)
    return plan


def write_plan(tmp_path: Path, plan: dict[str, Any], name: str = "plan.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(plan, sort_keys=False))
    return p


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.slow
@pytest.mark.parametrize("path", PLANS, ids=lambda p: str(p.relative_to(ROOT / "plans")))
def test_shipped_plans_load(path: Path) -> None:
    plan = load_plan(path)
    assert plan.studies and plan.seeds
    S.expand(plan)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(colour="red"), "unknown plan key 'colour'"),
        (lambda p: p["ablations"][0].update(action="SWAP"), "action 'SWAP' is not one of"),
        (lambda p: p["ablations"][0].update(key="seqvcr.proj_dims"), "did you mean 'seqvcr.proj_dim'"),
        (lambda p: p["ablations"][0].update(key="seqvcr"), "is a config section"),
        (lambda p: p["ablations"][0].update(key="optim.lr", replacements=["fast"]), "expected float"),
        (lambda p: p["ablations"][0].update(key="seqvcr.over", replacements=["rows"]), "not one of"),
        (lambda p: p["ablations"][0].update(replacements=[8, 8]), "give the same config"),
        (lambda p: p["ablations"][0].update(labels=["a"]), "1 labels for 2 replacements"),
        (lambda p: p["ablations"][0].update(colour=1), "unknown key 'colour'"),
        (lambda p: p["config"]["model"].update(layers=3), "no key 'model.layers'"),
        (lambda p: p.update(metrics=["accuracy"]), "'accuracy' is not one of"),
        (lambda p: p.update(seeds=[0, 0]), "repeated seed"),
        (lambda p: p.update(eval_data="ref:mult/9x9/test.txt"), "no such reference file"),
        (lambda p: p["config"]["method"].update(name="vanilla"), "has no effect"),
        (lambda p: p.update(ablations=[{"action": "REMOVE", "component": "cot"}]), "does not have it"),
        (lambda p: p.update(ablations=[{"action": "ADD", "component": "seqvcr"}]), "already has it"),
        (lambda p: p.update(ablations=[{"action": "ADD", "component": "wings"}]), "component 'wings'"),
        (lambda p: p["ablations"][0].update(replacements=[{"seqvcr.lambda3": 1.0}], key=None),
         "no key 'seqvcr.lambda3'"),
        (lambda p: p.update(cross=True), "at least two ablations"),
    ],
)
def test_plan_validation_errors(tmp_path: Path, change: Any, message: str) -> None:
    raw = mini_plan()
    change(raw)
    if raw["ablations"][0].get("key", "x") is None:
        del raw["ablations"][0]["key"]
    with pytest.raises(ConfigError, match=None) as info:
        load_plan(write_plan(tmp_path, raw))
    assert message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_missing_base_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="base: configs/nope.yaml: file not found"):
        load_plan(write_plan(tmp_path, mini_plan(base="configs/nope.yaml")))


def test_add_remove_components() -> None:
    raw = mini_plan(ablations=[
        {"action": "REMOVE", "component": "pause"},
        {"action": "REMOVE", "component": "seqvcr", "name": "no_reg"},
        {"action": "REPLACE", "key": "method.pauses", "replacements": [1, 3]},
    ])
    plan = parse_plan(raw)
    methods = {s.label: plan.setting_config(s, 0).method.name for st in plan.studies for s in st.settings}
    assert methods["-pause (seqvcr)"] == "seqvcr"
    assert methods["-seqvcr (pause)"] == "pause"
    assert methods["base (seqvcr_pause)"] == "seqvcr_pause"
    vanilla = copy.deepcopy(MINI)
    vanilla["method"]["name"] = "vanilla"
    add = {"action": "ADD", "component": "pause",
           "replacements": [{"method.pauses": 2}, {"method.pauses": 4}]}
    plan = parse_plan({"name": "x", "config": vanilla, "ablations": [add]})
    cfgs = [plan.setting_config(s, 0) for s in plan.studies[0].settings]
    got = [(c.method.name, c.method.num_pauses) for c in cfgs]
    assert got == [("vanilla", 0), ("pause", 2), ("pause", 4)]


# ---------------------------------------------------------------------------------------------- expansion


SEED000_PAIRS = [(0.5, 0.002), (1.0, 0.004), (2.0, 0.008), (0.05, 0.25), (0.1, 0.5), (0.2, 1.0)]


def test_lambda_plan_expands_to_the_seed_pairs_on_both_tasks() -> None:
    plan = load_plan(ROOT / "plans" / "lambda_sensitivity.yaml")
    studies, runs = S.expand(plan)
    assert len(runs) == 6 * 2 * len(plan.seeds)
    got = set()
    for r in runs:
        cfg = r.config
        got.add((cfg["seqvcr"]["lambda1"], cfg["seqvcr"]["lambda2"], cfg["task"]["name"]))
    assert got == {(a, b, t) for a, b in SEED000_PAIRS for t in ("mult", "arith")}
    # the arithmetic runs get Feng et al.'s minGPT setting, the multiplication runs GPT-2 small
    for r in runs:
        preset = r.config["model"]["preset"]
        assert preset == ("gpt2-small" if r.config["task"]["name"] == "mult" else "mingpt")


def test_projection_plan_expands_to_the_four_dims() -> None:
    plan = load_plan(ROOT / "plans" / "projection_dim.yaml")
    _, runs = S.expand(plan)
    dims = sorted({r.config["seqvcr"]["proj_dim"] for r in runs})
    assert dims == [512, 1024, 2048, 4096]
    assert len(runs) == 4 * len(plan.seeds)


def test_run_ids_are_stable_hashes_of_the_resolved_config() -> None:
    plan = parse_plan(mini_plan(seeds=[0, 1]))
    _, runs1 = S.expand(plan)
    _, runs2 = S.expand(parse_plan(mini_plan(seeds=[0, 1])))
    assert [r.id for r in runs1] == [r.id for r in runs2]
    assert len({r.id for r in runs1}) == 4
    for r in runs1:
        cfg = C.resolve(C.from_dict(r.config))
        assert S.run_id(C.to_dict(cfg)) == r.id
        assert len(r.id) == 10
    # identical settings from two ablations are one run
    raw = mini_plan(ablations=[
        {"action": "REPLACE", "key": "seqvcr.proj_dim", "replacements": [8, 16]},
        {"action": "REPLACE", "key": "seqvcr.eta", "replacements": [0.001, 0.01]},
    ])
    _, runs = S.expand(parse_plan(raw))
    assert len(runs) == 3  # proj_dim=16 and eta=0.001 are both the base


@pytest.mark.slow
def test_cli_print_lists_pending_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seqvcr.cli import main

    out = tmp_path / "sweep"
    code = main(["sweep", str(ROOT / "plans" / "lambda_sensitivity.yaml"), "--executor", "print",
                 "--out", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 36 and all(line.startswith(f"seqvcr sweep-run {out} ") for line in lines)
    for a, b in SEED000_PAIRS:
        for task in ("mult 4x4", "arith 5 ops"):
            assert sum(f"lambda1={a!r}, lambda2={b!r} | {task}" in line for line in lines) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(not Path(r["dir"]).is_absolute() for r in manifest["runs"])
    assert len(manifest["studies"][0]["settings"]) == 12


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seqvcr.cli import main

    out = tmp_path / "sweep"
    assert main(["sweep", str(ROOT / "plans" / "projection_dim.yaml"), "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 settings x 3 seeds = 12 runs" in text
    assert not out.exists()


def test_finetune_runs_are_skipped_without_weights(tmp_path: Path) -> None:
    plan = load_plan(ROOT / "plans" / "cpu" / "finetune.yaml")
    sweep = S.prepare_sweep(plan, tmp_path / "ft")
    statuses = {S.run_status(sweep, r["id"]) for r in S.load_manifest(sweep)["runs"] if r["skip"]}
    assert statuses == {"skipped"}
    skipped = [r for r in S.load_manifest(sweep)["runs"] if r["skip"]]
    assert skipped and all("--gpt2-dir" in r["skip"] for r in skipped)
    assert S.run_one(sweep, skipped[0]["id"]).status == "skipped"


def test_gpt2_dir_is_stored_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A relative --gpt2-dir must still point at the weights when a run starts in another directory."""
    from seqvcr.cli import main

    (tmp_path / "weights").mkdir()
    monkeypatch.chdir(tmp_path)
    plan = ROOT / "plans" / "cpu" / "finetune.yaml"
    assert main(["sweep", str(plan), "--out", "ft", "--executor", "print", "--gpt2-dir", "weights"]) == 0
    capsys.readouterr()
    runs = S.load_manifest(tmp_path / "ft")["runs"]
    finetuned = [r for r in runs if r["overrides"].get("model.init_from")]
    assert finetuned and not any(r["skip"] for r in runs)
    for r in finetuned:
        spec = json.loads((tmp_path / "ft" / r["dir"] / "spec.json").read_text())
        assert spec["config"]["model"]["init_from"] == str((tmp_path / "weights").resolve())
    # the plan's own gpt2_dir key is resolved the same way
    raw = yaml.safe_load(plan.read_text())
    raw["gpt2_dir"] = "weights"
    in_plan = parse_plan(raw, path=plan)
    values = [v for a in in_plan.ablations for s in a.settings for v in s.overrides.values()]
    assert str((tmp_path / "weights").resolve()) in values


# ---------------------------------------------------------------------------------------------- execution


@pytest.mark.slow
def test_run_one_is_idempotent_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import seqvcr.training as T

    sweep = S.prepare_sweep(parse_plan(mini_plan()), tmp_path / "sw")
    ids = [r["id"] for r in S.load_manifest(sweep)["runs"]]

    # interrupt the first run right after its first checkpoint (step 4 of 8), as a kill would
    real_save = T._checkpoint

    def save_then_die(*args: Any, **kwargs: Any) -> None:
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        S.run_one(sweep, ids[0], log_to_file=True)
    monkeypatch.setattr(T, "_checkpoint", real_save)
    assert S.run_status(sweep, ids[0]) == "interrupted"
    assert S.run_status(sweep, ids[1]) == "pending"

    out = S.run_one(sweep, ids[0])
    assert out.status == "done" and out.trained
    rd = sweep / "runs" / ids[0]
    # progress goes to train.log (file descriptor 2); under pytest's capture it stays on sys.stderr
    assert "resumed at step 4" in (rd / "train.log").read_text() + capsys.readouterr().err
    assert json.loads((rd / "result.json").read_text())["steps"] == 8
    steps = [json.loads(x)["step"] for x in (rd / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "train"]
    assert steps == [4, 8]
    ev = json.loads((rd / "eval.json").read_text())
    assert ev["n"] == 16 and ev["run_dir"] == f"runs/{ids[0]}"
    # the scores against naive greedy decoding of the saved model, scored by hand (2x2: 4 digits, <eos>)
    em, pos, _ = oracle_eval(rd, sweep / ev["data"], budget=5, limit=ev["eval_limit"] or 0)
    assert ev["exact_match"] == pytest.approx(em) and ev["position_accuracy"] == pytest.approx(pos)

    # a second call does not train again and leaves every file as it was
    before = {p.name: p.stat().st_mtime_ns for p in rd.iterdir() if p.name != ".lock"}
    again = S.run_one(sweep, ids[0])
    assert again.status == "done" and not again.trained
    assert {p.name: p.stat().st_mtime_ns for p in rd.iterdir() if p.name != ".lock"} == before


@pytest.mark.slow
def test_local_executor_isolates_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seqvcr.cli import main

    raw = mini_plan(ablations=[
        {"part": "context", "action": "REPLACE", "key": "model.block_size", "replacements": [4, 64, 32]},
    ])
    plan_file = write_plan(tmp_path, raw)
    out = tmp_path / "sw"
    code = main(["sweep", str(plan_file), "--out", str(out), "--workers", "2", "--threads", "1"])
    assert code == 1
    err = capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    status = {r["setting"] + f"/{r['seed']}": r["status"] for r in manifest["runs"]}
    assert status == {"block_size=4/0": "crashed", "block_size=64/0": "done", "block_size=32/0": "done"}
    assert err.count("CRASH") == 1 and "shorter than the longest sequence" in err
    crashed = [r["id"] for r in manifest["runs"] if r["status"] == "crashed"]
    first = (out / "runs" / crashed[0] / "error.txt").read_text().splitlines()[0]
    assert first.startswith("RunDirError: model.block_size=4")
    report = (out / "report" / "report.md").read_text()
    assert "block_size=4, seed 0" in report and "crashed" in report

    # re-running does nothing for the finished runs and retries only the crashed ones
    # re-running: finished runs are not redone; only the crashed one is pending again
    done = [r["id"] for r in manifest["runs"] if r["status"] == "done"]
    before = {rid: (out / "runs" / rid / "result.json").stat().st_mtime_ns for rid in done}
    assert main(["sweep", str(plan_file), "--out", str(out), "--no-report", "--only", *done]) == 0
    assert "nothing to run" in capsys.readouterr().err
    assert {rid: (out / "runs" / rid / "result.json").stat().st_mtime_ns for rid in done} == before
    main(["sweep", str(plan_file), "--out", str(out), "--executor", "print"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[3] for line in lines] == crashed


def test_slurm_executor_with_a_fake_submitit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    params: dict[str, Any] = {}

    class Job:
        def __init__(self, i: int, value: Any) -> None:
            self.job_id = f"77_{i}"
            self.value = value

        def result(self) -> Any:
            return self.value

    class AutoExecutor:
        def __init__(self, folder: str) -> None:
            self.folder = folder

        def update_parameters(self, **kw: Any) -> None:
            params.update(kw)

        def map_array(self, fn: Any, *arg_lists: Any) -> list[Job]:
            assert hasattr(fn, "checkpoint")
            jobs = []
            for i, args in enumerate(zip(*arg_lists)):
                calls.append((args[0], args[1]))
                jobs.append(Job(i, None))
            return jobs

    fake = types.ModuleType("submitit")
    fake.AutoExecutor = AutoExecutor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "submitit", fake)
    sweep = S.prepare_sweep(parse_plan(mini_plan(seeds=[0, 1])), tmp_path / "sw")
    runs = S.load_manifest(sweep)["runs"]
    ids = E.run_slurm(sweep, runs, E.SlurmOptions(partition="gpu", time_min=30), name="mini")
    assert ids == [f"77_{i}" for i in range(4)]
    assert [c[1] for c in calls] == [r["id"] for r in runs]
    assert all(Path(c[0]).is_absolute() for c in calls)
    assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 30

    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(SeqVCRError, match="pip install"):
        E.run_slurm(sweep, runs, E.SlurmOptions(), name="mini")


# ---------------------------------------------------------------------------------------------- aggregation


def test_t_quantile_matches_tables() -> None:
    for nu, t in [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622), (30, 2.0423)]:
        assert A.t_quantile(0.975, nu) == pytest.approx(t, abs=1e-4)
    st = A.summarize([1.0])
    assert st.n == 1 and st.mean == 1.0 and math.isnan(st.std) and math.isnan(st.ci_low)


def _fake_sweep(root: Path) -> tuple[Path, dict[str, dict[int, dict[str, Any]]]]:
    """A sweep directory with hand-made result/eval/entropy files: no training."""
    sweep = S.prepare_sweep(parse_plan(mini_plan(
        seeds=[0, 1, 2], metrics=["exact_match", "matrix_entropy", "position_accuracy"],
        ablations=[{"part": "proj", "action": "REPLACE", "key": "seqvcr.proj_dim",
                    "replacements": [8, 16, 32]}],
    )), root)
    manifest = S.load_manifest(sweep)
    data: dict[str, dict[int, dict[str, Any]]] = {}
    k = 0
    for setting in manifest["studies"][0]["settings"]:
        data[setting["label"]] = {}
        for seed, rid in setting["runs"].items():
            k += 1
            if setting["label"] == "proj_dim=32" and seed == "2":
                continue  # one run has not finished: n = 2 for that row
            em = (k * 37 % 11) / 11
            pos = [1.0, (k % 5) / 5, (k % 3) / 3]
            layers = [0.5 + 0.01 * k, 0.3 + 0.02 * k, 0.4 + 0.005 * k * k, 0.9 - 0.01 * k]
            rd = sweep / "runs" / rid
            spec = json.loads((rd / "spec.json").read_text())
            (rd / "result.json").write_text(json.dumps({"steps": 8, "train_time_s": 1.0}))
            (rd / "eval.json").write_text(json.dumps({
                "exact_match": em, "position_accuracy": pos, "n": 16,
                "eval_data": spec["eval_data"], "eval_limit": spec["eval_limit"]}))
            (rd / "entropy.json").write_text(json.dumps({
                "layers": [{"layer": i, "mean": v, "std": 0.0} for i, v in enumerate(layers)],
                "eval_data": spec["eval_data"], "entropy_sequences": spec["entropy_sequences"],
                "entropy_normalize": spec["entropy_normalize"]}))
            data[setting["label"]][int(seed)] = {"em": em, "pos": pos, "layers": layers}
    return sweep, data


def _naive(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    t = {2: 12.706204736174694, 3: 4.302652729749462}[n]  # t(0.975, n-1), from tables
    return mean, std, t * std / n**0.5


@pytest.mark.slow
def test_report_aggregates_over_seeds(tmp_path: Path) -> None:
    sweep, data = _fake_sweep(tmp_path / "sw")
    md = A.report_sweep(sweep)
    assert md == sweep / "report" / "report.md"
    rows = {r["setting"]: r for r in csv.DictReader((sweep / "report" / "summary.csv").open())}
    assert set(rows) == {"proj_dim=8", "proj_dim=16", "proj_dim=32"}
    for label, seeds in data.items():
        row = rows[label]
        assert int(row["seeds_done"]) == len(seeds) and int(row["seeds_planned"]) == 3
        mean, std, half = _naive([s["em"] for s in seeds.values()])
        assert float(row["exact_match_mean"]) == pytest.approx(mean)
        assert float(row["exact_match_std"]) == pytest.approx(std)
        assert float(row["exact_match_ci95_low"]) == pytest.approx(mean - half)
        assert float(row["exact_match_ci95_high"]) == pytest.approx(mean + half)
        inner = [sum(s["layers"][1:3]) / 2 for s in seeds.values()]
        mean, std, half = _naive(inner)
        assert float(row["entropy_mean"]) == pytest.approx(mean)
        assert float(row["entropy_ci95_high"]) == pytest.approx(mean + half)
    layers = list(csv.DictReader((sweep / "report" / "layer_entropy.csv").open()))
    l2 = next(r for r in layers if r["setting"] == "proj_dim=8" and r["layer"] == "2")
    assert float(l2["mean"]) == pytest.approx(sum(s["layers"][2] for s in data["proj_dim=8"].values()) / 3)
    pos = list(csv.DictReader((sweep / "report" / "position_accuracy.csv").open()))
    # answer positions count from 1 (as in the run report): position "2" is the second answer token
    p2 = next(r for r in pos if r["setting"] == "proj_dim=16" and r["position"] == "2")
    assert float(p2["mean"]) == pytest.approx(sum(s["pos"][1] for s in data["proj_dim=16"].values()) / 3)
    assert not any(r["position"] == "0" for r in pos)
    text = md.read_text()
    for label in data:
        assert f"| {label} |" in text
    assert "| proj_dim=32 | 2/3 |" in text and "pending" in text
    for suffix in ("accuracy", "entropy", "layer_entropy", "position_accuracy"):
        assert (sweep / "report" / f"proj_dim_{suffix}.png").stat().st_size > 1000

    # a copy of the sweep directory (without checkpoints) reports the same numbers
    copy_dir = tmp_path / "elsewhere"
    shutil.copytree(sweep, copy_dir, ignore=shutil.ignore_patterns(CHECKPOINT_FILE, "*.tmp*", S.LOCK))
    A.report_sweep(copy_dir)
    assert (copy_dir / "report" / "summary.csv").read_text() == (sweep / "report" / "summary.csv").read_text()


@pytest.mark.slow
def test_report_refuses_a_foreign_folder(tmp_path: Path) -> None:
    sweep, _ = _fake_sweep(tmp_path / "sw")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(SeqVCRError, match="does not hold a sweep report"):
        A.report_sweep(sweep, out=other)
    assert sorted(p.name for p in other.iterdir()) == ["mine.txt"]
    assert (other / "mine.txt").read_text() == "keep me"
    md = A.report_sweep(sweep)
    first = {p.name: p.read_bytes() for p in md.parent.iterdir() if p.suffix in (".md", ".csv")}
    assert {"report.md", "summary.csv", "runs.csv"} <= set(first)
    (md.parent / "summary.csv").write_text("edited by hand\n")
    # our own report is replaced without --force, with the same tables again
    assert A.report_sweep(sweep) == md
    assert {p.name: p.read_bytes() for p in md.parent.iterdir() if p.suffix in (".md", ".csv")} == first


def _publish_module() -> types.ModuleType:
    return _module("publish_runs")


@pytest.mark.slow
def test_published_study_reports_like_its_sweep(tmp_path: Path) -> None:
    """Renamed run directories (manifest ``dir``) are found by the report; nothing else is copied."""
    sweep, data = _fake_sweep(tmp_path / "sw")
    first = S.load_manifest(sweep)["runs"][0]["id"]
    (sweep / "runs" / first / "checkpoint.safetensors").write_text("x")
    A.report_sweep(sweep)
    pub = _publish_module()
    out = tmp_path / "results" / "study"
    assert pub.main([str(sweep), str(out), "--no-weights", "--name", "proj_dim=8=p8"]) == 0
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["p8_s0", "p8_s1", "p8_s2", "proj_dim_16_s0", "proj_dim_16_s1", "proj_dim_16_s2",
                     "proj_dim_32_s0", "proj_dim_32_s1"]  # the unfinished run is left out
    assert not list(out.rglob("checkpoint*"))
    A.report_sweep(out)
    assert (out / "report" / "summary.csv").read_text() == (sweep / "report" / "summary.csv").read_text()
    with pytest.raises(SystemExit, match="exists; use --force"):
        pub.main([str(sweep), str(out), "--no-weights"])


def test_manifest_dir_outside_the_sweep_is_refused(tmp_path: Path) -> None:
    sweep, _ = _fake_sweep(tmp_path / "sw")
    m = S.load_manifest(sweep)
    m["runs"][0]["dir"] = "../elsewhere"
    (sweep / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(SeqVCRError, match="outside the sweep directory"):
        A.report_sweep(sweep)


def test_recording_keys_at_their_defaults_leave_run_ids_unchanged() -> None:
    """train.log_to, train.snapshot_steps and the W&B keys change what a run records, not what it
    trains: at their defaults they are left out of the id, so sweeps keep the ids (and finished runs)
    they had before the keys existed; set otherwise they are part of it."""
    d = C.to_dict(C.resolve(C.from_dict(copy.deepcopy(MINI))))
    before = copy.deepcopy(d)
    for key in ("log_to", "snapshot_steps", "wandb_project", "wandb_mode"):
        del before["train"][key]
    kept = copy.deepcopy(d)
    assert S.run_id(d) == S.run_id(before)
    assert d == kept  # the config given to run_id is left as it was
    changed = copy.deepcopy(d)
    changed["train"]["snapshot_steps"] = [4]
    assert S.run_id(changed) != S.run_id(d)


@pytest.mark.slow
def test_report_learning_curves_average_the_seeds_per_step(tmp_path: Path) -> None:
    sweep, data = _fake_sweep(tmp_path / "sw")
    manifest = S.load_manifest(sweep)
    setting = manifest["studies"][0]["settings"][0]  # proj_dim=8, three finished seeds
    curves: dict[int, list[tuple[int, float, float]]] = {}
    for seed, rid in setting["runs"].items():
        rows = [(step, (int(seed) + 1) * step / 1000, 2.0 / (step + int(seed))) for step in (10, 20, 30)]
        if seed == "1":
            rows = rows[:2]  # a seed that logged fewer evaluations: steps average what exists
        curves[int(seed)] = rows
        lines = []
        for step, em, lm in rows:
            lines.append(json.dumps({"kind": "train", "step": step, "lm_loss": lm}))
            lines.append(json.dumps({"kind": "eval", "step": step, "split": "valid", "exact_match": em}))
        (sweep / "runs" / rid / "metrics.jsonl").write_text("\n".join(lines) + "\n{torn")
    md = A.report_sweep(sweep)
    rows_csv = csv.DictReader((sweep / "report" / "learning_curves.csv").open())
    got = {(r["curve"], int(r["step"])): r for r in rows_csv if r["setting"] == setting["label"]}
    for step in (10, 20, 30):
        ems = [em for rows in curves.values() for s, em, _ in rows if s == step]
        lms = [lm for rows in curves.values() for s, _, lm in rows if s == step]
        assert int(got[("valid_exact_match", step)]["n"]) == len(ems)
        assert float(got[("valid_exact_match", step)]["mean"]) == pytest.approx(sum(ems) / len(ems))
        assert float(got[("train_lm_loss", step)]["mean"]) == pytest.approx(sum(lms) / len(lms))
    assert (sweep / "report" / "proj_dim_learning_curves.png").stat().st_size > 1000
    assert "proj_dim_learning_curves.png" in md.read_text()


@pytest.mark.slow
def test_publish_one_study_of_a_sweep_shares_its_common_run(tmp_path: Path) -> None:
    """Two studies sharing their base point: each published study holds it under its own label."""
    plan = mini_plan(
        seeds=[0],
        ablations=[
            {"part": "proj", "action": "REPLACE", "key": "seqvcr.proj_dim", "replacements": [8, 16]},
            {"part": "coefficients", "name": "lam", "action": "REPLACE", "key": "seqvcr.lambda1",
             "replacements": [1.0, 2.0]},
        ],
    )
    sweep = S.prepare_sweep(parse_plan(plan), tmp_path / "sw")
    manifest = S.load_manifest(sweep)
    assert len(manifest["runs"]) == 3  # proj 16 = lambda1 1.0 (the defaults): one run
    for run in manifest["runs"]:
        rd = sweep / "runs" / run["id"]
        spec = json.loads((rd / "spec.json").read_text())
        (rd / "result.json").write_text(json.dumps({"steps": 8}))
        (rd / "eval.json").write_text(json.dumps({"exact_match": 0.5, "position_accuracy": [1.0], "n": 16,
                                                  "eval_data": spec["eval_data"], "eval_limit": 0}))
    pub = _publish_module()
    assert pub.main([str(sweep), str(tmp_path / "lam"), "--no-weights", "--study", "lam"]) == 0
    names = sorted(p.name for p in (tmp_path / "lam").iterdir() if p.is_dir())
    assert names == ["lambda1_1.0_s0", "lambda1_2.0_s0"]
    m = json.loads((tmp_path / "lam" / "manifest.json").read_text())
    assert [st["name"] for st in m["studies"]] == ["lam"] and len(m["runs"]) == 2
    A.report_sweep(tmp_path / "lam")
    rows = list(csv.DictReader((tmp_path / "lam" / "report" / "summary.csv").open()))
    assert [r["seeds_done"] for r in rows] == ["1", "1"]
    with pytest.raises(SystemExit, match="no study 'nope'"):
        pub.main([str(sweep), str(tmp_path / "x"), "--no-weights", "--study", "nope"])


@pytest.mark.slow
def test_republishing_keeps_what_was_measured_of_unchanged_runs(tmp_path: Path) -> None:
    """Publishing with weights re-scores every run; the evaluations name the study's own directory
    (not the temporary one it is built in), and republishing (--force) keeps, for a run with the
    same weights, its later measurements and -- when the re-scoring agrees but for timing -- its
    evaluation files byte for byte; a changed evaluation is written anew, other weights keep nothing."""
    from seqvcr.tasks import make_task, write_examples

    task = make_task("mult", digits=2)
    test = tmp_path / "test.txt"
    write_examples(task, test, task.generate(24, seed=5))
    sweep = S.prepare_sweep(parse_plan(mini_plan(
        seeds=[0], eval_data=str(test),
        ablations=[{"part": "proj", "action": "REPLACE", "key": "seqvcr.proj_dim", "replacements": [8]}],
    )), tmp_path / "sw")
    (rid,) = [r["id"] for r in S.load_manifest(sweep)["runs"]]
    assert S.run_one(sweep, rid).status == "done"
    pub = _publish_module()
    out = tmp_path / "results" / "study"
    rd = out / "proj_dim_8_s0"

    assert pub.main([str(sweep), str(out)]) == 0
    first = json.loads((rd / "test_eval.json").read_text())
    assert first["run_dir"] == str(rd) and Path(first["saved"]) == rd / "eval" / Path(first["saved"]).name
    assert json.loads(Path(first["saved"]).read_text())["run_dir"] == str(rd)
    assert first["exact_match"] == json.loads((sweep / "runs" / rid / "eval.json").read_text())["exact_match"]
    assert ".partial" not in "".join(p.read_text() for p in rd.rglob("*.json"))

    # measured since, and a timing no re-scoring reproduces: both survive a republication
    (rd / "probe.json").write_text('{"probe": 1}')
    (rd / "test_eval.json").write_text(json.dumps({**first, "seconds": 123.0}))
    before = {p.relative_to(rd): p.read_bytes() for p in rd.rglob("*") if p.is_file()}
    assert pub.main([str(sweep), str(out), "--force"]) == 0
    assert {p.relative_to(rd): p.read_bytes() for p in rd.rglob("*") if p.is_file()} == before

    # an evaluation that no longer agrees (here: edited) is replaced by the fresh one
    (rd / "test_eval.json").write_text(json.dumps({**first, "n": 999}))
    assert pub.main([str(sweep), str(out), "--force"]) == 0
    again = json.loads((rd / "test_eval.json").read_text())
    assert again["n"] == first["n"] and (rd / "probe.json").is_file()
    (rd / "test_eval.json").write_text('{"torn')  # unreadable: as if absent, written anew
    assert pub.main([str(sweep), str(out), "--force"]) == 0
    assert json.loads((rd / "test_eval.json").read_text())["exact_match"] == first["exact_match"]

    # other weights: nothing of the earlier publication is kept
    (rd / "model.safetensors").write_bytes(b"other weights")
    assert pub.main([str(sweep), str(out), "--force"]) == 0
    assert not (rd / "probe.json").exists()
    published = (rd / "model.safetensors").read_bytes()
    assert published == (sweep / "runs" / rid / "model.safetensors").read_bytes()


def test_dry_run_estimates_the_time_left_from_the_finished_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A setting's runs to go take its finished runs' mean time; a setting without one, its FLOPs at the
    finished runs' seconds per FLOP; a started run, the steps after its checkpoint. Computed by hand."""
    import torch

    from seqvcr.checkpoints import META_KEY, write_safetensors
    from seqvcr.cli import main
    from seqvcr.experiments.estimate import run_cost

    plan = mini_plan(seeds=[0, 1, 2], ablations=[
        {"part": "depth", "action": "REPLACE", "key": "model.n_layer", "replacements": [1, 2]}])
    plan_file = write_plan(tmp_path, plan)
    sweep = S.prepare_sweep(parse_plan(plan), tmp_path / "sw")
    manifest = S.load_manifest(sweep)
    ids = {(r["setting"], r["seed"]): r["id"] for r in manifest["runs"]}
    assert main(["sweep", str(plan_file), "--dry-run", "--out", str(sweep)]) == 0
    assert "time left" not in capsys.readouterr().out  # nothing finished: nothing measured
    for seed, seconds in ((0, 36_000.0), (1, 108_000.0)):
        (sweep / "runs" / ids[("n_layer=1", seed)] / "result.json").write_text(
            json.dumps({"train_time_s": seconds}))
    for key, step in ((("n_layer=1", 2), 4), (("n_layer=2", 0), 2)):  # started: checkpoints at 4 and 2 of 8
        write_safetensors(sweep / "runs" / ids[key] / "checkpoint.safetensors", {"x": torch.zeros(1)},
                          {META_KEY: json.dumps({"step": step})})
    assert main(["sweep", str(plan_file), "--dry-run", "--out", str(sweep)]) == 0
    out = capsys.readouterr().out
    runs = {r.setting: r for r in S.expand(parse_plan(plan))[1]}
    f1, f2 = (run_cost(runs[f"n_layer={n}"].config).flops for n in (1, 2))
    one = (36_000 + 108_000) / 2 / 3600  # hours, the mean of the finished pair
    two = (36_000 + 108_000) / (2 * f1) * f2 / 3600  # by FLOPs at their pace
    assert f"n_layer=1: 2 done, 1 to go, {one * (1 - 4 / 8):,.1f} h (a run {one:,.1f} h, mean of 2)" in out
    assert (f"n_layer=2: 0 done, 3 to go, {two * (3 - 2 / 8):,.1f} h (a run {two:,.1f} h, by FLOPs" in out)
    assert f"left: 4 runs, {one / 2 + two * (3 - 2 / 8):,.1f} hours of one worker" in out


def _module(name: str) -> types.ModuleType:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _planned_runs(sweep: Path) -> Iterator[tuple[int, str, Path, dict[str, Any]]]:
    """(1-based count, setting label, run directory, spec) of every run of a prepared sweep's first study."""
    k = 0
    for setting in S.load_manifest(sweep)["studies"][0]["settings"]:
        for rid in setting["runs"].values():
            k += 1
            rd = sweep / "runs" / rid
            yield k, setting["label"], rd, json.loads((rd / "spec.json").read_text())


def test_printed_tables_match_a_naive_computation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = [(0.5, 0.002), (1.0, 0.004), (2.0, 0.008), (0.05, 0.25), (0.1, 0.5), (0.2, 1.0)]
    replacements = [{"seqvcr.lambda1": a, "seqvcr.lambda2": b} for a, b in pairs]
    plan = mini_plan(seeds=[0, 1, 2], metrics=["exact_match", "matrix_entropy", "position_accuracy"],
                     ablations=[{"part": "coefficients", "name": "lambda", "action": "REPLACE",
                                 "replacements": replacements}])
    sweep = S.prepare_sweep(parse_plan(plan), tmp_path / "sw")
    values: dict[str, list[float]] = {}
    inner: list[tuple[float, float]] = []  # (exact match, intermediate entropy) per run
    for k, label, rd, spec in _planned_runs(sweep):
        em = (k * 7 % 10) / 10
        values.setdefault(label, []).append(em)
        (rd / "result.json").write_text(json.dumps({"steps": 8}))
        (rd / "eval.json").write_text(json.dumps({
            "exact_match": em, "position_accuracy": [1.0, em, 0.5], "n": 16,
            "eval_data": spec["eval_data"], "eval_limit": spec["eval_limit"]}))
        (rd / "entropy.json").write_text(json.dumps({
            "layers": [{"layer": i, "mean": 0.1 * (i + 1) + 0.01 * (k % 4), "std": 0.0}
                       for i in range(3)],
            "eval_data": spec["eval_data"], "entropy_sequences": spec["entropy_sequences"],
            "entropy_normalize": spec["entropy_normalize"]}))
        inner.append((em, 0.25 + 0.01 * (k % 4)))  # mean of layers 1 and 2
    from seqvcr.cli import main

    png = tmp_path / "lambda.png"
    assert main(["report", str(sweep), "--lambda-plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert png.stat().st_size > 1000
    for label, ems in values.items():
        mean, _, half = _naive(ems)
        row = next(line for line in out.splitlines() if line.startswith(f"| {label} |"))
        assert f"| 3/3 | {mean:.3f} ± {half:.3f} |" in row
    # the hardest positions are the two with the lowest mean accuracy: positions 2 and 3 (1-based)
    assert "accuracy, position 2 | accuracy, position 3 |" in out
    # the grid: one row per ratio lambda2/lambda1, one column per scale (x0.5, x1, x2)
    assert "| lambda2 / lambda1 | scale x0.5 | scale x1 | scale x2 |" in out
    for ratio, row_pairs in (("0.004", pairs[:3]), ("5", pairs[3:])):
        row = next(line for line in out.splitlines() if line.startswith(f"| {ratio} |"))
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        for (l1, l2), cell in zip(row_pairs, cells):
            mean, _, half = _naive(values[f"lambda1={l1}, lambda2={l2}"])
            assert cell == f"{mean:.3f} ± {half:.3f} ({l1:g}, {l2:g})"
    # --runs: one row per run with its own exact match; --rank-test: U counted by hand
    labels = list(values)
    assert main(["report", str(sweep), "--runs", "--rank-test", labels[0], f"{labels[1]}|{labels[2]}"]) == 0
    out = capsys.readouterr().out
    for label, ems in values.items():
        for seed, em in enumerate(ems):
            assert any(line.startswith(f"| {label} | {seed} | {em:.3f} |") for line in out.splitlines())
    a, b = values[labels[0]], values[labels[1]] + values[labels[2]]
    u = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)
    assert f"U = {u:g} of {len(a) * len(b)} pairs" in out
    # --correlation: Spearman's rho over the 18 runs, against ranks counted pair by pair and numpy's r
    assert main(["report", str(sweep), "--correlation"]) == 0
    out = capsys.readouterr().out

    def naive_ranks(v: list[float]) -> list[float]:
        return [1 + sum(w < x for w in v) + (sum(w == x for w in v) - 1) / 2 for x in v]

    rho = np.corrcoef(naive_ranks([a for a, _ in inner]), naive_ranks([b for _, b in inner]))[0, 1]
    assert f"over 18 runs: rho = {rho:+.2f} (two-sided p = " in out


def test_printed_terms_are_the_last_training_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = mini_plan(seeds=[0, 1])  # proj_dim 8 and 16, two seeds each
    sweep = S.prepare_sweep(parse_plan(plan), tmp_path / "sw")
    expected: dict[str, list[tuple[float, float, float]]] = {}  # label -> (variance, covariance, minutes)
    for k, label, rd, spec in _planned_runs(sweep):
        var, cov, seconds = 0.1 * k, 10.0 + k, 60.0 * (k + 1)
        expected.setdefault(label, []).append((var, cov, seconds / 60))
        (rd / "result.json").write_text(json.dumps({"steps": 8, "train_time_s": seconds}))
        (rd / "eval.json").write_text(json.dumps({
            "exact_match": 0.5, "position_accuracy": [1.0, 0.5], "n": 16,
            "eval_data": spec["eval_data"], "eval_limit": spec["eval_limit"]}))
        lines = [  # an earlier record, an eval record after the last train record, a torn last line
            {"kind": "train", "step": 4, "lm_loss": 9.0, "seqvcr_variance": 9.0,
             "seqvcr_covariance": 9.0},
            {"kind": "train", "step": 8, "lm_loss": 1.0, "seqvcr_variance": var, "seqvcr_covariance": cov,
             "seqvcr_loss": var + 0.004 * cov},
            {"kind": "eval", "split": "valid", "step": 8, "exact_match": 0.5},
        ]
        (rd / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"kind": "tr')
    from seqvcr.cli import main

    assert main(["report", str(sweep), "--terms"]) == 0
    out = capsys.readouterr().out.split("Loss terms at the end of training")[1]
    assert "| LM loss, end | variance hinge, end | covariance term, end |" in out
    for label, runs in expected.items():
        row = next(line for line in out.splitlines() if line.startswith(f"| {label} | 2/2 |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        for col, digits, vals in ((3, 3, [v for v, _, _ in runs]), (4, 3, [c for _, c, _ in runs]),
                                  (6, 1, [m for _, _, m in runs])):
            mean = sum(vals) / len(vals)
            assert cells[col] == f"{mean:.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})"
        assert cells[2] == "1.000 (1.000-1.000)"  # LM loss of the last training record, not the first


def test_exact_rank_test_against_hand_counts() -> None:
    from seqvcr.reporting.stats import exact_rank_test

    # a = [3], b = [1, 2]: U = 2 of 2; of the 3 splits only {3} reaches it -> p = 1/3
    assert exact_rank_test([3.0], [1.0, 2.0]) == (2.0, 1 / 3, 3)
    # a = [1, 3], b = [2, 4]: U = 1; the 6 splits give U = 0, 1, 2, 2, 3, 4 -> p = 5/6
    u, p, n = exact_rank_test([1.0, 3.0], [2.0, 4.0])
    assert (u, n) == (1.0, 6) and p == pytest.approx(5 / 6)
    # a tie counts one half, and every split of [1] | [1] ties -> p = 1
    assert exact_rank_test([1.0], [1.0]) == (0.5, 1.0, 2)
    # complete separation of 9 over 6 runs: p = 1 / C(15, 6)
    u, p, n = exact_rank_test([0.1 + i for i in range(9)], [-float(i) for i in range(6)])
    assert (u, n) == (54.0, 5005) and p == pytest.approx(1 / 5005)
    with pytest.raises(ValueError, match="two non-empty groups"):
        exact_rank_test([], [1.0])


def test_spearman_against_the_textbook_formula_and_a_numerical_t_integral() -> None:
    from seqvcr.reporting.stats import ranks, spearman_test

    assert ranks([0.3, 0.1, 0.3, 0.2]) == [3.5, 1.0, 3.5, 2.0]  # the tie shares ranks 3 and 4
    # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)); above 8 pairs, p from the t approximation
    x = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.6, 0.45, 0.05]
    y = [2.0, 1.0, 5.0, 6.0, 3.0, 0.5, 8.0, 4.0, 9.0, 0.25]
    rx, ry = ranks(x), ranks(y)
    n = len(x)
    rho_textbook = 1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry)) / (n * (n * n - 1))
    rho, p = spearman_test(x, y)
    assert rho == pytest.approx(rho_textbook)
    # p: twice the upper tail of Student's t (n - 2 df), integrated numerically from its density
    t = abs(rho) * math.sqrt((n - 2) / (1 - rho * rho))
    nu = n - 2
    grid = np.linspace(t, 400.0, 2_000_001)
    dens = (math.gamma((nu + 1) / 2) / (math.sqrt(nu * math.pi) * math.gamma(nu / 2))
            * (1 + grid**2 / nu) ** (-(nu + 1) / 2))
    tail = float(((dens[1:] + dens[:-1]) / 2 * np.diff(grid)).sum())  # trapezoid rule
    assert p == pytest.approx(2 * tail, abs=1e-6)
    # up to 8 pairs, p is exact: the share of all pairings of y with x whose textbook |rho| is as large
    x6, y6 = x[:6], y[:6]
    rho6, p6 = spearman_test(x6, y6)
    r6 = ranks(x6)

    def textbook(yy: tuple[float, ...]) -> float:
        ry6 = ranks(list(yy))
        return 1 - 6 * sum((a - b) ** 2 for a, b in zip(r6, ry6)) / (6 * 35)

    pairings = list(itertools.permutations(y6))
    assert p6 == pytest.approx(sum(abs(textbook(q)) >= abs(rho6) - 1e-12 for q in pairings) / len(pairings))
    assert spearman_test([1, 2, 3, 4], [10, 20, 30, 40]) == (1.0, pytest.approx(2 / 24))  # rho = +-1: 2 of 24
    assert spearman_test([1, 2, 3, 4], [4, 3, 2, 1]) == (-1.0, pytest.approx(2 / 24))
    with pytest.raises(ValueError, match="constant"):
        spearman_test([1, 2, 3], [5, 5, 5])
    with pytest.raises(ValueError, match="at least 3 pairs"):
        spearman_test([1, 2], [1, 2])


def _settings(values: list[Any]) -> list[Any]:
    """Settings of a one-factor study with these ablated values, three seeds each."""
    from seqvcr.reporting.study import RunRecord, summarize_setting

    records = {f"{v}_{seed}": RunRecord(f"{v}_{seed}", seed, "done", exact_match=0.1 * (i + seed),
                                        entropy_intermediate=0.5 + 0.01 * i)
               for i, v in enumerate(values) for seed in range(3)}
    return [summarize_setting("over", {"label": f"over={v}", "value": v,
                                       "runs": {str(seed): f"{v}_{seed}" for seed in range(3)}}, records)
            for v in values]


@pytest.mark.parametrize("which", ["exact_match", "entropy"])
def test_a_categorical_ablation_is_drawn_as_points_a_numeric_one_as_a_line(which: str) -> None:
    from seqvcr.reporting.study_figures import vs_value_figure

    def joined(values: list[Any]) -> list[int]:
        """How many points each line of the plot joins with a visible line."""
        fig = vs_value_figure(_settings(values), which, "y", "title", "x")
        assert fig is not None
        (ax,) = fig.axes
        return [len(line.get_xdata()) for line in ax.lines if line.get_linestyle() not in ("None", "")]

    assert joined(["batch", "batch_time", "time"]) == []  # categories: no line from one to the next
    assert joined([512, 1024, 2048]) == [3]  # numbers: one line through the settings
