"""Progress of the long commands (eval, entropy, report, sweep, bench) on stderr.

Where the output goes decides the form:

* a terminal (stderr is a TTY, outside a SLURM job): a live ``tqdm`` bar that redraws in place;
* a log file, a pipe, or a SLURM job (whose stderr is a file read later or followed with ``tail -f``):
  plain lines, at most one every ``interval`` seconds (default 30) and one at the end, e.g.
  ``eval: 40000/100000 examples (40%), 95s elapsed, eta 142s``, so that a log stays readable and a
  100k-problem evaluation is not silent for minutes;
* ``enabled=False`` (``--quiet``): nothing.

``ProgressBar.write`` prints a line without breaking a bar (commands that report events, such as a
sweep's finished runs, print through it).
"""

from __future__ import annotations

import math
import os
import sys
import time
from types import TracebackType
from typing import Any, TextIO

__all__ = ["PLAIN_INTERVAL_S", "ProgressBar", "interactive"]

#: Seconds between two plain progress lines (log files, SLURM).
PLAIN_INTERVAL_S = 30.0


def interactive(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal a person watches (a TTY, and not a SLURM job's output)."""
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed stream
        return False
    return tty and "SLURM_JOB_ID" not in os.environ


def _seconds(s: float) -> str:
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.1f} min"


class ProgressBar:
    """Progress over ``total`` units (None: unknown) of ``unit``, each line prefixed with ``desc`` (``eval``),
    shown on ``stream`` (default: ``sys.stderr`` at the time of the call) as the module docstring says.
    ``plain=False`` writes no plain progress lines (for commands whose own event lines already say how far
    they are, such as a sweep's ``[3/10] done ...``); the bar on a terminal is kept."""

    def __init__(
        self, total: int | None, desc: str, *, unit: str = "it", enabled: bool = True,
        stream: TextIO | None = None, interval: float | None = None, plain: bool = True,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval = PLAIN_INTERVAL_S if interval is None else interval
        self.plain = plain
        self.n = 0
        self.t0 = time.perf_counter()
        self._last_line = self.t0
        self._closed = False
        self._bar: Any = None
        if enabled and interactive(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", file=self.stream, dynamic_ncols=True,
                             leave=True, mininterval=0.2)

    @property
    def is_bar(self) -> bool:
        """True when a live bar is drawn (a terminal)."""
        return self._bar is not None

    def update(self, n: int = 1) -> None:
        """``n`` more units are done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        unfinished = self.total is None or self.n < self.total
        if self.enabled and self.plain and unfinished and now - self._last_line >= self.interval:
            self._last_line = now
            self._line(self._status(now))

    def write(self, text: str) -> None:
        """Print one line (an event) without breaking the bar."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        elif self.enabled:
            self._line(text)

    def close(self, *, failed: bool = False) -> None:
        """Finish: the bar stays on screen; a plain-line stream gets the final count and time (not
        when ``failed``: the error is the command's last word)."""
        if self._closed or not self.enabled:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.plain and self.n and not failed:
            done = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
            self._line(f"{self.desc}: {done} {self.unit} in {_seconds(time.perf_counter() - self.t0)}")

    def _status(self, now: float) -> str:
        elapsed = now - self.t0
        if self.total:
            frac = self.n / self.total
            eta = elapsed / frac - elapsed if frac > 0 else math.inf
            tail = f", eta {_seconds(eta)}" if math.isfinite(eta) else ""
            return (f"{self.desc}: {self.n}/{self.total} {self.unit} ({100 * frac:.0f}%), "
                    f"{_seconds(elapsed)} elapsed{tail}")
        return f"{self.desc}: {self.n} {self.unit}, {_seconds(elapsed)} elapsed"

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(failed=exc_type is not None)
