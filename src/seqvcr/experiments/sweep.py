"""A sweep directory: a plan expanded into runs with stable ids, a manifest, and the worker ``run_one``
(docs/sweeps.md, "The sweep directory").

Layout (every path inside is relative, so the directory can be copied and reported elsewhere)::

    SWEEP_DIR/plan.yaml           the plan as given (for the record)
    SWEEP_DIR/manifest.json       studies -> settings -> seed -> run id; runs with overrides and status
    SWEEP_DIR/runs/<id>/spec.json what the worker needs: resolved config, eval data, metrics, skip reason
    SWEEP_DIR/runs/<id>/...       the run directory of ``seqvcr.training.train`` plus eval.json,
                                  entropy.json, train.log, and error.txt when it crashed

A run's status is derived from its files, never stored alone (``run_status``). ``run_one`` is the only
worker: the local pool, SLURM jobs and the printed commands all call it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from seqvcr import config as C
from seqvcr.atomic import write_json_atomic, write_text_atomic
from seqvcr.checkpoints import CHECKPOINT_FILE
from seqvcr.errors import ConfigError, RunDirError
from seqvcr.experiments.plan import GPT2_PLACEHOLDER, Plan
from seqvcr.runfiles import (
    ENTROPY_JSON,
    ERROR,
    EVAL,
    HELDOUT,
    LOCK,
    LOG,
    MANIFEST,
    METRICS_FILE,
    PLAN_COPY,
    RESULT_FILE,
    RUNS,
    SPEC,
)

ENTROPY = ENTROPY_JSON
FORMAT_VERSION = 1

STATUSES = ("done", "interrupted", "crashed", "skipped", "pending")


#: Config keys that change what a run records, never what it trains, with their defaults. At its default
#: such a key is left out of the run id, so that adding it to the schema kept every sweep's run ids
#: (and finished runs) as they were; set to anything else it is part of the id.
ID_NEUTRAL_DEFAULTS: dict[tuple[str, str], Any] = {
    ("train", "snapshot_steps"): [],
    ("train", "log_to"): ["jsonl"],
    ("train", "wandb_project"): "seqvcr",
    ("train", "wandb_mode"): "offline",
}


#: Config sections added after runs were published: left out of the id while at their defaults, so the ids of
#: earlier runs (and of plans that do not use them) stay as they were.
ID_NEUTRAL_SECTIONS = ("running_sum", "curriculum")


def run_id(config: dict[str, Any]) -> str:
    """Stable id of a resolved config: sha1 of its canonical JSON, 10 hex digits (keys of
    ``ID_NEUTRAL_DEFAULTS`` and sections of ``ID_NEUTRAL_SECTIONS`` at their default left out)."""
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    defaults = C.to_dict(C.Config())
    for section in ID_NEUTRAL_SECTIONS:
        if config.get(section) == defaults[section]:
            del config[section]
    for (section, key), default in ID_NEUTRAL_DEFAULTS.items():
        part = config.get(section)
        if isinstance(part, dict) and key in part and part[key] == default:
            del part[key]
    canon = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha1(canon.encode()).hexdigest()[:10]


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # ValueError: not JSON, or not UTF-8 text
        return None


@dataclass
class RunEntry:
    """One training run of a sweep (a setting x a seed; shared when two settings coincide)."""

    id: str
    seed: int
    study: str
    setting: str
    overrides: dict[str, Any]
    config: dict[str, Any]
    skip: str | None = None
    also: list[list[str]] = dataclasses.field(default_factory=list)  # further [study, setting] pairs


def _skip_reason(cfg: C.Config, plan: Plan) -> str | None:
    init = cfg.model.init_from
    if init is None:
        return None
    hint = f"pass --gpt2-dir DIR or set gpt2_dir in {plan.path or 'the plan'}"
    if init == GPT2_PLACEHOLDER:
        return f"fine-tuning needs a local Hugging Face GPT-2 directory; {hint}"
    if not Path(init).is_dir():
        return f"GPT-2 directory {init} not found; {hint}"
    return None


def expand(plan: Plan) -> tuple[list[dict[str, Any]], list[RunEntry]]:
    """Studies (for the manifest) and the unique runs of a plan, in a stable order."""
    runs: dict[str, RunEntry] = {}
    studies: list[dict[str, Any]] = []
    for study in plan.studies:
        rows = []
        for s in study.settings:
            ids: dict[str, str] = {}
            for seed in plan.seeds:
                cfg = plan.setting_config(s, seed)
                d = C.to_dict(cfg)
                rid = run_id(d)
                ids[str(seed)] = rid
                if rid in runs:
                    runs[rid].also.append([study.name, s.label])
                else:
                    runs[rid] = RunEntry(rid, seed, study.name, s.label, dict(s.overrides), d,
                                         _skip_reason(cfg, plan))
            rows.append({"label": s.label, "value": s.value, "overrides": s.overrides,
                         "factors": [list(f) for f in s.factors], "runs": ids})
        studies.append({"name": study.name, "part": study.part, "action": study.action,
                        "factors": study.factors, "settings": rows})
    return studies, list(runs.values())


def prepare_sweep(plan: Plan, out: str | Path) -> Path:
    """Create or update SWEEP_DIR (returned): plan copy, manifest, and a spec.json per run. Existing run
    directories keep all but their spec.json; runs of an older plan stay on disk but leave the manifest."""
    sweep = Path(out)
    old = read_json(sweep / MANIFEST)
    if old is not None and old.get("name") != plan.name:
        raise RunDirError(f"{sweep}: holds sweep {old.get('name')!r}, not {plan.name!r}; choose another "
                          "--out")
    studies, runs = expand(plan)
    (sweep / RUNS).mkdir(parents=True, exist_ok=True)
    text = plan.path.read_text() if plan.path is not None else yaml.safe_dump(plan.raw, sort_keys=False)
    write_text_atomic(sweep / PLAN_COPY, text)
    for r in runs:
        rd = sweep / RUNS / r.id
        rd.mkdir(exist_ok=True)
        # the eval file: the plan's eval_data, else the task's test file, else None (the validation set)
        eval_data = plan.eval_data or r.config["task"].get("test_file")
        spec = {"id": r.id, "sweep": plan.name, "study": r.study, "setting": r.setting, "seed": r.seed,
                "overrides": r.overrides, "config": r.config, "metrics": plan.metrics, "eval_data": eval_data,
                "eval_limit": plan.eval_limit, "entropy_sequences": plan.entropy_sequences,
                "entropy_normalize": plan.entropy_normalize, "skip": r.skip}
        if read_json(rd / SPEC) != spec:
            write_json_atomic(rd / SPEC, spec)
    manifest = {
        "format": FORMAT_VERSION, "name": plan.name, "description": plan.description, "plan": PLAN_COPY,
        "base": plan.base_file, "cross": plan.cross, "metrics": plan.metrics, "seeds": plan.seeds,
        "eval_data": plan.eval_data, "eval_limit": plan.eval_limit,
        "entropy_sequences": plan.entropy_sequences, "entropy_normalize": plan.entropy_normalize,
        "studies": studies,
        "runs": [{"id": r.id, "dir": f"{RUNS}/{r.id}", "study": r.study, "setting": r.setting, "also": r.also,
                  "seed": r.seed, "overrides": r.overrides, "skip": r.skip, "status": run_status(sweep, r.id)}
                 for r in runs],
    }
    write_json_atomic(sweep / MANIFEST, manifest)
    return sweep


def load_manifest(sweep_dir: str | Path) -> dict[str, Any]:
    sweep = Path(sweep_dir)
    m = read_json(sweep / MANIFEST)
    if m is None:
        raise RunDirError(f"{sweep}: not a sweep directory (no readable {MANIFEST})")
    return m


def refresh_manifest(sweep_dir: str | Path) -> dict[str, Any]:
    """Re-derive every run's status from its directory and rewrite the manifest (atomically)."""
    sweep = Path(sweep_dir)
    m = load_manifest(sweep)
    for r in m["runs"]:
        r["status"] = run_status(sweep, r["id"])
    write_json_atomic(sweep / MANIFEST, m)
    return m


