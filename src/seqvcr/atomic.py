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


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (the temporary name is unique per process)."""
    p = Path(path)
    tmp = p.with_name(f"{p.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_bytes_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Stream a binary file to ``path`` atomically: ``write(f)`` fills a temporary file, which is flushed
    to disk (fsync) and renamed over ``path``.

    For large files (model weights, checkpoints) that should not be built in memory first. Whatever
    ``write`` raises (a full disk: ``OSError`` ENOSPC) propagates after the temporary file is removed,
    so a failed write leaves ``path`` as it was and frees the space the attempt took.
    """
    p = Path(path)
    tmp = p.with_name(f"{p.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def check_output_path(path: str | Path, what: str, *, directory: bool) -> Path:
    """Fail early, with one line, where writing ``path`` later would fail.

    Refuses a file where a directory is wanted (or the reverse), a path below a file, and a path whose
    nearest existing directory cannot be written, so that a command stops before its work instead of
    after it. ``what`` names the argument in the message (``--out``, ``--predictions``). Nothing is
    created here.

    Raises:
        RunDirError: the path cannot be written as wanted.
    """
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
