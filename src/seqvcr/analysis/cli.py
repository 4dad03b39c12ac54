"""Subcommands ``seqvcr entropy``, ``seqvcr probe`` and ``seqvcr report`` (registered by ``seqvcr.cli``).

``seqvcr report`` given run directories writes the per-run report of ``seqvcr.analysis.report``;
``seqvcr.experiments.cli``, the layer above, extends the command so that one sweep directory (holding a
``manifest.json``) gets the sweep's aggregated report instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from seqvcr import commands
from seqvcr.atomic import check_output_path
from seqvcr.errors import ConfigError

__all__ = ["add_data_or_test_file", "data_or_test_file", "entropy_text", "register"]


def data_or_test_file(args: argparse.Namespace) -> str:
    """The data file of ``eval`` / ``entropy``: ``--data``, else the run's ``task.test_file`` (said on
    stderr, so that the file scored is never a guess); a one-line ConfigError when there is neither."""
    if args.data:
        return str(args.data)
    from seqvcr.runs import CONFIG_FILE, load_run_config

    test_file = load_run_config(args.run_dir, need_weights=False).task.test_file
    if not test_file:
        raise ConfigError(f"no --data given and {Path(args.run_dir) / CONFIG_FILE} names no task.test_file; "
                          "pass --data FILE")
    print(f"seqvcr {args.command}: data: {test_file} (the run's task.test_file)", file=sys.stderr)
    return str(test_file)


def add_data_or_test_file(p: argparse.ArgumentParser) -> None:
    """``--data``, optional: without it the command reads the run's ``task.test_file``."""
    p.add_argument("--data", default=None, help="data file in the task's format (ref:mult/3x3/test.txt ...); "
                   "default: the run's task.test_file")


