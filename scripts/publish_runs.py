"""Publish a finished sweep as a study directory that can be committed and re-scored.

    python scripts/publish_runs.py SWEEP_DIR results/STUDY [--name LABEL=DIR_NAME ...] [--no-weights]

For every finished run of the sweep, ``results/STUDY/<name>_s<seed>/`` receives the files that describe
and reproduce it -- ``config.yaml``, ``spec.json``, ``result.json``, ``metrics.jsonl``, ``eval.json``,
the entropy files and, unless ``--no-weights``, the final weights ``model.safetensors`` -- and never a
checkpoint or optimiser state. ``<name>`` is the setting's label made file-safe, or the one given with
``--name``. The sweep's ``manifest.json`` and ``plan.yaml`` are copied with each run's ``dir`` pointing
at its new directory, so ``seqvcr report results/STUDY`` aggregates the study over seeds as it did the
sweep.

With weights, every run is then re-scored with the installed seqvcr: ``seqvcr eval RUN --data
EVAL_DATA`` (the sweep's evaluation file) is written to ``test_eval.json`` and must agree with the
sweep's ``eval.json``; a disagreement is an error (re-run the sweep's evaluation with the current code).
Runs trained with the earlier checkpoint format are converted in the sweep first
(``seqvcr convert-checkpoint``). An existing study directory is only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

RUN_FILES = (
    "config.yaml",
    "spec.json",
    "result.json",
    "metrics.jsonl",
    "eval.json",
    "entropy.json",
    "entropy.csv",
    "entropy_values.csv",
)
WEIGHTS = "model.safetensors"


def slug(label: str) -> str:
    """A file-safe directory name for a setting label ('svp L2 90k' -> 'svp_l2_90k')."""
    s = re.sub(r"[^a-z0-9.+-]+", "_", label.lower()).strip("_")
    return s or "setting"


def _seqvcr(*args: str) -> str:
    """Run the installed ``seqvcr`` command (this interpreter's), return stdout; fail on an error."""
    cmd = [sys.executable, "-m", "seqvcr", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"publish: {' '.join(args[:2])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def publish(
    sweep: Path, out: Path, names: dict[str, str], weights: bool, force: bool
) -> list[dict[str, Any]]:
    manifest = json.loads((sweep / "manifest.json").read_text())
    if out.exists() and not force:
        sys.exit(f"publish: {out} exists; use --force to replace it")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    published = []
    taken: set[str] = set()
    for run in manifest["runs"]:
        src = sweep / run.get("dir", f"runs/{run['id']}")
        name = f"{names.get(run['setting'], slug(run['setting']))}_s{run['seed']}"
        if name in taken:
            sys.exit(f"publish: two runs map to {name}; give one of them another --name")
        taken.add(name)
        run["dir"] = name  # an unfinished run keeps its place (the report counts it as pending)
        if not (src / "result.json").is_file() or not (src / "eval.json").is_file():
            print(f"publish: leaving out {run['setting']} seed {run['seed']} (not finished)", file=sys.stderr)
            continue
        if weights and not (src / WEIGHTS).is_file():
            _seqvcr("convert-checkpoint", str(src), "--keep")
        dst = tmp / name
        dst.mkdir()
        for f in RUN_FILES + ((WEIGHTS,) if weights else ()):
            if (src / f).is_file():
                shutil.copy2(src / f, dst / f)
        published.append(run)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if (sweep / "plan.yaml").is_file():
        shutil.copy2(sweep / "plan.yaml", tmp / "plan.yaml")
    if weights:
        for run in published:
            rd = tmp / run["dir"]
            spec = json.loads((rd / "spec.json").read_text())
            data = spec.get("eval_data")
            if not data:
                sys.exit(f"publish: {rd}: the sweep evaluated on a held-out file; publish with --no-weights")
            args = ["eval", str(rd), "--data", data]
            if spec.get("eval_limit"):
                args += ["--limit", str(spec["eval_limit"])]
            fresh = json.loads(_seqvcr(*args).strip().splitlines()[-1])
            (rd / "test_eval.json").write_text(json.dumps(fresh, indent=2) + "\n")
            old = json.loads((rd / "eval.json").read_text())
            if fresh["exact_match"] != old["exact_match"] or fresh["n"] != old["n"]:
                sys.exit(
                    f"publish: {rd}: seqvcr eval gives exact match {fresh['exact_match']} on {fresh['n']} "
                    f"examples, the sweep's eval.json {old['exact_match']} on {old['n']}: re-evaluate"
                )
            print(f"published {run['dir']}: exact match {fresh['exact_match']:.4f}", file=sys.stderr)
    if out.exists():  # replaced only now that the new study is complete (--force)
        shutil.rmtree(out)
    tmp.rename(out)
    return published


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path, help="a sweep directory (with manifest.json)")
    p.add_argument("out", type=Path, help="the study directory to write, e.g. results/cpu_table1")
    p.add_argument("--name", action="append", default=[], metavar="LABEL=NAME",
                   help="directory name for a setting label (default: the label made file-safe)")
    p.add_argument("--no-weights", action="store_true", help="summaries only: no model.safetensors")
    p.add_argument("--force", action="store_true", help="replace an existing study directory")
    args = p.parse_args(argv)
    if not (args.sweep / "manifest.json").is_file():
        sys.exit(f"publish: {args.sweep}: not a sweep directory (no manifest.json)")
    names = {}
    for item in args.name:
        label, sep, name = item.rpartition("=")  # labels may hold "=", names do not
        if not sep or not name:
            sys.exit(f"publish: --name {item!r}: expected LABEL=NAME")
        names[label] = name
    runs = publish(args.sweep, args.out, names, not args.no_weights, args.force)
    print(json.dumps({"out": str(args.out), "runs": len(runs)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
