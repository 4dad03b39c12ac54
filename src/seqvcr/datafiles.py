"""Data file paths: ordinary paths, or ``ref:...`` for the reference files shipped with seqvcr.

``ref:mult/4x4/test.txt`` is Deng et al.'s 4x4 multiplication test set (see reference_data/README.md),
so configs and commands work from any directory without a copy of the data.
"""

from __future__ import annotations

from pathlib import Path

from seqvcr.errors import DataError

REF_PREFIX = "ref:"
REFERENCE_DIR = Path(__file__).resolve().parent / "reference_data"


def resolve_data_path(path: str | Path) -> Path:
    """Map ``ref:<relative path>`` to the shipped file; other paths are returned unchanged."""
    s = str(path)
    if not s.startswith(REF_PREFIX):
        return Path(s)
    p = REFERENCE_DIR / s.removeprefix(REF_PREFIX).lstrip("/")
    if not p.is_file():
        shipped = sorted(str(f.relative_to(REFERENCE_DIR)) for f in REFERENCE_DIR.rglob("*.txt"))
        raise DataError(f"{s}: no such reference file; shipped: {', '.join(REF_PREFIX + f for f in shipped)}")
    return p
