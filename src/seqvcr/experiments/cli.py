"""``seqvcr sweep PLAN``, the low-level ``seqvcr sweep-run SWEEP_DIR RUN_ID``, ``seqvcr report
SWEEP_DIR`` (``seqvcr report`` of ``seqvcr.analysis.cli`` extended: one directory holding a manifest.json
gets the sweep's report, ``seqvcr.experiments.aggregate``) and ``seqvcr demo``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from seqvcr import commands
from seqvcr.errors import ConfigError, RunDirError
from seqvcr.experiments import executors as E
from seqvcr.experiments import sweep as S
from seqvcr.experiments.plan import Plan
from seqvcr.reporting.study_tables import PRINTED

__all__ = ["cmd_sweep", "cmd_sweep_run", "demo_text", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``sweep``, ``sweep-run`` and ``demo`` subcommands to the ``seqvcr`` parser, and sweep
    directories to ``seqvcr report``."""
    _add_sweep(sub)
    _add_sweep_run(sub)
    _extend_report(sub)
    _add_demo(sub)


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = commands.add_command(sub, "sweep", cmd_sweep, "expand an ablation plan into runs and execute them "
                             "(local pool, SLURM, or print commands)")
    p.add_argument("plan", help="plan YAML (see plans/), or a sweep directory to continue")
    p.add_argument("--executor", choices=E.EXECUTORS, default="local",
                   help="local: worker processes here; slurm: a submitit job array; print: one command "
                   "per pending run")
    p.add_argument("--out", default=None, help="sweep directory (default: sweeps/<plan name>)")
    p.add_argument("--workers", type=int, default=None,
                   help="local: parallel runs (default: one per GPU, else one per CPU core, at most 8)")
    p.add_argument("--threads", type=int, default=None,
                   help="local, CPU: torch threads per worker (default: cores // workers)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and list the settings and runs with their status; write nothing")
    p.add_argument("--gpt2-dir", default=None,
                   help="local Hugging Face GPT-2 directory for plans that fine-tune ($gpt2_dir)")
    p.add_argument("--mfu", type=float, default=None,
                   help="--dry-run: the model FLOPs utilisation its GPU-hours estimate assumes "
                   "(default 0.10)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="--dry-run: the GPU peak its estimate applies to (default: A100 bf16, 312 TFLOP/s)")
    p.add_argument("--only", nargs="*", default=None, metavar="RUN_ID", help="run only these run ids")
    p.add_argument("--no-report", action="store_true", help="local: do not write the report at the end")
    p.add_argument("--quiet", action="store_true",
                   help="local: no progress bar and no line per started or finished run (crashes are still "
                   "reported)")
    g = p.add_argument_group("slurm", "options of --executor slurm (submitit)")
    g.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    g.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per job (0: CPU jobs)")
    g.add_argument("--cpus-per-job", type=int, default=8, help="CPU cores per job")
    g.add_argument("--mem-gb", type=int, default=None, help="memory per job in GB (default: the cluster's)")
    g.add_argument("--time", type=int, default=24 * 60, help="minutes per job (requeued on timeout)")
    g.add_argument("--parallelism", type=int, default=64, help="array tasks running at once")
    g.add_argument("--account", default=None, help="SLURM account to charge")
    g.add_argument("--qos", default=None, help="SLURM quality of service")
    g.add_argument("--constraint", default=None, help="SLURM node constraint (e.g. a GPU type)")
    g.add_argument("--wait", action="store_true", help="block until the jobs finish, then report")


def _add_sweep_run(sub: argparse._SubParsersAction) -> None:
    r = commands.add_command(sub, "sweep-run", cmd_sweep_run,
                             "train, evaluate and measure one run of a sweep (what --executor print lists)")
    r.add_argument("sweep_dir", help="the sweep directory (holding manifest.json)")
    r.add_argument("run_id", help="the run's id (a directory in SWEEP_DIR/runs/)")
    r.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    commands.add_device(r, "auto", "device for evaluation and entropy (training uses the config's "
                        "train.device)")
    r.add_argument("--no-log-file", action="store_true", help="progress on stderr instead of train.log")


def _extend_report(sub: argparse._SubParsersAction) -> None:
    """``seqvcr report SWEEP_DIR``: one sweep directory gets the sweep's report, a sweep among other
    paths is refused, run directories go on to the report of runs (``seqvcr.analysis.cli``)."""
    report = sub.choices.get("report")
    if report is None:
        return
    report_runs = report.get_default("func")
    _add_study_tables(report)

    def cmd_report(args: argparse.Namespace) -> int:
        paths = [Path(p) for p in args.paths]
        sweeps = [p for p in paths if (p / S.MANIFEST).is_file()]
        printed = _printed_tables(args)
        if sweeps and printed is not None and len(sweeps) == len(paths):
            from seqvcr.experiments import aggregate

            aggregate.print_tables(paths, printed, rank_test=args.rank_test, lambda_plot=args.lambda_plot,
                                   value_plot=args.value_plot, correlation_plot=args.correlation_plot,
                                   exclude=args.exclude)
            return 0
        if sweeps and len(paths) == 1:
            from seqvcr.experiments import aggregate

            written = aggregate.report_sweep(paths[0], out=args.out, force=args.force)
            return commands.print_json({"report": str(written)})
        if sweeps:
            raise RunDirError(f"{sweeps[0]}: is a sweep directory; report a sweep on its own (seqvcr report "
                              f"{sweeps[0]}), or print tables of several (--table)")
        if printed is not None:
            raise ConfigError("report: --table, --runs, --terms, --correlation, --rank-test, --lambda-plot, "
                              "--value-plot and --correlation-plot take sweep or study directories (holding "
                              "manifest.json)")
        return int(report_runs(args))

    report.set_defaults(func=cmd_report)


#: what ``--table`` names (``seqvcr.reporting.study_tables.PRINTED``; ``main``: study, positions, lambda)
TABLES = ("main", *PRINTED)


def _add_study_tables(report: argparse.ArgumentParser) -> None:
    """The options of ``seqvcr report STUDY`` that print Markdown tables instead of writing the report."""
    g = report.add_argument_group("study tables", "one sweep or study directory: print Markdown tables on "
                                  "stdout instead of writing the report; without --table, the main ones")
    g.add_argument("--table", action="append", default=None, metavar="NAME",
                   help=f"print only these tables (comma-separated, repeatable): {', '.join(TABLES)}")
    for flag, what in (("runs", "one row per finished run"), ("terms", "the loss terms and training time"),
                       ("correlation", "Spearman's rho of exact match and entropy")):
        g.add_argument(f"--{flag}", action="store_true", help=f"also {what}")
    g.add_argument("--rank-test", nargs=2, metavar=("A", "B"), default=None,
                   help="exact permutation test of exact match, settings A over B ('|'-separated labels)")
    g.add_argument("--exclude", action="append", default=[], metavar="LABEL",
                   help="leave the settings of this label out of the tables (repeatable)")
    g.add_argument("--lambda-plot", metavar="PNG", help="exact match and entropy against lambda2/lambda1")
    g.add_argument("--value-plot", metavar="PNG", help="exact match and entropy against the ablated value")
    g.add_argument("--correlation-plot", metavar="PNG", help="exact match of every run against its entropy "
                   "and its running-sum probe R^2 (several directories or studies: pooled)")


def _printed_tables(args: argparse.Namespace) -> list[str] | None:
    """The tables to print (``main`` for the default set), or None when no printing option is given."""
    asked = [n.strip() for item in args.table or [] for n in item.split(",") if n.strip()]
    if unknown := [n for n in asked if n not in TABLES]:
        raise ConfigError(f"--table: no table {unknown[0]!r}; tables: {', '.join(TABLES)}")
    extra = [n for n in ("runs", "terms", "correlation") if getattr(args, n)]
    if not (asked or extra or args.rank_test or args.lambda_plot or args.value_plot or args.correlation_plot):
        return None
    return (asked or ["main"]) + extra


def _status_table(manifest: dict[str, Any], sweep: Path | None) -> list[str]:
    lines = []
    for st in manifest["studies"]:
        lines.append(f"study {st['name']}: {len(st['settings'])} settings"
                     + (f" -- {st['part']}" if st.get("part") else ""))
        for s in st["settings"]:
            stat = []
            for seed, rid in s["runs"].items():
                exists = sweep is not None and (sweep / S.RUNS / rid).is_dir()
                status = S.run_status(sweep, rid) if exists else "pending"
                stat.append(f"seed {seed}: {rid} {status}")
            lines.append(f"  {s['label']:<40} " + "; ".join(stat))
    return lines


def _check_counts(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Positive process/thread counts (0 or a negative number would silently mean something else)."""
    for name in names:
        commands.check_at_least("--" + name.replace("_", "-"), getattr(args, name, None), 1,
                                " (leave it out for the default)")


def _dry_run_plan(plan: Plan, sweep: Path, args: argparse.Namespace) -> int:
    """``--dry-run`` of a plan YAML: its settings, runs, skipped runs and compute estimate; writes nothing."""
    from seqvcr.experiments import estimate

    studies, runs = S.expand(plan)
    print(f"plan {plan.name}: {sum(len(s['settings']) for s in studies)} settings x "
          f"{len(plan.seeds)} seeds = {len(runs)} runs -> {sweep}")
    print("\n".join(_status_table({"studies": studies}, sweep if (sweep / S.RUNS).is_dir() else None)))
    for r in runs:
        if r.skip:
            print(f"skipped {r.id} ({r.setting}, seed {r.seed}): {r.skip}")
    gpu = estimate.DEFAULT_GPU if args.peak_tflops is None else "the GPU"
    print("\n".join(estimate.estimate_lines(
        runs, mfu=args.mfu if args.mfu is not None else estimate.DEFAULT_MFU,
        peak_tflops=args.peak_tflops or estimate.DEFAULT_PEAK_TFLOPS, gpu=gpu,
    )))
    if (sweep / S.RUNS).is_dir():
        train_s, started = _progress(sweep, runs)
        print("\n".join(estimate.measured_lines(runs, train_s, started)))
    return 0


def _progress(sweep: Path, runs: list[S.RunEntry]) -> tuple[dict[str, float], dict[str, int]]:
    """Of a sweep's runs: the training time of each finished one, the checkpoint step of each started one."""
    from seqvcr.checkpoints import checkpoint_step
    from seqvcr.runfiles import CHECKPOINT_FILE, RESULT_FILE

    train_s: dict[str, float] = {}
    started: dict[str, int] = {}
    for r in runs:
        rd = sweep / S.RUNS / r.id
        result = S.read_json(rd / RESULT_FILE)
        if isinstance(result, dict) and isinstance(result.get("train_time_s"), (int, float)):
            train_s[r.id] = float(result["train_time_s"])
        elif (step := checkpoint_step(rd / CHECKPOINT_FILE)) is not None:
            started[r.id] = step
    return train_s, started


def _sweep_slurm(sweep: Path, name: str, todo: list[dict[str, Any]], args: argparse.Namespace) -> int:
    """``--executor slurm``: submit the pending runs as a job array (``--wait``: then summarize)."""
    opts = E.SlurmOptions(
        partition=args.partition, gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job,
        mem_gb=args.mem_gb, time_min=args.time, parallelism=args.parallelism, account=args.account,
        qos=args.qos, constraint=args.constraint,
    )
    E.run_slurm(sweep, todo, opts, name=name, wait_for_jobs=args.wait)
    S.refresh_manifest(sweep)
    if args.wait:
        return _summarize_sweep(sweep, name, args)
    print(f"submitted {len(todo)} job(s); when they are done: seqvcr report {sweep}", file=sys.stderr)
    return 0


def _sweep_local(sweep: Path, name: str, todo: list[dict[str, Any]], args: argparse.Namespace) -> int:
    """``--executor local``: the pending runs in worker processes here, then the summary (or Ctrl-C)."""
    if not todo:
        print(f"sweep {name}: nothing to run", file=sys.stderr)
        return _summarize_sweep(sweep, name, args)
    result = E.run_local(sweep, todo, workers=args.workers, threads=args.threads, quiet=args.quiet)
    S.refresh_manifest(sweep)
    if result.interrupted:
        print(f"sweep {name}: interrupted after {result.seconds:.0f}s ({len(result.done)} run(s) finished); "
              "re-run the same command to resume", file=sys.stderr)
        raise KeyboardInterrupt
    return _summarize_sweep(sweep, name, args, seconds=result.seconds)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Expand PLAN (a plan YAML, or an existing sweep directory) into runs under one sweep directory and
    execute the pending ones. Re-running skips finished runs and resumes interrupted ones from their
    checkpoints."""
    from seqvcr.experiments.plan import load_plan

    _check_counts(args, ("workers", "threads", "cpus_per_job", "time", "parallelism"))
    commands.check_at_least("--gpus-per-job", args.gpus_per_job, 0, " (0: CPU jobs)")
    src = Path(args.plan)
    if src.is_dir():  # a sweep directory, to continue
        if not (src / S.MANIFEST).is_file():
            raise RunDirError(f"{src}: a directory but not a sweep (no {S.MANIFEST}); give a plan YAML")
        if args.out is not None and Path(args.out) != src:
            raise ConfigError("--out cannot move an existing sweep; copy the directory instead")
        sweep, manifest = src, S.refresh_manifest(src)
    else:
        plan = load_plan(src, gpt2_dir=args.gpt2_dir)
        sweep = Path(args.out) if args.out else Path("sweeps") / plan.name
        if args.dry_run:
            return _dry_run_plan(plan, sweep, args)
        S.prepare_sweep(plan, sweep)
        manifest = S.load_manifest(sweep)
    name = manifest["name"]
    if unknown := [x for x in args.only or [] if x not in {r["id"] for r in manifest["runs"]}]:
        raise ConfigError(f"--only: {unknown[0]!r} is not a run of this sweep")
    runs = [r for r in manifest["runs"] if not args.only or r["id"] in args.only]
    status = {r["id"]: S.run_status(sweep, r["id"]) for r in runs}
    todo = [r for r in runs if status[r["id"]] in ("pending", "interrupted", "crashed")]
    if args.dry_run:
        print("\n".join(_status_table(manifest, sweep)))
        return 0
    counts = {k: sum(v == k for v in status.values()) for k in S.STATUSES}
    summary = ", ".join(f"{counts[k]} {k}" for k in S.STATUSES if counts[k])
    print(f"sweep {name} in {sweep}: {len(runs)} runs ({summary}); {len(todo)} to run", file=sys.stderr)
    for r in runs:
        if status[r["id"]] == "skipped":
            print(f"skipped {r['id']} {E.describe_run(r)}: {r.get('skip')}", file=sys.stderr)
    if args.executor == "print":
        E.print_commands(sweep, todo)
        print(f"printed {len(todo)} command(s); run them in any order, in parallel; then "
              f"`seqvcr report {sweep}`", file=sys.stderr)
        return 0
    if args.executor == "slurm":
        return _sweep_slurm(sweep, name, todo, args)
    return _sweep_local(sweep, name, todo, args)


def _summarize_sweep(sweep: Path, name: str, args: argparse.Namespace, seconds: float | None = None) -> int:
    """Summary line, report, crashed runs; exit status 1 if a selected run (``--only``) crashed."""
    manifest = S.load_manifest(sweep)
    status = [S.run_status(sweep, r["id"]) for r in manifest["runs"]]
    counts = {k: status.count(k) for k in S.STATUSES if status.count(k)}
    took = f" in {seconds:.0f}s" if seconds is not None else ""
    print(f"sweep {name}{took}: " + ", ".join(f"{v} {k}" for k, v in counts.items()), file=sys.stderr)
    if not getattr(args, "no_report", False):
        from seqvcr.experiments.aggregate import report_sweep

        path = report_sweep(sweep)
        print(f"report: {path}", file=sys.stderr)
    selected = set(args.only) if getattr(args, "only", None) else None
    crashed = [r["id"] for r, st in zip(manifest["runs"], status)
               if st == "crashed" and (selected is None or r["id"] in selected)]
    for rid in crashed:
        err = sweep / S.RUNS / rid / S.ERROR
        print(f"crashed: {rid}: {err.read_text().splitlines()[0] if err.is_file() else '?'}", file=sys.stderr)
    print(json.dumps({"sweep": str(sweep), **counts}))
    return 1 if crashed else 0


def cmd_sweep_run(args: argparse.Namespace) -> int:
    """Train, evaluate and measure one run of a sweep (what every executor runs; use it from any
    scheduler)."""
    _check_counts(args, ("threads",))
    out = S.run_one(args.sweep_dir, args.run_id, threads=args.threads, log_to_file=not args.no_log_file,
                    device=args.device)
    line = {"id": out.id, "status": out.status, "seconds": round(out.seconds, 1)}
    if out.exact_match is not None:
        line["exact_match"] = out.exact_match
    if out.error:
        line["error"] = out.error
    print(json.dumps(line))
    if out.status == "crashed":
        print(f"run {out.id} crashed: {out.error} (see {Path(args.sweep_dir) / S.RUNS / out.id / S.ERROR})",
              file=sys.stderr)
        return 1
    if out.status == "busy":
        print(f"run {out.id} is held by another worker", file=sys.stderr)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = commands.add_command(sub, "demo", _cmd_demo, "the main job: data, training of several "
                             "configurations, evaluation, entropy and a report (about 10 minutes on a 2-core "
                             "CPU)")
    commands.add_out(p, "demo_out")
    p.add_argument("--force", action="store_true", help="replace an earlier demo in --out")
    p.add_argument("--minutes", type=float, default=None,
                   help="training budget in minutes (default: the scale's own, about 7 on a 2-core CPU)")
    p.add_argument("--scale", default="auto", choices=("auto", "cpu", "gpu", "smoke"),
                   help="auto: gpu when CUDA is available (and --device is not cpu), else cpu; cpu: 3x3, "
                   "four configurations; gpu: 4x4, all five, on CUDA; smoke: seconds, for tests")
    commands.add_device(p, "auto", "auto: the scale's device | cpu | cuda (the gpu scale on a CPU is "
                        "refused)")
    commands.add_json(p)


def _cmd_demo(args: argparse.Namespace) -> int:
    """Generate multiplication data, train Vanilla, Pause, Seq-VCR and Seq-VCR + Pause (the scale is
    chosen for the machine: 3x3 on a CPU, a larger setting on a GPU), evaluate them on the reference test
    file, measure layer entropy and write OUT/report.md (next to OUT/data and the runs in OUT/runs).
    Prints where the results went (--json: the summary kept in OUT/demo.json)."""
    from seqvcr.experiments.demo import run_demo

    result = run_demo(args.out, force=args.force, minutes=args.minutes, scale=args.scale,
                      device=args.device, command=commands.command_line())
    return commands.print_result(args, result, demo_text(result))


def demo_text(result: dict[str, Any]) -> str:
    """The readable form of ``seqvcr demo``'s result: the exact match of each configuration and where
    the report, the runs and the data went."""
    from seqvcr.experiments.demo import DEMO_FILE

    out = Path(result["out"])
    rows = [[r["method"], f"{r['exact_match']:.4f}"] for r in result["runs"]]
    return "\n".join([
        f"demo done in {result['seconds']['total'] / 60:.1f} min ({result['scale']} scale, {result['steps']} "
        f"steps per configuration, on {result['machine']})",
        commands.text_table(["configuration", "exact match"], rows),
        f"report:  {result['report']} (figures and tables beside it)",
        f"runs:    {out / 'runs'}",
        f"data:    {out / 'data'}",
        f"summary: {out / DEMO_FILE}",
    ])
