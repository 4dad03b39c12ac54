"""``seqvcr bench``: how fast the pieces of this implementation are, with the machine stated.

Five benchmarks, one module each, each timed with warm-up runs and then repeated runs (the median is
reported; the GPU synchronised around every timed region). Every speed target is a RATIO of two
measurements taken in the same process, one right after the other and alternated, so that machine
load and clock drift cancel as far as they can:

* ``loss`` -- (a) the Seq-VCR loss against the per-position d x d covariance (target >= 20x);
* ``step`` -- (b) a training step with and without Seq-VCR (overhead <= 15% on CPU, <= 5% on GPU);
* ``mfu`` -- (c) GPU only: training tokens/s and model FLOPs utilisation of gpt2-small (>= 40% on an
  H100; on a CPU recorded as skipped, never estimated);
* ``decoding`` -- (d) greedy decoding with the KV cache against naive decoding, and ``evaluate``;
* ``entropy_speed`` -- (e) the entropy of every layer over 1000 sequences.

``harness`` holds what they share (settings, the clock, timed and interleaved repeats, a target's
record), ``suite`` runs them and renders bench.md, ``cli`` is the command (``seqvcr.bench.cli``,
registered by ``seqvcr.cli``). ``--quick`` shrinks the
sizes and repeats so that a test can run everything in seconds; its numbers are not the targets'
settings and are marked so in the output. Timings are wall-clock by default; ``--clock cpu`` times the
CPU time of this process instead (CPU runs only), which with ``--threads 1`` is the compute time of the
code and stays steady when other jobs share the machine.
"""

from __future__ import annotations

from seqvcr.bench.decoding import naive_generate
from seqvcr.bench.loss import naive_seq_vcr_loss
from seqvcr.bench.mfu import PEAK_BF16_TFLOPS, peak_bf16_tflops
from seqvcr.bench.suite import BENCHMARKS, evaluate_targets, parse_only, render_markdown, run_benchmarks

__all__ = ["BENCHMARKS", "PEAK_BF16_TFLOPS", "evaluate_targets", "naive_generate", "naive_seq_vcr_loss",
           "parse_only", "peak_bf16_tflops", "render_markdown", "run_benchmarks"]