#: per metric file of a run: the metrics that need it, and the spec's keys it must have been measured with
_MEASURED = {EVAL: (("exact_match", "position_accuracy"), ("eval_data", "eval_limit")),
             ENTROPY: (("matrix_entropy",), ("eval_data", "entropy_sequences", "entropy_normalize"))}


def _stale(rd: Path, spec: dict[str, Any]) -> list[str]:
    """The metric files the spec asks for that are missing or were measured with other settings."""
    metrics, stale = spec.get("metrics", []), []
    for file, (needs, keys) in _MEASURED.items():
        if any(m in metrics for m in needs):
            e = read_json(rd / file)
            if not e or any(e.get(k) != spec.get(k) for k in keys):
                stale.append(file)
    return stale


def run_path(sweep_dir: str | Path, run: dict[str, Any]) -> Path:
    """The directory of a manifest's run: its ``dir`` (relative to the sweep), else ``runs/<id>``.

    A published study (``scripts/publish_runs.py``) renames its run directories and records the new
    names in ``dir``, so reports find them; a ``dir`` that leaves the sweep directory is refused.
    """
    rel = run.get("dir") or f"{RUNS}/{run['id']}"
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        where = Path(sweep_dir) / MANIFEST
        raise RunDirError(f"{where}: run {run['id']!r} has dir {rel!r} outside the sweep directory")
    return Path(sweep_dir) / rel


