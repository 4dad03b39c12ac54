"""Publish a finished sweep as a study directory that can be committed and re-scored
(``scripts/publish_runs.py SWEEP_DIR results/STUDY``).

Each finished run goes to ``results/STUDY/<name>_s<seed>/`` (``<name>``: its setting's label made
file-safe, or the one given in ``names``) with ``RUN_FILES`` and, unless ``weights=False``, its final
weights -- never a checkpoint. The manifest and plan are copied with each run's ``dir`` pointing at its
new directory, so ``seqvcr report results/STUDY`` aggregates the study as it did the sweep. With weights,
every run is re-scored with this seqvcr (``TEST_EVAL``), which must agree with the sweep's ``eval.json``.
An existing study directory is only replaced with ``force``, and only once the new one is complete.

Republishing a growing study changes only what changed: a run whose weights are those already published
keeps what was measured of it since (``seqvcr probe``'s files, for one), and where its re-scoring gives
the published evaluation again -- every field but the timing -- the published files are kept byte for
byte. The evaluations record the run's place in the study, never the temporary directory it is built in.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from seqvcr.atomic import write_json_atomic
from seqvcr.checkpoints import MODEL_FILE
from seqvcr.errors import RunDirError
from seqvcr.experiments import sweep as S
from seqvcr.outputs import ENTROPY_FILES, EVAL_DIR, file_sha256
from seqvcr.runs import CONFIG_FILE, METRICS_FILE, RESULT_FILE

__all__ = ["RUN_FILES", "TEST_EVAL", "publish", "select_study", "slug"]

#: What a published run keeps (besides its weights): its config, the sweep's spec, the result, the
#: training curves and the measurements.
RUN_FILES = (CONFIG_FILE, S.SPEC, RESULT_FILE, METRICS_FILE, S.EVAL, *ENTROPY_FILES)
#: The re-scoring of a published run with weights.
TEST_EVAL = "test_eval.json"
#: The fields of an evaluation that say how fast it ran, not what it measured.
_TIMING = ("examples_per_s", "seconds")


def slug(label: str) -> str:
    """A file-safe directory name for a setting label ('svp L2 90k' -> 'svp_l2_90k')."""
    s = re.sub(r"[^a-z0-9.+-]+", "_", label.lower()).strip("_")
    return s or "setting"


def select_study(manifest: dict[str, Any], study: str) -> dict[str, Any]:
    """The manifest of one study of a sweep: that study, and its runs under the study's own setting
    labels (a run shared by several studies -- the same configuration -- appears in each)."""
    chosen = [st for st in manifest["studies"] if st["name"] == study]
    if not chosen:
        names = ", ".join(st["name"] for st in manifest["studies"])
        raise RunDirError(f"the sweep has no study {study!r}; its studies: {names}")
    by_id = {r["id"]: r for r in manifest["runs"]}
    runs = []
    for setting in chosen[0]["settings"]:
        for seed, rid in setting["runs"].items():
            run = dict(by_id[rid], study=study, setting=setting["label"], also=[])
            run["seed"] = int(seed)
            runs.append(run)
    return {**manifest, "studies": chosen, "runs": runs}


def publish(
    sweep: Path, out: Path, names: dict[str, str], weights: bool, force: bool, study: str | None = None
) -> list[dict[str, Any]]:
    """Write the study directory ``out`` from ``sweep`` (see the module docstring); returns the
    manifest entries of the published runs. ``names`` maps a setting label to its directory name;
    ``study`` publishes only that study of the sweep."""
    manifest = S.load_manifest(sweep)
    if study is not None:
        manifest = select_study(manifest, study)
    if out.exists() and not force:
        raise RunDirError(f"{out} exists; use --force to replace it")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    published = []
    taken: set[str] = set()
    for run in manifest["runs"]:
        src = S.run_path(sweep, run)
        name = f"{names.get(run['setting'], slug(run['setting']))}_s{run['seed']}"
        if name in taken:
            raise RunDirError(f"two runs map to {name}; give one of them another --name")
        taken.add(name)
        run["dir"] = name  # an unfinished run keeps its place (the report counts it as pending)
        if not (src / RESULT_FILE).is_file() or not (src / S.EVAL).is_file():
            print(f"publish: leaving out {run['setting']} seed {run['seed']} (not finished)", file=sys.stderr)
            continue
        dst = tmp / name
        dst.mkdir()
        for f in RUN_FILES + ((MODEL_FILE,) if weights else ()):
            if (src / f).is_file():
                shutil.copy2(src / f, dst / f)
        if force:
            _keep_measurements(out / name, dst)
        published.append(run)
    write_json_atomic(tmp / S.MANIFEST, manifest)
    if (sweep / S.PLAN_COPY).is_file():
        shutil.copy2(sweep / S.PLAN_COPY, tmp / S.PLAN_COPY)
    if weights:
        for run in published:
            _rescore(tmp / run["dir"], out / run["dir"])
    if out.exists():  # replaced only now that the new study is complete (force)
        shutil.rmtree(out)
    tmp.rename(out)
    return published


def _keep_measurements(old: Path, new: Path) -> None:
    """Copy into the run directory ``new`` what the earlier publication ``old`` of the same weights
    holds beyond the sweep's files (re-scorings, probes); nothing where the weights differ."""
    if not ((old / MODEL_FILE).is_file() and (new / MODEL_FILE).is_file()):
        return
    if file_sha256(old / MODEL_FILE) != file_sha256(new / MODEL_FILE):
        return
    for item in old.iterdir():
        if (new / item.name).exists():
            continue
        if item.is_dir():
            shutil.copytree(item, new / item.name)
        else:
            shutil.copy2(item, new / item.name)


