"""What every benchmark of ``seqvcr bench`` shares: its settings, the clock, timed repeats with A/B
interleaving, and the record of a target.

Repeats become ``torch.utils.benchmark`` ``Measurement`` objects, but the loop is our own rather than
``Timer.blocked_autorange``: every comparison alternates the compared functions (A B A B ...) with a
fixed warm-up and repeat count, so a change of load on the machine hits each alike and the ratio of
their medians stays fair.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from seqvcr import config as C
from seqvcr.model import GPT
from seqvcr.runs import autocast as _run_autocast
from seqvcr.runs import build_format, build_model, build_task
from seqvcr.sequences import EncodedData, SequenceFormat, encode_examples
from seqvcr.tasks import Example, Task

if TYPE_CHECKING:
    from torch.utils.benchmark import Measurement

__all__ = ["CLOCKS", "MODELS", "Settings", "autocast", "measure", "measure_interleaved", "ms", "stats",
           "target", "tf32", "timed", "untrained_model"]

#: ``--clock``: wall time, or the CPU time of this process (with one thread the compute time of the
#: code, which unlike wall time does not grow when other processes share the cores).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}

#: The models the benchmarks time: ``tiny`` as configs/tiny_cpu.yaml has it, and GPT-2 small (the paper's
#: multiplication model).
MODELS: dict[str, dict[str, Any]] = {
    "tiny": {"preset": "tiny", "n_layer": 2, "n_head": 4, "n_embd": 128, "dropout": 0.0},
    "gpt2-small": {"preset": "gpt2-small"},
}


@dataclass
class Settings:
    """What to run and how hard."""

    device: torch.device
    only: tuple[str, ...]
    quick: bool = False
    full: bool = False
    compile: bool = False
    warmup: int = 2
    repeats: int = 7
    peak_tflops: float | None = None
    mfu_batch: int | None = None
    clock: str = "wall"  # a key of CLOCKS
    log: Callable[[str], None] = lambda msg: None
    done: Callable[[], None] = lambda: None  # one benchmark finished (a progress bar)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def precision(self) -> str:
        """How the forward passes run (see :func:`autocast`), in a report."""
        return "bf16 autocast" if self.cuda else "fp32"

    def now(self) -> float:
        """The chosen clock, once the GPU has finished the work queued so far."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return CLOCKS[self.clock]()


def timed(s: Settings, fn: Callable[[], Any], calls: int = 1) -> float:
    """Seconds of ``calls`` calls of ``fn`` on the chosen clock."""
    t0 = s.now()
    for _ in range(calls):
        fn()
    return s.now() - t0


def measure(s: Settings, fn: Callable[[], Any], warmup: int, repeats: int, label: str = "") -> Measurement:
    """``warmup`` untimed calls of ``fn``, then ``repeats`` timed ones."""
    return measure_interleaved(s, {label: fn}, warmup, repeats)[label]


def measure_interleaved(
    s: Settings, fns: dict[str, Callable[[], Any]], warmup: int, repeats: int, block: int = 1
) -> dict[str, Measurement]:
    """Time several functions alternately (A B A B ...) after ``warmup`` untimed calls of each; a ratio of
    their medians is then a fair comparison. Each timed region runs its function ``block`` times (the
    measurement is per call)."""
    from torch.utils.benchmark import Measurement, TaskSpec  # imported when timing: it is slow to import

    for fn in fns.values():
        for _ in range(warmup * block):
            fn()
    raw: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            raw[k].append(timed(s, fn, block))
    threads = torch.get_num_threads()
    return {k: Measurement(block, times, TaskSpec(stmt=k, setup="", num_threads=threads))
            for k, times in raw.items()}


def stats(m: Measurement) -> dict[str, Any]:
    """The record of a measurement in bench.json: median, fastest and slowest call, repeats."""
    return {"median_s": m.median, "min_s": min(m.times), "max_s": max(m.times), "repeats": len(m.times)}


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Set the CUDA TF32 switches for a block and restore them after."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def autocast(device: torch.device) -> AbstractContextManager[Any]:
    """The training fast path's precision: bf16 autocast on CUDA, fp32 on CPU (``train.precision: auto``)."""
    return _run_autocast(device, "auto")


def ms(seconds: float) -> str:
    """Milliseconds, as the tables show them."""
    return f"{seconds * 1e3:,.1f}"


def target(tid: str, what: str, setting: str, measured: float | None, unit: str, required: str,
           passed: bool | None, status: str | None = None) -> dict[str, Any]:
    """One row of the targets table: the measured number against what is required (``status``: why
    it was not judged, else pass / FAIL)."""
    if status is None:
        status = "pass" if passed else "FAIL"
    return {"id": tid, "target": what, "setting": setting, "measured": measured, "unit": unit,
            "required": required, "status": status}


def untrained_model(
    s: Settings, preset: str, digits: int, examples: Callable[[Task], list[Example]]
) -> tuple[GPT, SequenceFormat, EncodedData]:
    """An untrained GPT of ``MODELS[preset]`` (seed 0, eval mode) for ``digits`` x ``digits``
    multiplication with two pause tokens, and ``examples(task)`` tokenised, both on the device."""
    cfg = C.resolve(C.from_dict({
        "task": {"name": "mult", "digits": digits},
        "model": dict(MODELS[preset]),
        "method": {"name": "seqvcr_pause", "pauses": 2},
    }))
    task = build_task(cfg)
    fmt = build_format(cfg, task)
    data = encode_examples(fmt, examples(task)).to(s.device)  # (n, L)
    torch.manual_seed(0)
    model = build_model(cfg, fmt.tokenizer.vocab_size, data.max_length).to(s.device).eval()
    return model, fmt, data