def run_status(sweep_dir: str | Path, rid: str, run_dir: Path | None = None) -> str:
    """done | interrupted | crashed | skipped | pending, from the files of the run directory
    (``run_dir``, by default ``runs/<rid>`` of the sweep)."""
    rd = run_dir if run_dir is not None else Path(sweep_dir) / RUNS / rid
    spec = read_json(rd / SPEC) or {}
    if spec.get("skip"):
        return "skipped"
    finished = (rd / RESULT_FILE).is_file()
    if finished and not _stale(rd, spec):
        return "done"
    if (rd / ERROR).is_file():
        return "crashed"
    if finished or (rd / CHECKPOINT_FILE).is_file():
        return "interrupted"
    return "pending"


@dataclass
class Outcome:
    """What ``run_one`` did: status is done | crashed | skipped | busy (another worker holds it)."""

    id: str
    status: str
    seconds: float = 0.0
    error: str | None = None
    exact_match: float | None = None
    trained: bool = False  # False when the training had finished before (only metrics were computed)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[bool]:
    """An exclusive, non-blocking lock on ``path`` (False: another worker holds it); it dies with its
    process."""
    import fcntl  # POSIX only: imported where a lock is taken, so that the rest works anywhere

    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            f.truncate(0)
            f.write(f"{os.uname().nodename} {os.getpid()}\n")
            f.flush()
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _stderr_to(path: Path | None) -> Iterator[None]:
    """Send file descriptor 2 (training progress, warnings) to ``path`` for the duration."""
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _heldout_file(rd: Path, cfg: C.Config) -> str:
    """Write the run's validation examples to a file and return its path, for a setting without a test
    file: they are excluded from the generated training data and never pick a checkpoint, so held out."""
    from seqvcr.runs import build_task, load_splits
    from seqvcr.tasks import write_examples

    path = rd / HELDOUT
    if path.is_file():
        return f"{RUNS}/{rd.name}/{HELDOUT}"
    task = build_task(cfg)
    small = C.from_dict(C.to_dict(cfg))
    small.task.train_size = 1  # validation data do not depend on the training set size
    small.task.train_file = None
    _, valid = load_splits(small, task)
    write_examples(task, path, valid, cot=True)
    return f"{RUNS}/{rd.name}/{HELDOUT}"


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}".strip()


