"""Where the runs of a sweep execute (docs/sweeps.md, "Executors"); all three call the same worker,
``seqvcr.experiments.sweep.run_one(sweep_dir, run_id)``.

* ``local``: one spawned process per run, at most ``workers`` at a time: one per GPU
  (``CUDA_VISIBLE_DEVICES`` set per worker), else CPU processes (default: one per core, at most 8) with
  ``cores // workers`` torch threads each. A crashed run is reported; the others go on. Ctrl-C or
  SIGTERM stops the workers (their checkpoints stay); workers die with the parent (``_die_with_parent``).
* ``slurm``: a job array through ``submitit`` (optional dependency); a task is requeued from its
  checkpoint when it reaches the time limit or is preempted.
* ``print``: one ``seqvcr sweep-run SWEEP_DIR RUN_ID`` line per pending run, for any other scheduler.
"""

from __future__ import annotations

import multiprocessing
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, TextIO

from seqvcr.atomic import write_text_atomic
from seqvcr.errors import SeqVCRError
from seqvcr.experiments import sweep as S

EXECUTORS = ("local", "slurm", "print")


def _print_line(stream: TextIO | None, text: str) -> None:
    stream = stream or sys.stderr
    stream.write(text + "\n")
    stream.flush()


def describe_run(run: dict[str, Any]) -> str:
    """'setting (study), seed N' for progress lines."""
    return f"{run['setting']} [{run['study']}] seed {run['seed']}"


def cpu_count() -> int:
    """Cores this process may use (the affinity mask when there is one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def visible_gpus() -> list[str]:
    """The GPU ids a worker may be given (respecting an existing CUDA_VISIBLE_DEVICES)."""
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA means CPU workers
        n = 0
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [x.strip() for x in env.split(",") if x.strip()] if env else [str(i) for i in range(n)]
    return ids[:n]


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to SIGTERM this process when its parent dies (no orphaned training).

    The request only covers a death after it is made, and a spawned worker makes it a second or so
    after it starts (the interpreter boots first). So when ``parent`` (the pid of the process that
    started this one) is given and is no longer this process's parent, the parent has already died:
    exit now rather than train as an orphan.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except Exception:  # noqa: BLE001 - best effort, other platforms
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(143)  # as if SIGTERM had arrived: the next sweep resumes the run


def _child(sweep_dir: str, rid: str, threads: int | None, gpu: str | None, parent: int | None = None) -> None:
    """Entry point of a local worker process (spawned): one run, exit status = its outcome."""
    _die_with_parent(parent)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    try:
        out = S.run_one(sweep_dir, rid, threads=threads)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit({"done": 0, "skipped": 0, "crashed": 1, "busy": 3}.get(out.status, 1))


@dataclass
class LocalSummary:
    """The result of a local execution."""

    done: list[str]
    crashed: list[str]
    busy: list[str]
    interrupted: bool
    seconds: float


class _Stop(Exception):
    """SIGTERM received: stop the workers, keep their checkpoints."""


def _worker_layout(workers: int | None, threads: int | None) -> tuple[list[str], int, int, str]:
    """The GPUs, the workers (one per GPU, else CPU processes), threads per worker, and a line saying so."""
    gpus = visible_gpus()
    if gpus:
        n_workers = min(workers or len(gpus), len(gpus))  # one GPU per worker
        per = threads or max(1, cpu_count() // n_workers)  # CPU work (data) without oversubscription
        return gpus, n_workers, per, (
            f"{n_workers} worker(s) on GPU(s) {','.join(gpus[:n_workers])}, {per} CPU thread(s) each"
        )
    cores = cpu_count()
    # small models gain little from intra-op threads: one single-threaded run per core is the
    # fastest way through a sweep (measured in docs/sweeps.md); capped to bound memory
    n_workers = max(1, workers or min(cores, 8))
    per = threads or max(1, cores // n_workers)
    return gpus, n_workers, per, f"{n_workers} CPU worker(s) x {per} thread(s) ({cores} cores)"


def _raise_stop(signum: int, frame: Any) -> None:
    """SIGTERM handler of ``run_local``: unwind into its clean-up, like Ctrl-C."""
    raise _Stop()


def _stop_workers(procs: list[Any]) -> None:
    """SIGTERM the running workers (they keep their checkpoints); kill any still alive after 30 s."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join()


