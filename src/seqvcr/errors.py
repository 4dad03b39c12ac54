"""Errors that the command line reports as one clear line instead of a traceback."""

from __future__ import annotations


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