def run_one(sweep_dir: str | Path, rid: str, *, threads: int | None = None, log_to_file: bool = True,
            device: str = "auto") -> Outcome:
    """Train, evaluate and measure one run of a sweep under an exclusive lock on it, each file written
    atomically; a failure of the run becomes ``error.txt`` and the outcome ``crashed``, never an exception.

    Idempotent: a finished run is not retrained; missing or stale metric files are recomputed; an
    interrupted run resumes from its checkpoint (``seqvcr.training.train`` does that).
    """
    sweep = Path(sweep_dir)
    rd = sweep / RUNS / rid
    spec = read_json(rd / SPEC)
    if spec is None:
        raise RunDirError(f"{rd}: no {SPEC}; is {rid!r} a run of the sweep in {sweep}?")
    if spec.get("skip"):
        return Outcome(rid, "skipped", error=spec["skip"])
    t0 = time.perf_counter()
    with _lock(rd / LOCK) as mine:
        if not mine:
            return Outcome(rid, "busy")
        (rd / ERROR).unlink(missing_ok=True)
        trained = False
        try:
            with _stderr_to(rd / LOG if log_to_file else None):
                import torch

                if threads:
                    torch.set_num_threads(threads)
                from seqvcr.training import train

                cfg = C.from_dict(spec["config"])
                if not (rd / RESULT_FILE).is_file():
                    if not (rd / CHECKPOINT_FILE).is_file():
                        # an attempt that saved nothing: start its log of metrics afresh
                        (rd / METRICS_FILE).unlink(missing_ok=True)
                    cmd = f"seqvcr sweep-run {sweep} {rid}"
                    train(cfg, rd, progress=True, command=cmd)
                    trained = True
                stale = _stale(rd, spec)
                data_file = str(spec.get("eval_data"))
                if stale and spec.get("eval_data") is None:
                    data_file = str(sweep / _heldout_file(rd, C.resolve(cfg)))
                for file in stale:
                    _measure(rd, spec, file, data_file, device)
        except Exception as exc:  # noqa: BLE001 - a crashed run is recorded, not propagated
            tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
            write_text_atomic(rd / ERROR, _one_line(exc) + "\n\n" + tail)
            return Outcome(rid, "crashed", time.perf_counter() - t0, error=_one_line(exc), trained=trained)
    ev = read_json(rd / EVAL) or {}
    return Outcome(rid, "done", time.perf_counter() - t0, exact_match=ev.get("exact_match"), trained=trained)


def _measure(rd: Path, spec: dict[str, Any], file: str, data_file: str, device: str) -> None:
    """Score the run on ``data_file`` into eval.json (also kept with its predictions in the run's ``eval/``,
    where ``seqvcr report`` reuses it instead of decoding), or measure its layer entropy into entropy.json."""
    if file == EVAL:
        from seqvcr.evaluation import evaluate_file

        result = evaluate_file(str(rd), data_file, limit=spec.get("eval_limit", 0), device=device,
                               progress=True, save=True)
        settings = {"eval_limit": spec.get("eval_limit")}
    else:
        try:
            from seqvcr.analysis.layer_entropy import compute_layer_entropy
        except ImportError as err:
            raise ConfigError("matrix_entropy needs seqvcr.analysis.layer_entropy, which this installation "
                              "lacks") from err
        n, normalize = spec.get("entropy_sequences"), bool(spec.get("entropy_normalize", True))
        result = dict(compute_layer_entropy(str(rd), data_file, n_sequences=n, normalize=normalize,
                                            device=device, progress=True))
        settings = {"entropy_sequences": n, "entropy_normalize": normalize}
    result.update(run_dir=f"{RUNS}/{rd.name}", data=spec.get("eval_data") or f"{RUNS}/{rd.name}/{HELDOUT}",
                  eval_data=spec.get("eval_data"), **settings)
    write_json_atomic(rd / file, result)