def run_local(sweep_dir: str | Path, runs: Sequence[dict[str, Any]], *, workers: int | None = None,
              threads: int | None = None, stream: TextIO | None = None, target: Callable[..., None] = _child,
              quiet: bool = False) -> LocalSummary:
    """Execute ``runs`` (manifest entries) with a pool of worker processes; see the module docstring.
    Progress: on a terminal a bar over the runs, the start and end of each run printed above it, else those
    lines alone (``[3/10] done ...``); ``quiet`` leaves out all but crashes and interruptions."""
    from seqvcr.progress import ProgressBar

    sweep = Path(sweep_dir)
    gpus, n_workers, per, where = _worker_layout(workers, threads)
    total = len(runs)
    out = stream or sys.stderr
    bar = ProgressBar(total, "sweep", unit="runs", stream=out, enabled=not quiet, plain=False)

    def say(text: str) -> None:
        """What always matters (crashes, interruptions): above the bar, or a plain line."""
        if bar.is_bar:
            bar.write(text)
        else:
            _print_line(out, text)

    def note(text: str) -> None:
        """Progress (a run started or done), left out with ``quiet``."""
        if not quiet:
            say(text)

    note(f"running {total} run(s) with {where}")
    ctx = multiprocessing.get_context("spawn")
    pending = list(runs)
    active: dict[Any, tuple[Any, dict[str, Any], float, str | None]] = {}  # sentinel -> (proc, run, t0, GPU)
    free_gpus = list(gpus)
    summary = LocalSummary(done=[], crashed=[], busy=[], interrupted=False, seconds=0.0)
    finished = 0
    t0 = time.perf_counter()
    main_thread = threading.current_thread() is threading.main_thread()
    old_handler = signal.signal(signal.SIGTERM, _raise_stop) if main_thread else None
    try:
        while pending or active:
            while pending and len(active) < n_workers:
                run = pending.pop(0)
                gpu = free_gpus.pop(0) if gpus else None
                proc = ctx.Process(target=target, args=(str(sweep), run["id"], per, gpu, os.getpid()),
                                   daemon=False)
                proc.start()
                active[proc.sentinel] = (proc, run, time.perf_counter(), gpu)
                note(f"{'':>9} start {run['id']} {describe_run(run)}"
                     + (f" on GPU {gpu}" if gpu is not None else ""))
            for sentinel in wait(list(active), timeout=1.0):
                proc, run, t_start, gpu = active.pop(sentinel)
                proc.join()
                if gpu is not None:
                    free_gpus.append(gpu)
                finished += 1
                _record_worker_exit(sweep, run, proc.exitcode, time.perf_counter() - t_start,
                                    f"[{finished:>3}/{total}]", say, note, summary)
                bar.update()
    except (KeyboardInterrupt, _Stop):
        summary.interrupted = True
        say(f"interrupted: stopping {len(active)} worker(s); their checkpoints are kept")
        _stop_workers([proc for proc, *_ in active.values()])
    finally:
        bar.close()
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
    summary.seconds = time.perf_counter() - t0
    return summary


def _record_worker_exit(
    sweep: Path, run: dict[str, Any], code: int | None, secs: float, head: str, say: Callable[[str], None],
    note: Callable[[str], None], summary: LocalSummary,
) -> None:
    """Record how a worker ended in ``summary``; ``say`` prints what always matters, ``note`` progress."""
    rid = run["id"]
    rd = sweep / S.RUNS / rid
    if code == 3:
        summary.busy.append(rid)
        say(f"{head} busy  {rid}: another worker holds this run; left to it")
        return
    if code in (-signal.SIGTERM, -signal.SIGINT, 130):
        say(f"{head} stopped {rid} after {secs:.0f}s (interrupted; resumes on the next run)")
        return
    if code != 0 and not (rd / S.ERROR).is_file():
        what = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        write_text_atomic(rd / S.ERROR, f"WorkerDied: the worker process died ({what}; out of memory?)\n")
    if code == 0:
        ev = S.read_json(rd / S.EVAL) or {}
        em = ev.get("exact_match")
        tail = f": exact match {em:.4f}" if isinstance(em, float) else ""
        summary.done.append(rid)
        note(f"{head} done  {rid} {describe_run(run)}{tail} ({secs:.0f}s)")
        return
    summary.crashed.append(rid)
    first = (rd / S.ERROR).read_text().splitlines()[0] if (rd / S.ERROR).is_file() else "unknown error"
    say(f"{head} CRASH {rid} {describe_run(run)}: {first} (see {rd / S.ERROR})")