def _add_entropy(sub: argparse._SubParsersAction) -> None:
    p = commands.add_command(sub, "entropy", _cmd_entropy, "matrix entropy of every layer of a trained run "
                             "(per sequence and dataset level)")
    commands.add_run_dir(p)
    add_data_or_test_file(p)
    p.add_argument("--n", type=int, default=1000, help="sequences in the sample")
    p.add_argument("--seed", type=int, default=0,
                   help="sampling seed when the file has more lines than --n (-1: the first --n lines)")
    p.add_argument("--alpha", type=float, default=1.0, help="Renyi order (1 = von Neumann, the paper's)")
    p.add_argument("--normalize", action="store_true", help="divide by log(min(T, d)): values in [0, 1]")
    p.add_argument("--batch-size", type=int, default=256, help="sequences per forward pass")
    commands.add_step(p, "measure")
    _add_device_and_out(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    commands.add_json(p)


def _cmd_entropy(args: argparse.Namespace) -> int:
    """Per-sequence matrix entropy (Eq. 2, Gram over each sequence's tokens) of every layer L0..LN over
    a fixed sample of sequences: mean, std, 95% CI and the whole distribution, plus a dataset-level
    entropy (one mean vector per sequence). Writes entropy.json, entropy.csv and entropy_values.csv
    (into RUN_DIR, or RUN_DIR/snapshots/step_N/ with --step); prints a table per layer (--json: the
    per-layer summary as JSON). Without --data, the run's task.test_file. seqvcr report reuses these
    files while they are up to date."""
    from seqvcr.analysis.layer_entropy import brief, compute_layer_entropy, write_entropy

    commands.check_at_least("--n", args.n, 1)
    commands.check_at_least("--batch-size", args.batch_size, 1)
    out = _out_dir(args)
    data = data_or_test_file(args)
    result = compute_layer_entropy(
        args.run_dir, data, n_sequences=args.n, seed=None if args.seed < 0 else args.seed,
        batch_size=args.batch_size, alpha=args.alpha, normalize=args.normalize, device=args.device,
        progress=not args.quiet, step=args.step,
    )
    paths = write_entropy(result, out)
    summary = brief(result)
    summary["files"] = {k: str(v) for k, v in paths.items()}
    return commands.print_result(args, summary, entropy_text(summary))


def entropy_text(summary: dict[str, Any]) -> str:
    """The readable form of ``seqvcr entropy``'s result: one row per layer (mean, std and 95% CI of the
    per-sequence entropy, and the dataset-level entropy), then where the files went."""
    head = (f"matrix entropy ({summary['units']}) of {summary['run_dir']} (step {summary['step']}, "
            f"{summary['method']}), {summary['n']} sequences of {summary['data']}")
    rows = [[L["name"], f"{L['mean']:.4f}", f"{L['std']:.4f}", f"{L['ci95'][0]:.4f}..{L['ci95'][1]:.4f}",
             f"{L['dataset']:.4f}"] for L in summary["layers"]]
    table = commands.text_table(["layer", "mean", "std", "95% CI", "dataset-level"], rows)
    files = ", ".join(summary.get("files", {}).values())
    return "\n".join([head, table, *([f"saved: {files}"] if files else [])])


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = commands.add_command(sub, "probe", _cmd_probe, "linear probes of the running sum from every layer "
                             "at every answer position (multiplication runs)")
    commands.add_run_dir(p)
    add_data_or_test_file(p)
    p.add_argument("--limit", type=int, default=0, help="use only the first N problems of the file (0: all)")
    p.add_argument("--fit-fraction", type=float, default=0.7,
                   help="share of the problems the probes are fit on; R^2 is measured on the rest")
    p.add_argument("--ridge", type=float, default=1e-2, help="ridge penalty lambda (times the fitted count)")
    p.add_argument("--batch-size", type=int, default=256, help="sequences per forward pass")
    commands.add_step(p, "probe")
    _add_device_and_out(p)
    commands.add_json(p)


def _add_device_and_out(p: argparse.ArgumentParser) -> None:
    commands.add_device(p, "cpu", "cpu | cuda | auto")
    p.add_argument("--out", default=None,
                   help="directory for the files (default: RUN_DIR, or RUN_DIR/snapshots/step_N with --step)")


def _out_dir(args: argparse.Namespace) -> Path:
    """``--out``, else where ``seqvcr.outputs`` keeps a run's (or its snapshot's) results; checked."""
    from seqvcr.outputs import analysis_home

    out = Path(args.out) if args.out else analysis_home(args.run_dir, args.step)
    check_output_path(out, "--out", directory=True)
    return out


def _cmd_probe(args: argparse.Namespace) -> int:
    """Bai et al.'s reading of a multiplication model: for every layer L0..LN and every answer position k,
    a ridge probe from the hidden state that predicts answer digit k to the running sum c_k, fit on the
    first problems of the file and scored (R^2) on the rest. Writes probe.json, probe.csv and probe.png
    (into RUN_DIR, or RUN_DIR/snapshots/step_N/ with --step); prints the R^2 table (--json: the result
    as JSON). Without --data, the run's task.test_file."""
    from seqvcr.analysis.probe import probe_run, write_probe

    commands.check_at_least("--limit", args.limit, 0, " (0: every problem)")
    commands.check_at_least("--batch-size", args.batch_size, 1)
    out = _out_dir(args)
    result = probe_run(args.run_dir, data_or_test_file(args), limit=args.limit,
                       fit_fraction=args.fit_fraction, lam=args.ridge, batch_size=args.batch_size,
                       device=args.device, step=args.step)
    files = write_probe(result, out)
    rows = [[name, *[f"{v:.3f}" for v in vals]]
            for name, vals in zip(result["layers"], result["r2"], strict=True)]
    header = ["layer", *[f"pos {k + 1}" for k in range(len(result["r2"][0]))]]
    text = "\n".join([
        f"running-sum probe R^2 (held-out, {result['n_test']} problems; fit on {result['n_fit']}) of "
        f"{result['run_dir']} (step {result['step']}, {result['method']}) on {result['data']}",
        commands.text_table(header, rows),
        "saved: " + ", ".join(str(p) for p in files.values()),
    ])
    return commands.print_result(args, {**result, "files": {k: str(v) for k, v in files.items()}}, text)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = commands.add_command(sub, "report", _cmd_report, "Markdown report with figures and tables for "
                             "trained runs (or a sweep directory)")
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
    commands.add_device(p, "auto", "cpu | cuda | auto")
    p.add_argument("--quiet", action="store_true", help="no progress lines or bars")


def _cmd_report(args: argparse.Namespace) -> int:
    """Evaluate runs on a test file, measure their layer entropy, and write report.md with the paper's
    figures (entropy per layer, entropy histograms, accuracy per answer position, learning curves, and
    entropy per layer against the training step for runs with snapshots) and tables (Table 1 layout,
    throughput). Up-to-date results of seqvcr eval / seqvcr entropy in a run directory (same weights,
    data and settings) are reused instead of measured again; files are written as they are made and
    report.md last, so an interrupted report keeps its work and the same command continues it. Given a
    single sweep directory (holding manifest.json), writes the sweep's aggregated report instead."""
    if args.out is None:
        raise ConfigError("report: --out DIR is required for run directories")
    check_output_path(args.out, "--out", directory=True)
    commands.check_at_least("--n", args.n, 1)
    commands.check_at_least("--limit", args.limit, 0, " (0: every example)")
    from seqvcr.analysis.report import build_report

    report = build_report([Path(p) for p in args.paths], args.out, force=args.force, data_file=args.data,
                          n_sequences=args.n, device=args.device, command=commands.command_line(),
                          progress=not args.quiet, limit=args.limit, throughput=not args.no_throughput)
    return commands.print_json({"report": str(report)})


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``entropy``, ``probe`` and ``report`` to the ``seqvcr`` parser."""
    _add_entropy(sub)
    _add_probe(sub)
    _add_report(sub)
