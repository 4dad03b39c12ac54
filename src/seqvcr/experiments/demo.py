"""``seqvcr demo``: the project's main job -- the paper's story end to end, on a laptop CPU (docs/demo.md).

One command: generate multiplication data, train several of the paper's configurations on it, evaluate
them on a shipped reference test file (exact match and accuracy per answer position), measure the
layer-wise representation entropy, and write a report with every figure and table (``OUT/report.md``).
The scale (``SCALES``) is ``gpu`` when CUDA is available, else ``cpu``, whose step count is lowered to
what fits the training budget (``--minutes``) after timing a few steps of each configuration here;
``smoke`` is for the tests.

The demo is a sweep of a plan whose one study replaces ``method.name``, prepared in ``OUT`` and run by the
sweep's local executor (so is the timing probe, in a temporary directory); the report reuses the runs'
measurements, ``seqvcr sweep OUT`` continues the runs. An interrupted demo resumes with the same ``--out``;
a finished one (``OUT/report.md`` present) is only replaced with ``--force``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqvcr.atomic import write_json_atomic
from seqvcr.datafiles import resolve_data_path
from seqvcr.errors import ConfigError, RunDirError, SeqVCRError
from seqvcr.experiments import sweep as S
from seqvcr.experiments.plan import METRICS, parse_plan
from seqvcr.runs import describe_machine, machine_info

__all__ = ["DemoScale", "SCALES", "demo_plan", "run_demo"]

PLAN_FILE = "demo_plan.json"
DEMO_FILE = "demo.json"
# with the report's outputs: what --force deletes in OUT
DEMO_DIRS = ("data", S.RUNS, S.MANIFEST, S.PLAN_COPY, PLAN_FILE, DEMO_FILE)


@dataclass(frozen=True)
class DemoScale:
    """Everything the demo trains: task, model, configurations, optimisation and the time budget."""

    name: str
    digits: int
    test_file: str
    valid_file: str | None  # None: generated (valid_size problems, none of the test file's)
    methods: tuple[str, ...]
    n_layer: int
    n_head: int
    n_embd: int
    steps: int  # steps per configuration (an upper bound when the time probe says it would not fit)
    batch_size: int
    lr: float
    train_size: int
    proj_dim: int
    parallel: int  # training processes at a time
    threads: int  # torch threads per process
    minutes: float  # training budget (wall clock); 0 = no probe, always ``steps``
    warmup: float = 0.02
    dropout: float = 0.0
    pauses: int = 2
    log_every: int = 50
    eval_every: int = 500
    eval_examples: int = 500
    entropy_sequences: int = 1000
    min_steps: int = 200  # never fewer steps than this, whatever the probe says
    device: str = "auto"
    valid_size: int = 1000  # generated validation problems when valid_file is None
    test_limit: int = 0  # > 0: evaluate on the first test_limit lines of test_file (OUT/data/test.txt)


SCALES: dict[str, DemoScale] = {
    "cpu": DemoScale(
        name="cpu", digits=3, test_file="ref:mult/3x3/test.txt", valid_file="ref:mult/3x3/valid.txt",
        methods=("vanilla", "pause", "seqvcr", "seqvcr_pause"), n_layer=2, n_head=4, n_embd=128,
        steps=30_000, batch_size=32, lr=1e-3, train_size=200_000, proj_dim=512, parallel=2, threads=1,
        minutes=7.0, log_every=100, eval_every=500, device="cpu"),
    "gpu": DemoScale(
        name="gpu", digits=4, test_file="ref:mult/4x4/test.txt", valid_file="ref:mult/4x4/valid.txt",
        methods=("cot", "vanilla", "pause", "seqvcr", "seqvcr_pause"), n_layer=4, n_head=4, n_embd=256,
        steps=20_000, batch_size=128, lr=5e-4, train_size=400_000, proj_dim=2048, parallel=1, threads=4,
        minutes=0.0, warmup=0.05, eval_every=2000, eval_examples=1000, log_every=100, device="cuda"),
    "smoke": DemoScale(
        name="smoke", digits=3, test_file="ref:mult/3x3/test.txt", valid_file=None,
        methods=("vanilla", "seqvcr_pause"), n_layer=2, n_head=2, n_embd=32, steps=30, batch_size=16,
        lr=3e-3, train_size=1000, proj_dim=32, parallel=2, threads=1, minutes=0.0, log_every=10,
        eval_every=15, eval_examples=50, entropy_sequences=100, min_steps=1, device="cpu",
        valid_size=100, test_limit=200),
}


def _demo_progress(progress: bool, text: str) -> None:
    if progress:
        sys.stderr.write(f"demo: {text}\n")
        sys.stderr.flush()


def pick_scale(scale: str, device: str) -> DemoScale:
    """``auto``: ``gpu`` when CUDA is available (and the device is not forced to CPU), else ``cpu``."""
    if scale == "auto":
        gpu = torch.cuda.is_available() and not device.startswith("cpu")
        return SCALES["gpu" if gpu else "cpu"]
    if scale not in SCALES:
        raise ConfigError(f"demo scale {scale!r}: expected one of auto, {', '.join(SCALES)}")
    return SCALES[scale]


def demo_plan(s: DemoScale, train_file: str | None, test_file: str | None, steps: int,
              device: str) -> dict[str, Any]:
    """The sweep plan of the demo at scale ``s`` (``seqvcr.experiments.plan`` format): one study whose
    settings are the configurations ``s.methods``, each labelled by its method name, seed 0, scored on
    ``test_file``. The config states only what the demo sets; the rest, the paper's Seq-VCR coefficients
    among them, are the defaults ``seqvcr.config.resolve`` fills."""
    config = {
        "task": {"name": "mult", "digits": s.digits, "train_file": train_file, "valid_file": s.valid_file,
                 "valid_size": s.valid_size, "test_file": test_file},
        "model": {"preset": "tiny", "n_layer": s.n_layer, "n_head": s.n_head, "n_embd": s.n_embd,
                  "dropout": s.dropout},
        "method": {"name": s.methods[0], "pauses": s.pauses},
        "seqvcr": {"proj_dim": s.proj_dim},
        "optim": {"lr": s.lr, "batch_size": s.batch_size, "max_steps": steps, "warmup": s.warmup,
                  "schedule": "cosine", "min_lr_ratio": 0.1, "weight_decay": 0.01},
        "train": {"device": device, "threads": s.threads if device == "cpu" else None,
                  "log_every": s.log_every, "eval_every": s.eval_every, "eval_examples": s.eval_examples,
                  "checkpoint_every": max(s.eval_every, steps // 4 or 1)},
    }
    return {
        "name": f"demo_{s.name}",
        "description": f"seqvcr demo, {s.name} scale: {', '.join(s.methods)} on mult {s.digits}x{s.digits}",
        "config": config,
        "ablations": [{"part": "The paper's configurations (Table 1)", "name": "configuration",
                       "action": "REPLACE", "key": "method.name", "replacements": list(s.methods),
                       "labels": list(s.methods)}],
        "metrics": list(METRICS), "seeds": [0], "eval_data": test_file,
        "entropy_sequences": s.entropy_sequences,
        "entropy_normalize": False,  # the report's entropy (raw, normalised alongside): it reuses these
    }


#: the order runs start in when their step times are not measured: the costliest first
_COST_ORDER = ("seqvcr_pause", "seqvcr", "cot", "pause", "vanilla")


def run_plan(
    raw: dict[str, Any], out: Path, s: DemoScale, progress: bool, costs: dict[str, float] | None = None
) -> dict[str, Path]:
    """Prepare ``out`` as the sweep of plan ``raw`` and run its unfinished runs with the sweep's local
    executor, ``s.parallel`` at a time with ``s.threads`` threads each, the costliest first (by ``costs``,
    seconds per step, else ``_COST_ORDER``); returns each configuration's run directory. A crashed run
    raises ``SeqVCRError`` once the others are finished; an interrupted one ``KeyboardInterrupt``."""
    from seqvcr.experiments.executors import run_local

    S.prepare_sweep(parse_plan(raw), out)
    manifest = S.load_manifest(out)
    ids = {row["label"]: row["runs"]["0"] for row in manifest["studies"][0]["settings"]}
    todo = []
    for run in manifest["runs"]:
        if S.run_status(out, run["id"]) == "done":
            _demo_progress(progress, f"{run['setting']}: already trained and measured, kept")
        else:
            todo.append(run)
    rank = {m: i for i, m in enumerate(_COST_ORDER)}
    todo.sort(key=lambda r: (-(costs or {}).get(r["setting"], 0.0), rank.get(r["setting"], len(rank))))
    if todo:
        done = run_local(out, todo, workers=s.parallel, threads=s.threads, quiet=not progress)
        S.refresh_manifest(out)
        if done.interrupted:
            raise KeyboardInterrupt
        if done.crashed:
            errors = [out / S.RUNS / rid / S.ERROR for rid in done.crashed]  # the executor writes each
            raise SeqVCRError("demo: training failed -- " + "; ".join(
                f"{e.read_text().splitlines()[0]} (see {e})" for e in errors))
    return {m: out / S.RUNS / rid for m, rid in ids.items()}


def _probe(s: DemoScale, steps: int = 30) -> dict[str, float]:
    """Wall-clock seconds of one training step of each configuration on this machine: a sweep of
    ``steps``-step runs on a small generated set, ``s.parallel`` at a time like the real ones; per
    configuration, the median over 5-step logging intervals (start-up and busy moments do not count)."""
    from seqvcr.runs import METRICS_FILE

    raw = demo_plan(s, None, None, steps, "cpu")
    raw["config"]["task"].update(valid_file=None, train_size=max(2000, s.batch_size * steps), valid_size=16)
    raw["config"]["train"].update(log_every=5, eval_every=10 * steps, checkpoint_every=10 * steps)
    raw.update(name=f"demo_{s.name}_probe", metrics=["exact_match"])  # scored on its 16 held-out problems
    per_step: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="seqvcr-demo-probe-") as tmp:
        for m, rd in run_plan(raw, Path(tmp), s, progress=False).items():
            recs = [json.loads(line) for line in (rd / METRICS_FILE).read_text().splitlines()]
            logged = [r for r in recs if r.get("kind") == "train"]
            per = sorted((b["elapsed_s"] - a["elapsed_s"]) / max(1, b["step"] - a["step"])
                         for a, b in zip(logged, logged[1:]))
            per_step[m] = per[len(per) // 2]
    return per_step


def _makespan(costs: Sequence[float], workers: int) -> float:
    """The time ``workers`` take for jobs of ``costs`` started costliest first, as ``run_plan`` does."""
    loads = [0.0] * workers
    for c in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += c
    return max(loads)


def plan_steps(s: DemoScale, minutes: float | None, progress: bool) -> dict[str, Any]:
    """How many steps fit the budget: time each configuration's step on this machine, then take the
    largest step count <= ``s.steps`` whose runs finish within the budget."""
    budget_min = s.minutes if minutes is None else minutes
    if budget_min <= 0 or s.device != "cpu":
        return {"steps": s.steps, "budget_minutes": budget_min or None, "step_seconds": None}
    _demo_progress(progress, f"timing training steps of each configuration, {s.parallel} at a time as in the "
                   f"demo (budget {budget_min:g} min of training)")
    per_step = _probe(s)
    # periodic validation probes: ~5% of a run; start-up, final evaluation and checkpoint: ~15 s a run
    slowest = _makespan(list(per_step.values()), s.parallel) * 1.05
    lane_fixed = 15.0 * -(-len(per_step) // s.parallel)
    fit = int((budget_min * 60 - lane_fixed) / slowest) if slowest > 0 else s.steps
    steps = max(s.min_steps, min(s.steps, fit))
    steps = steps if steps == s.steps else max(s.min_steps, steps // 50 * 50)
    text = ", ".join(f"{m} {1000 * v:.0f} ms" for m, v in per_step.items())
    _demo_progress(progress, f"one step: {text}; {s.parallel} at a time -> {steps} steps per configuration "
                   f"(about {(steps * slowest + lane_fixed) / 60:.1f} min of training)")
    return {"steps": steps, "budget_minutes": budget_min, "step_seconds": per_step,
            "estimated_training_minutes": (steps * slowest + lane_fixed) / 60, "fits": fit}


def make_data(s: DemoScale, data_dir: Path, progress: bool) -> tuple[str, str]:
    """Training problems disjoint from the reference test and validation files (written once). Returns
    the training file (absolute) and the test file to evaluate on (the reference file itself, or with
    ``test_limit`` its first lines copied to ``data_dir/test.txt``)."""
    from seqvcr.tasks import make_task, read_examples, write_examples

    task = make_task("mult", digits=s.digits)
    test_file = s.test_file
    if s.test_limit:
        test_path = data_dir / "test.txt"
        if not test_path.is_file():
            head = read_examples(task, resolve_data_path(s.test_file))[: s.test_limit]
            write_examples(task, test_path, head, cot=True)
        test_file = str(test_path.resolve())
    path = data_dir / "train.txt"
    if path.is_file():
        _demo_progress(progress, f"reusing {path}")
        return str(path.resolve()), test_file
    excluded: set[str] = set()
    for f in (s.test_file, s.valid_file):
        if f:
            excluded |= {task.key(ex) for ex in read_examples(task, resolve_data_path(f))}
    t0 = time.perf_counter()
    examples = task.generate(s.train_size, seed=1234, exclude=frozenset(excluded))
    write_examples(task, path, examples, cot=True)
    _demo_progress(progress, f"wrote {len(examples):,} {task.describe()} training problems to {path} "
                   f"(none of the {len(excluded):,} test/valid problems; {time.perf_counter() - t0:.1f}s)")
    return str(path.resolve()), test_file


def findings(runs: Sequence[Any]) -> str:
    """What the measured numbers show, in plain words (the report's "Findings" section).

    Entropies are compared normalised (entropy / log min(T, d)): pause tokens make sequences longer,
    which alone raises the ceiling of the raw entropy.
    """
    from seqvcr.analysis.report import majority_baseline
    from seqvcr.reporting.run_tables import method_label

    if not runs:
        return ""

    def positions(ks: list[int]) -> str:
        return ", ".join(str(k) for k in ks) if ks else "none"

    def inner(r: Any) -> float:
        vals = [L["mean_normalized"] for L in r.entropy["layers"][1:-1]]
        return sum(vals) / len(vals) if vals else float("nan")

    base = majority_baseline(runs[0].predictions)
    n = runs[0].eval["n"]
    lines = ["## Findings (measured in this run of the demo)", ""]
    for r in runs:
        acc = r.eval["position_accuracy"]
        chance = [k + 1 for k, (a, b) in enumerate(zip(acc, base)) if a <= b + 0.05]
        solid = [k + 1 for k, a in enumerate(acc) if a >= 0.9]
        lines.append(
            f"- **{method_label(r.method, r.pauses)}**: exact match {r.eval['exact_match']:.3f}; answer "
            f"positions at least 0.9 accurate: {positions(solid)}; within 0.05 of the majority-class "
            f"baseline (chance): {positions(chance)}; normalised entropy of the intermediate layers "
            f"{inner(r):.3f}."
        )
    by = {r.method: r for r in runs}
    if "vanilla" in by:
        v = by["vanilla"]
        for m in ("seqvcr_pause", "seqvcr", "pause", "cot"):
            if m not in by:
                continue
            r = by[m]
            d_acc = ", ".join(f"{a - b:+.3f}" for a, b in zip(r.eval["position_accuracy"],
                                                              v.eval["position_accuracy"]))
            d_ent = ", ".join(f"L{L['layer']} {L['mean_normalized'] - V['mean_normalized']:+.3f}"
                              for L, V in zip(r.entropy["layers"], v.entropy["layers"]))
            lines.append(f"- {method_label(m, r.pauses)} minus Vanilla: exact match "
                         f"{r.eval['exact_match'] - v.eval['exact_match']:+.3f}; accuracy per position "
                         f"{d_acc}; normalised entropy per layer {d_ent}.")
    se = 2 * math.sqrt(0.25 / n) if n else float("nan")
    lines += ["", f"Noise: with {n} test problems, an accuracy difference below about {se:.2f} (two "
              "standard errors at accuracy 0.5; less near 0 or 1) can be chance; one seed per "
              "configuration.", ""]
    return "\n".join(lines)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory")
    from seqvcr.analysis.report import OUTPUTS, REPORT_FILE

    if (out / REPORT_FILE).exists() and not force:
        raise RunDirError(f"{out}: already holds a demo report ({REPORT_FILE}); use --force to "
                          "replace it, or pass another --out")
    if force:
        for name in (*DEMO_DIRS, *OUTPUTS):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


def _step_plan(out: Path, s: DemoScale, dev: str, minutes: float | None, progress: bool) -> dict[str, Any]:
    """The steps per configuration: an interrupted demo's (same scale and device: it resumes), else new."""
    plan_path = out / PLAN_FILE
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else None
    if plan is None or plan.get("scale") != s.name or plan.get("device") != dev:
        plan = {"scale": s.name, "device": dev, **plan_steps(s, minutes, progress)}
        write_json_atomic(plan_path, plan)
    else:
        _demo_progress(progress, f"resuming the demo in {out}: {plan['steps']} steps per configuration")
    return plan


def run_demo(out: str | os.PathLike[str] = "demo_out", *, force: bool = False, minutes: float | None = None,
             scale: str = "auto", device: str = "auto", command: str | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Run the demo into ``out`` (see the module docstring); returns the summary also written to
    ``OUT/demo.json``."""
    t_start = time.perf_counter()
    s = pick_scale(scale, device)
    dev = s.device if device == "auto" else device  # the device asked for, else the scale's, else CUDA if any
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"demo scale {s.name!r} runs on device {dev!r}, but CUDA is not available here; "
                          "use the default scale (or --device cpu)")
    out_dir = Path(out)
    _check_out(out_dir, force)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = describe_machine(machine_info(torch.device("cuda") if dev.startswith("cuda") else None))
    _demo_progress(progress, f"scale {s.name}: mult {s.digits}x{s.digits}, {', '.join(s.methods)}; "
                   f"GPT {s.n_layer}x{s.n_embd}; on {machine}; output in {out_dir}")

    plan = _step_plan(out_dir, s, dev, minutes, progress)
    steps = int(plan["steps"])

    t0 = time.perf_counter()
    train_file, test_file = make_data(s, out_dir / "data", progress)
    t_data = time.perf_counter() - t0

    t0 = time.perf_counter()
    run_dirs = run_plan(demo_plan(s, train_file, test_file, steps, dev), out_dir, s, progress,
                        costs=plan.get("step_seconds"))
    t_train = time.perf_counter() - t0
    _demo_progress(progress, f"training, evaluation and entropy done in {t_train / 60:.1f} min; writing the "
                   "report")

    from seqvcr.analysis.report import build_report

    demo_cmd = command or "seqvcr demo"
    intro = _intro(s, steps, plan, machine, dev, t_data, t_train, demo_cmd, out_dir, test_file)
    t0 = time.perf_counter()
    report = build_report(
        [run_dirs[m] for m in s.methods], out_dir, force=True, data_file=test_file,
        n_sequences=s.entropy_sequences, device=dev, command=demo_cmd,
        title=f"seqvcr demo: mult {s.digits}x{s.digits}, {len(s.methods)} configurations ({s.name} scale)",
        intro=intro, extra=findings, progress=progress,
    )
    t_report = time.perf_counter() - t0
    # per configuration: its scores from the report's summary and its run directory
    keys = ("name", "method", "exact_match", "position_accuracy", "T_norm", "entropy_mean")
    runs = [{**{k: r[k] for k in keys}, "run_dir": str(run_dirs[r["method"]])}
            for r in json.loads((report.parent / "summary.json").read_text())["runs"]]
    total = time.perf_counter() - t_start
    result = {"out": str(out_dir), "report": str(report), "scale": s.name,
              "scale_settings": dataclasses.asdict(s), "steps": steps, "plan": plan, "machine": machine,
              "device": dev, "command": demo_cmd,
              "seconds": {"data": t_data, "training": t_train, "report": t_report, "total": total},
              "runs": runs}
    write_json_atomic(out_dir / DEMO_FILE, result)
    _demo_progress(progress, f"done in {total / 60:.1f} min (data {t_data:.0f}s, training {t_train:.0f}s, "
                   f"report {t_report:.0f}s): {report}")
    for r in result["runs"]:
        _demo_progress(progress, f"  {r['method']:<13} exact match {r['exact_match']:.3f}  {r['run_dir']}")
    return result


def _intro(s: DemoScale, steps: int, plan: dict[str, Any], machine: str, dev: str, t_data: float,
           t_train: float, command: str, out: Path, test_file: str) -> str:
    model = f"GPT {s.n_layer} layers x {s.n_embd} wide ({s.n_head} heads)"
    budget = plan.get("budget_minutes")
    if plan.get("step_seconds"):
        per = ", ".join(f"{m} {1000 * v:.0f} ms" for m, v in plan["step_seconds"].items())
        timing = (f"Before training, the demo timed training steps of each configuration on this machine, "
                  f"{s.parallel} at a time as in the real runs ({per} per step) and chose {steps} steps per "
                  f"configuration to fit a {budget:g}-minute training budget (at most {s.steps}).")
    else:
        timing = f"Every configuration trains for {steps} steps."
    return "\n".join([
        f"`{command}` ran on {machine} (device {dev}), scale `{s.name}`. It generated "
        f"{s.train_size:,} {s.digits}x{s.digits} multiplication problems (Deng et al.'s format, none of the "
        f"test or validation problems) in {t_data:.0f} s, then trained {', '.join(s.methods)} for the same "
        f"number of steps, {s.parallel} run(s) at a time with {s.threads} thread(s) each "
        f"(training, evaluation and entropy took {t_train / 60:.1f} min). {timing}",
        "",
        f"Model: {model}, trained from scratch; batch {s.batch_size}, AdamW lr {s.lr:g} with cosine decay, "
        f"Seq-VCR on the last layer with a {s.proj_dim}-dimensional projection (the paper uses 2048 on a "
        f"768-wide GPT-2) and the paper's multiplication coefficients; {s.pauses} pause tokens. Test set: "
        f"`{test_file}`. `{out}` is a sweep directory: the runs are in `{out}/runs/<id>/`, listed with "
        f"their configuration in `{out}/manifest.json`.",
        "",
        "This is a small model trained for minutes, not the paper's GPT-2 trained for 40 epochs: read the "
        "numbers below as what this scale shows, not as a reproduction of Table 1. The setting is the one "
        "the CPU-scale study chose (plans/cpu/table1.yaml: the same model, data and optimiser, trained there "
        "for 30,000 steps); the demo trains as many steps as fit its budget, with the learning-rate schedule "
        "laid over that shorter run. The full study -- the search behind the setting, Table 1 over 3 seeds "
        "with 95% confidence intervals, accuracy per position, entropy per layer, learning curves, and the "
        "coefficient and projection ablations -- is in docs/results.md, its runs in results/.",
    ])
