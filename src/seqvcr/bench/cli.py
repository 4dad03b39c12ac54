"""``seqvcr bench``: run the benchmarks, write OUT/bench.json and OUT/bench.md with the machine stated."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import torch

from seqvcr import commands
from seqvcr.atomic import write_json_atomic, write_text_atomic
from seqvcr.bench.harness import CLOCKS, Settings
from seqvcr.bench.suite import BENCHMARKS, parse_only, render_markdown, run_benchmarks
from seqvcr.errors import ConfigError, SeqVCRError
from seqvcr.progress import ProgressBar
from seqvcr.runs import select_device

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the ``seqvcr`` command."""
    p = commands.add_command(subparsers, "bench", _cmd_bench, "benchmarks: Seq-VCR loss, training-step "
                             "overhead, GPU MFU, decoding, entropy (JSON + Markdown)")
    commands.add_out(p, "bench_out")
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (seconds; for tests)")
    p.add_argument("--full", action="store_true", help="also gpt2-small on 5x5 in (d)")
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of a,b,c,d,e")
    commands.add_device(p)
    p.add_argument("--compile", action="store_true", help="torch.compile the model in (b) and (c)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice); 1 is steadier on a busy machine")
    p.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                   help="wall or cpu: CPU time of this process, steady on a shared machine "
                   "(CPU runs; with --threads 1 it is the compute time)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7, --quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up runs (default 2, --quick 1)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="(c) the GPU's dense bf16 peak, for GPUs not in the built-in table")
    p.add_argument("--mfu-batch", type=int, default=None, help="(c) use this batch instead of searching")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines")


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (canonical form: every option spelled out)."""
    parts = ["seqvcr", "bench", "--out", args.out, "--only", ",".join(parse_only(args.only)),
             "--device", args.device]
    parts += [f"--{flag}" for flag in ("quick", "full", "compile") if getattr(args, flag)]
    if args.clock != "wall":
        parts += ["--clock", args.clock]
    for name in ("threads", "repeats", "warmup", "peak_tflops", "mfu_batch"):
        value = getattr(args, name)
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def _cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmarks (a) Seq-VCR loss vs per-position d x d covariance, (b) training step with /
    without Seq-VCR, (c) GPU tokens/s and MFU, (d) decoding with / without KV cache, (e) entropy of every
    layer; write OUT/bench.json and OUT/bench.md with the machine stated."""
    commands.check_at_least("--repeats", args.repeats, 1)
    commands.check_at_least("--warmup", args.warmup, 0)
    commands.check_at_least("--threads", args.threads, 1)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} exists and is not a directory")
    device = select_device(args.device)
    if device.type == "cuda" and device.index is None:  # "cuda" -> the current device, explicitly
        device = torch.device("cuda", torch.cuda.current_device())
    only = parse_only(args.only)
    bar = ProgressBar(len(only), "bench", unit="benchmarks", enabled=not args.quiet, plain=False)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 7)
    s = Settings(device=device, only=only, quick=args.quick, full=args.full, compile=args.compile,
                 warmup=warmup, repeats=repeats, peak_tflops=args.peak_tflops, mfu_batch=args.mfu_batch,
                 clock=args.clock, log=lambda msg: bar.write(f"bench: {msg}"), done=bar.update)
    from torch.utils.benchmark import set_torch_threads  # slow to import: not for `seqvcr --help`

    # an in-process caller keeps its thread setting
    with set_torch_threads(args.threads if args.threads is not None else torch.get_num_threads()), bar:
        report = run_benchmarks(s, _command(args))
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "bench.json", report)
    write_text_atomic(out / "bench.md", render_markdown(report))
    targets = {t["id"]: [t["measured"], t["status"]] for t in report["targets"]}
    commands.print_json({"out": str(out), "targets": targets})
    a = report["results"].get("a")
    if a is not None and not a["values_match"]:
        raise SeqVCRError(f"bench (a): the two Seq-VCR forms differ (relative {a['rel_value_diff']:.1e} > "
                          f"1e-4); see {out / 'bench.json'}")
    return 0