class SlurmRun:
    """The callable each SLURM array task runs; requeued (resuming its checkpoint) on timeout."""

    def __call__(self, sweep_dir: str, rid: str, threads: int | None = None) -> dict[str, Any]:
        out = S.run_one(sweep_dir, rid, threads=threads)
        if out.status == "crashed":
            raise SeqVCRError(f"run {rid} crashed: {out.error} (see {sweep_dir}/runs/{rid}/error.txt)")
        return {"id": out.id, "status": out.status, "exact_match": out.exact_match}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this on timeout/preemption: resubmit the same run (it resumes)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: int | None = None
    time_min: int = 24 * 60
    parallelism: int = 64
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None


def run_slurm(sweep_dir: str | Path, runs: Sequence[dict[str, Any]], options: SlurmOptions, *, name: str,
              wait_for_jobs: bool = False, stream: TextIO | None = None) -> list[str]:
    """Submit ``runs`` as one job array; returns the job ids. ``wait_for_jobs`` blocks until done."""
    try:
        import submitit
    except ImportError:
        raise SeqVCRError("the slurm executor needs submitit: pip install 'seqvcr[slurm]' (or pip install "
                          "submitit); or use --executor print and submit the commands yourself") from None
    sweep = Path(sweep_dir).resolve()
    if not runs:
        return []
    ex = submitit.AutoExecutor(folder=str(sweep / "slurm" / "%j"))
    params: dict[str, Any] = {
        "name": f"seqvcr-{name}",
        "timeout_min": options.time_min,
        "gpus_per_node": options.gpus_per_job,
        "cpus_per_task": options.cpus_per_job,
        "tasks_per_node": 1,
        "nodes": 1,
        "slurm_array_parallelism": options.parallelism,
    }
    optional = {"slurm_partition": options.partition, "mem_gb": options.mem_gb}
    params.update({k: v for k, v in optional.items() if v})
    extra = {k: v for k, v in (("account", options.account), ("qos", options.qos),
                               ("constraint", options.constraint)) if v}
    if extra:
        params["slurm_additional_parameters"] = extra
    ex.update_parameters(**params)
    ids = [r["id"] for r in runs]
    threads = options.cpus_per_job if not options.gpus_per_job else None
    jobs = ex.map_array(SlurmRun(), [str(sweep)] * len(ids), ids, [threads] * len(ids))
    job_ids = [str(j.job_id) for j in jobs]
    for run, jid in zip(runs, job_ids):
        _print_line(stream, f"submitted {run['id']} {describe_run(run)} as job {jid}")
    if wait_for_jobs:
        for run, job in zip(runs, jobs):
            try:
                job.result()
            except Exception as exc:  # noqa: BLE001 - reported, the others go on
                last = str(exc).strip().splitlines()[-1:]
                _print_line(stream, f"job {job.job_id} ({run['id']}) failed: {last}")
    return job_ids


def print_commands(sweep_dir: str | Path, runs: Sequence[dict[str, Any]],
                   stream: TextIO | None = None) -> int:
    """One shell command per run, with the setting and seed as a trailing comment."""
    stream = stream or sys.stdout
    sd = shlex.quote(str(sweep_dir))
    for run in runs:
        stream.write(f"seqvcr sweep-run {sd} {run['id']}  # {describe_run(run)}\n")
    stream.flush()
    return len(runs)
