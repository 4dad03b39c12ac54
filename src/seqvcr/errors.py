"""Errors that the command line reports as one clear line instead of a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SeqVCRError(Exception):
    """Base class: any error a user can fix by changing their input (file, config, flag)."""


class DataError(SeqVCRError):
    """A data file is malformed, empty or of the wrong task; the message names file:line."""


class ConfigError(SeqVCRError):
    """A config key or value is unknown or out of range; the message names the key and allowed values."""


class RunDirError(SeqVCRError):
    """A run or output directory is in a state that would lose results (finished run without --force)."""


class InputShapeError(SeqVCRError, ValueError):
    """A tensor handed to a library function (Seq-VCR, matrix entropy) has the wrong dimensions or sizes."""


class TrainingDivergedError(SeqVCRError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@contextmanager
def disk_error(
    path: Path,
    failed: str,
    advice: str = "free some space and re-run the same command to resume from the last checkpoint",
) -> Iterator[None]:
    """An OSError of the writes inside (a full disk) as a one-line ``PATH: failed (why); advice``."""
    try:
        yield
    except OSError as err:
        raise RunDirError(f"{path}: {failed} ({err.strerror or err}); {advice}") from None
