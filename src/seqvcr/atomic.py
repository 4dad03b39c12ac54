"""Atomic file writes: a temporary file in the same directory, then a rename.

A reader (or a crash) never sees half a file, so a result that exists is a result that is complete.
Every file seqvcr writes for a person or a later command goes through here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def _replace(path: str | Path, fill: Callable[[Path], object]) -> Path:
    """``fill`` a temporary file next to ``path`` (its name unique per process), then rename it over
    ``path``; whatever ``fill`` raises propagates after the temporary file is removed."""
    p = Path(path)
    tmp = p.with_name(f"{p.name}.tmp{os.getpid()}")
    try:
        fill(tmp)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return _replace(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_bytes_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Stream a binary file to ``path`` atomically, ``write(f)`` filling it, flushed to disk (fsync): for
    large files (weights, checkpoints) not to be built in memory first. A failed write (ENOSPC) leaves
    ``path`` as it was and frees the space the attempt took."""

    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    return _replace(path, fill)


def check_output_path(path: str | Path, what: str, *, directory: bool) -> Path:
    """Fail early, with a one-line RunDirError naming the argument ``what`` (``--out``), where writing
    ``path`` later would fail: a file where a directory is wanted (or the reverse), a path below a file,
    or one whose nearest existing directory cannot be written. Nothing is created here."""
    from seqvcr.errors import RunDirError

    p = Path(path)
    if p.exists():
        if directory and not p.is_dir():
            raise RunDirError(f"{what} {p}: exists and is not a directory")
        if not directory and p.is_dir():
            raise RunDirError(f"{what} {p}: is a directory; give a file name")
        where = p if directory else p.parent
    else:
        where = p.parent
        while not where.exists() and where != where.parent:
            where = where.parent
        if not where.is_dir():
            raise RunDirError(f"{what} {p}: cannot be created: {where} is a file, not a directory")
    if not os.access(where, os.W_OK | os.X_OK):
        raise RunDirError(f"{what} {p}: cannot be written: {where} is not writable")
    return p
