"""``seqvcr bench``: how fast the pieces of this implementation are, with the machine stated.

One module per benchmark, each target a RATIO of two measurements alternated in one process, so that
machine load and clock drift cancel: ``loss`` (a) Seq-VCR loss vs per-position d x d covariance,
``step`` (b) a training step with vs without Seq-VCR, ``mfu`` (c) GPU tokens/s and MFU, ``decoding`` (d)
greedy decoding with vs without KV cache, ``entropy_speed`` (e) the entropy of every layer. ``harness``
holds what they share, ``suite`` runs them and renders bench.md, ``cli`` is the command. ``--quick``
shrinks sizes and repeats (its numbers are marked as not the targets' settings).
"""

from __future__ import annotations

from seqvcr.bench.decoding import naive_generate
from seqvcr.bench.loss import naive_seq_vcr_loss
from seqvcr.bench.mfu import PEAK_BF16_TFLOPS, peak_bf16_tflops
from seqvcr.bench.suite import BENCHMARKS, evaluate_targets, parse_only, render_markdown, run_benchmarks

__all__ = ["BENCHMARKS", "PEAK_BF16_TFLOPS", "evaluate_targets", "naive_generate", "naive_seq_vcr_loss",
           "parse_only", "peak_bf16_tflops", "render_markdown", "run_benchmarks"]