def _measured(summary: dict[str, Any]) -> dict[str, Any]:
    """An evaluation without its timing: what must agree for a published one to stand."""
    return {k: v for k, v in summary.items() if k not in _TIMING}


def _rescore(rd: Path, final: Path) -> None:
    """Evaluate the published run ``rd`` (which will move to ``final``) on the sweep's evaluation file;
    it must agree with the sweep's. The files it writes name ``final``; where an evaluation kept from an
    earlier publication measured the same, that one's files stay as they were."""
    from seqvcr.evaluation import evaluate_file

    spec = json.loads((rd / S.SPEC).read_text())
    data = spec.get("eval_data")
    if not data:
        raise RunDirError(f"{rd}: the sweep evaluated on a held-out file; publish with --no-weights")
    earlier = S.read_json(rd / TEST_EVAL)  # kept from an earlier publication; None if absent or unreadable
    kept = {p: p.read_bytes() for p in [rd / TEST_EVAL, *(rd / EVAL_DIR).glob("*")] if p.is_file()}
    fresh = evaluate_file(str(rd), data, limit=spec.get("eval_limit") or 0, save=True)
    for key in ("run_dir", "saved"):  # the temporary study directory -> the study's own
        if key in fresh:
            fresh[key] = str(final / Path(fresh[key]).relative_to(rd))
    if "saved" in fresh:  # the copy in eval/ is written without its own path, as evaluate_file writes it
        write_json_atomic(rd / Path(fresh["saved"]).relative_to(final),
                          {k: v for k, v in fresh.items() if k != "saved"})
    preds = rd / EVAL_DIR / str(fresh.get("predictions_file"))
    same = (isinstance(earlier, dict) and _measured(earlier) == _measured(fresh)
            and kept.get(preds) in (None, preds.read_bytes() if preds.is_file() else None))
    if same:
        for path, content in kept.items():
            path.write_bytes(content)
    else:
        write_json_atomic(rd / TEST_EVAL, fresh)
    old = json.loads((rd / S.EVAL).read_text())
    if fresh["exact_match"] != old["exact_match"] or fresh["n"] != old["n"]:
        raise RunDirError(f"{rd}: seqvcr eval gives exact match {fresh['exact_match']} on {fresh['n']} "
                          f"examples, the sweep's eval.json {old['exact_match']} on {old['n']}: re-evaluate")
    print(f"published {rd.name}: exact match {fresh['exact_match']:.4f}", file=sys.stderr)
