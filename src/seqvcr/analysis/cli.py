"""Subcommands ``seqvcr entropy``, ``seqvcr report`` and ``seqvcr demo`` (registered by ``seqvcr.cli``).

``seqvcr report`` is shared with the sweep engine: given one directory holding a ``manifest.json`` it
writes the sweep's aggregated report (``seqvcr.experiments.aggregate.report_sweep``); given run
directories it writes the per-run report of ``seqvcr.analysis.report``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from seqvcr.atomic import check_output_path
from seqvcr.errors import ConfigError, RunDirError

__all__ = ["register"]


def _command_line() -> str:
    return "seqvcr " + " ".join(shlex.quote(a) for a in sys.argv[1:])


# --------------------------------------------------------------------------- entropy
def _add_entropy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "entropy",
        help="matrix entropy of every layer of a trained run (per sequence and dataset level)",
        description="Per-sequence matrix entropy (Eq. 2, Gram over each sequence's tokens) of every layer "
        "L0..LN over a fixed sample of sequences: mean, std, 95% CI and the whole distribution, plus a "
        "dataset-level entropy (one mean vector per sequence). Writes entropy.json, entropy.csv and "
        "entropy_values.csv (into RUN_DIR, or RUN_DIR/snapshots/step_N/ with --step); prints the "
        "per-layer summary as JSON. seqvcr report reuses these files while they are up to date.",
    )
    p.add_argument("run_dir",
                   help="a run directory (config.yaml + model.safetensors or checkpoint.safetensors)")
    p.add_argument("--data", required=True, help="data file in the task's format (ref:mult/3x3/test.txt ...)")
    p.add_argument("--n", type=int, default=1000, help="sequences in the sample")
    p.add_argument("--seed", type=int, default=0,
                   help="sampling seed when the file has more lines than --n (-1: the first --n lines)")
    p.add_argument("--alpha", type=float, default=1.0, help="Renyi order (1 = von Neumann, the paper's)")
    p.add_argument("--normalize", action="store_true", help="divide by log(min(T, d)): values in [0, 1]")
    p.add_argument("--batch-size", type=int, default=256, help="sequences per forward pass")
    p.add_argument("--step", type=int, default=None,
                   help="measure the snapshot of this training step (train.snapshot_steps) instead of the "
                   "final weights")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--out", default=None,
                   help="directory for the files (default: RUN_DIR, or RUN_DIR/snapshots/step_N with --step)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_entropy)


def _cmd_entropy(args: argparse.Namespace) -> int:
    from seqvcr.analysis.layer_entropy import brief, compute_layer_entropy, write_entropy

    if args.n < 1:
        raise ConfigError(f"--n: expected an integer >= 1, got {args.n}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    from seqvcr.outputs import analysis_home

    out = Path(args.out) if args.out else analysis_home(args.run_dir, args.step)
    check_output_path(out, "--out", directory=True)
    result = compute_layer_entropy(
        args.run_dir, args.data, n_sequences=args.n, seed=None if args.seed < 0 else args.seed,
        batch_size=args.batch_size, alpha=args.alpha, normalize=args.normalize, device=args.device,
        progress=not args.quiet, step=args.step,
    )
    paths = write_entropy(result, out)
    summary = brief(result)
    summary["files"] = {k: str(v) for k, v in paths.items()}
    print(json.dumps(summary))
    return 0


# --------------------------------------------------------------------------- report
def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="Markdown report with figures and tables for trained runs (or a sweep directory)",
        description="Evaluate runs on a test file, measure their layer entropy, and write report.md with "
        "the paper's figures (entropy per layer, entropy histograms, accuracy per answer position, "
        "learning curves, and entropy per layer against the training step for runs with snapshots) and "
        "tables (Table 1 layout, throughput). Up-to-date results of seqvcr eval / seqvcr entropy in a run "
        "directory (same weights, data and settings) are reused instead of measured again; files are "
        "written as they are made and report.md last, so an interrupted report keeps its work and the "
        "same command continues it. Given a single sweep directory (holding manifest.json), writes the "
        "sweep's aggregated report instead.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="run directories, or one sweep directory")
    p.add_argument("--out", default=None,
                   help="output directory (runs: required; sweep: default SWEEP_DIR/report)")
    p.add_argument("--force", action="store_true", help="overwrite a report already in --out")
    p.add_argument("--data", default=None,
                   help="test file for every run (default: each run's task.test_file)")
    p.add_argument("--limit", type=int, default=0,
                   help="evaluate only the first N problems of the test file (0: all)")
    p.add_argument("--n", type=int, default=1000, help="sequences for the layer entropy")
    p.add_argument("--no-throughput", action="store_true",
                   help="skip the timed decodings (best of 5) behind the throughput table and T_norm")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--quiet", action="store_true", help="no progress lines or bars")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    if len(paths) == 1 and (paths[0] / "manifest.json").is_file():
        from seqvcr.experiments.aggregate import report_sweep

        report = report_sweep(paths[0], out=args.out, force=args.force)
        print(json.dumps({"report": str(report)}))
        return 0
    for p in paths:
        if (p / "manifest.json").is_file():
            raise RunDirError(f"{p}: is a sweep directory; report a sweep on its own: seqvcr report {p}")
    if args.out is None:
        raise ConfigError("report: --out DIR is required for run directories")
    check_output_path(args.out, "--out", directory=True)
    if args.n < 1:
        raise ConfigError(f"--n: expected an integer >= 1, got {args.n}")
    if args.limit < 0:
        raise ConfigError(f"--limit: expected an integer >= 0 (0: every example), got {args.limit}")
    from seqvcr.analysis.report import build_report

    report = build_report(paths, args.out, force=args.force, data_file=args.data, n_sequences=args.n,
                          device=args.device, command=_command_line(), progress=not args.quiet,
                          limit=args.limit, throughput=not args.no_throughput)
    print(json.dumps({"report": str(report)}))
    return 0


# --------------------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: data, training of several configurations, evaluation, entropy and a report "
        "(about 10 minutes on a 2-core CPU)",
        description="Generate multiplication data, train Vanilla, Pause, Seq-VCR and Seq-VCR + Pause (the "
        "scale is chosen for the machine: 3x3 on a CPU, a larger setting on a GPU), evaluate them on the "
        "reference test file, measure layer entropy and write OUT/report.md (next to OUT/data, "
        "OUT/configs and OUT/runs).",
    )
    p.add_argument("--out", default="demo_out", help="output directory")
    p.add_argument("--force", action="store_true", help="replace an earlier demo in --out")
    p.add_argument("--minutes", type=float, default=None,
                   help="training budget in minutes (default: the scale's own, about 7 on a 2-core CPU)")
    p.add_argument("--scale", default="auto", choices=("auto", "cpu", "gpu", "smoke"),
                   help="auto: gpu when CUDA is available (and --device is not cpu), else cpu; cpu: 3x3, "
                   "four configurations; gpu: 4x4, all five, on CUDA; smoke: seconds, for tests")
    p.add_argument("--device", default="auto",
                   help="auto: the scale's device | cpu | cuda (the gpu scale on a CPU is refused)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from seqvcr.analysis.demo import run_demo

    summary = run_demo(args.out, force=args.force, minutes=args.minutes, scale=args.scale,
                       device=args.device, command=_command_line())
    print(json.dumps(summary))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``entropy``, ``report`` and ``demo`` to the ``seqvcr`` parser."""
    _add_entropy(sub)
    _add_report(sub)
    _add_demo(sub)
