"""Saved measurements of a run (``seqvcr eval``, ``seqvcr entropy``) and whether they are up to date.

Every evaluation and entropy result records its **source**: the weights file it measured (relative to
the run directory), that file's SHA-256 and step, the data file as given and its SHA-256, and the
seqvcr version. A saved result is *up to date* for a new request when the source is the same (same
weights, same data content, same code version) and so are the settings that change its numbers
(``--limit`` and the decoding precision for an evaluation; the sample, the Renyi order and the
normalisation for entropy). ``seqvcr report`` then reuses it instead of decoding the test file again;
anything else is measured afresh. Nothing is trusted by name or date alone.

Where a run's saved measurements are (``home``: the run directory, or, for the snapshot of step N,
``RUN_DIR/snapshots/step_00000N/``)::

    HOME/eval/<data stem>-<8 hex of the data's SHA-256>[_limit<L>].json   `seqvcr eval`'s summary
    HOME/eval/<same>.predictions.jsonl                                    one JSON object per example
    HOME/entropy.json, entropy.csv, entropy_values.csv                    `seqvcr entropy`
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from seqvcr.runfiles import ENTROPY_CSV, ENTROPY_FILES, ENTROPY_JSON, ENTROPY_VALUES_CSV, EVAL_DIR
from seqvcr.runs import snapshot_file

__all__ = ["ENTROPY_CSV", "ENTROPY_FILES", "ENTROPY_JSON", "ENTROPY_VALUES_CSV", "EVAL_DIR", "analysis_home",
           "eval_name", "file_sha256", "find_entropy", "find_eval", "source"]

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (cached per path, size and modification time)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def analysis_home(run_dir: str | os.PathLike[str], step: int | None = None) -> Path:
    """Where the measurements of a run (``step`` None) or of its snapshot of ``step`` are saved."""
    return Path(run_dir) if step is None else snapshot_file(run_dir, step).with_suffix("")


def source(run_dir: str | os.PathLike[str], weights: str | os.PathLike[str], step: int, data_file: str,
           data_path: Path) -> dict[str, Any]:
    """What a measurement was made from (see the module docstring)."""
    from seqvcr import __version__

    rd, w = Path(run_dir), Path(weights)
    try:
        rel = str(w.resolve().relative_to(rd.resolve()))
    except ValueError:
        rel = str(w)
    return {"weights": rel, "weights_sha256": file_sha256(w), "step": int(step), "data": str(data_file),
            "data_sha256": file_sha256(data_path), "seqvcr": __version__}


def _same_source(saved: Any, want: dict[str, Any]) -> bool:
    """The same weights, data content and code version (the data may have been named differently)."""
    keys = ("weights", "weights_sha256", "step", "data_sha256", "seqvcr")
    return isinstance(saved, dict) and all(saved.get(k) == want.get(k) for k in keys)


def eval_name(data_path: Path, limit: int) -> str:
    """The file stem of a saved evaluation: ``test-1a2b3c4d`` (``_limit100`` with a limit)."""
    stem = f"{data_path.stem}-{file_sha256(data_path)[:8]}"
    return stem + (f"_limit{limit}" if limit else "")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def find_eval(
    places: Iterable[Path], want: dict[str, Any], *, limit: int, precision: str
) -> tuple[dict[str, Any], Path, Path] | None:
    """An up-to-date saved evaluation (same source, ``limit`` and ``precision``), its file and its
    predictions file, searched in ``places`` (files, or directories whose ``*.json`` are candidates), or
    None. The predictions file it names must exist, relative to it or in the ``eval/`` directory next to
    it (where ``seqvcr eval`` saved the copy a published run's ``test_eval.json`` names)."""
    for place in places:
        candidates = sorted(place.glob("*.json")) if place.is_dir() else [place]
        for path in candidates:
            saved = _read(path) if path.is_file() else None
            if (saved is None or not _same_source(saved.get("source"), want) or saved.get("limit", 0) != limit
                    or saved.get("precision") != precision):
                continue
            name = str(saved.get("predictions_file") or "")
            for preds in (path.parent / name, path.parent / EVAL_DIR / name):
                if name and preds.is_file():
                    return saved, path, preds
    return None


def find_entropy(
    places: Iterable[Path], want: dict[str, Any], *, indices: list[int], alpha: float, normalize: bool
) -> tuple[dict[str, Any], Path] | None:
    """An up-to-date saved entropy result (same source, same sample of lines, same alpha and
    normalisation) and its file, among the files ``places``, or None."""
    for path in places:
        saved = _read(path) if path.is_file() else None
        if (saved is not None and _same_source(saved.get("source"), want) and saved.get("indices") == indices
                and saved.get("alpha") == alpha and bool(saved.get("normalized")) == normalize
                and isinstance(saved.get("layers"), list)):
            return saved, path
    return None
