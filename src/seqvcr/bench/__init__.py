"""``seqvcr bench``: how fast the pieces of this implementation are, with the machine stated.

One module per benchmark, (a) ``loss`` to (e) ``entropy_speed`` (``suite.MODULES``), each target a RATIO
of two measurements alternated in one process, so that machine load and clock drift cancel. ``harness``
holds what they share, ``suite`` runs them and renders bench.md, ``cli`` is the command.
"""

from __future__ import annotations

from seqvcr.bench.decoding import naive_generate
from seqvcr.bench.loss import naive_seq_vcr_loss
from seqvcr.bench.mfu import PEAK_BF16_TFLOPS, peak_bf16_tflops
from seqvcr.bench.suite import BENCHMARKS, evaluate_targets, parse_only, render_markdown, run_benchmarks

__all__ = ["BENCHMARKS", "PEAK_BF16_TFLOPS", "evaluate_targets", "naive_generate", "naive_seq_vcr_loss",
           "parse_only", "peak_bf16_tflops", "render_markdown", "run_benchmarks"]
