"""The training loop: a list of loss terms over the batches a curriculum serves, nothing hidden.

Per step::

    batch = curriculum.batch(rows, step)                 # x, y (-100 = no loss), mask, rows: (B, T)
    out = model(batch.x, batch.y, output_hidden_states=...)  # logits, LM loss, hidden states L0..LN
    loss = sum(term(out, batch).loss for term in terms)  # LM, Seq-VCR, running sum (seqvcr.terms)

:func:`train` reads as its stages, each a function below it in the order it runs; they fill one
:class:`Run`, which :func:`_loop` trains and :func:`_write_results` evaluates and saves. Nothing on disk
changes before every input has been checked. The batches and the curriculum are pure functions of
(seed, step) and the checkpoint holds the optimiser and every rank's RNG state, so a resumed run,
distributed or not, ends with the weights of an uninterrupted one. Ctrl-C finishes the step, saves a
checkpoint and stops (exit 130): the same command resumes. Under ``torchrun`` each rank takes its slice
of the global batch; the Seq-VCR statistics are over the gathered global batch (``seqvcr.distributed``).
"""

from __future__ import annotations

import math
import random
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqvcr import config as C
from seqvcr import distributed as dist_utils
from seqvcr import rundir, runs
from seqvcr.atomic import write_json_atomic
from seqvcr.checkpoints import read_checkpoint, rng_state, set_rng_state
from seqvcr.curriculum import BatchSampler, Curriculum, build_curriculum
from seqvcr.errors import RunDirError, TrainingDivergedError
from seqvcr.evaluation import EvalResult, evaluate
from seqvcr.model import GPT, configure_adamw
from seqvcr.progress import ProgressBar
from seqvcr.sequences import EncodedData, SequenceFormat, encode_examples
from seqvcr.tasks import Task
from seqvcr.terms import Batch, TrainModule, build_train_module
from seqvcr.tracking import LogInterval, MetricsLogger, check_available


def lr_at(step: int, total: int, cfg: C.OptimConfig) -> float:
    """Linear warm-up over ``warmup * total`` steps, then linear/cosine decay to ``min_lr_ratio * lr``."""
    warm = int(cfg.warmup * total)
    if warm > 0 and step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant" or total <= warm:
        return cfg.lr
    progress = min(1.0, (step - warm) / max(1, total - warm))
    floor = cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        factor = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        factor = 1.0 - (1.0 - floor) * progress
    return cfg.lr * factor


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class Ranks:
    """This process's place in the run: one of ``world`` processes under ``torchrun``, or rank 0 of 1."""

    distributed: bool
    rank: int
    world: int

    @property
    def main(self) -> bool:  # rank 0 writes the run directory and evaluates
        return self.rank == 0


@dataclass
class Hardware:
    """The device, the precision (``bf16`` | ``fp32``) and the autocast context of the forward pass."""

    device: torch.device
    precision: str
    autocast: AbstractContextManager[Any]


@dataclass
class Data:
    """The task, the evaluation format, the training curriculum and the validation set, on the device."""

    task: Task
    fmt: SequenceFormat  # what evaluation decodes (never a chain of thought under a curriculum)
    curriculum: Curriculum  # what each step trains on
    n_train: int
    valid: EncodedData
    block_size: int  # the model's positions


@dataclass
class RunState:
    """Where a run is: its step, the last checkpointed step, and training time over all attempts."""

    step: int = 0
    last_good_step: int = 0
    time_before: float = 0.0  # seconds trained by earlier attempts (from the checkpoint)
    t_start: float = 0.0  # perf_counter() when this attempt started
    first_step: int = 0  # the step this attempt started at

    def train_time(self) -> float:
        return self.time_before + time.perf_counter() - self.t_start


@dataclass
class Run:
    """Everything a training run is made of, built once by :func:`train`'s stages."""

    cfg: C.Config
    dir: Path
    ranks: Ranks
    hw: Hardware
    data: Data
    tm: TrainModule  # the model and its loss terms
    runner: nn.Module  # what a step calls: ``tm``, compiled and/or inside DDP
    opt: torch.optim.Optimizer
    sampler: BatchSampler
    total: int  # steps of the whole run
    local_batch: int  # sequences per step on this rank (the global batch / world)
    state: RunState
    metrics: MetricsLogger | None  # rank 0 only
    prog: ProgressBar

    @property
    def ckpt_path(self) -> Path:
        return self.dir / runs.CHECKPOINT_FILE

    def model(self) -> GPT:  # the GPT itself, not its compiled wrapper
        m = self.tm.model
        return m._orig_mod if self.cfg.train.compile and hasattr(m, "_orig_mod") else m  # type: ignore[return-value]

    def say(self, text: str) -> None:
        """One progress line (rank 0): the step, what happened, time so far and the estimate to the end."""
        elapsed = time.perf_counter() - self.state.t_start
        done = max(self.state.step - self.state.first_step, 1)
        eta = elapsed / done * (self.total - self.state.step)
        step = f"[{self.state.step:>7}/{self.total}]"
        self.prog.write(f"{step} {text} | {elapsed:5.0f}s elapsed, eta {eta:5.0f}s")


# ---------------------------------------------------------------------------------------------- train


def train(
    cfg: C.Config, run_dir: str | Path, *, force: bool = False, progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Train one run to completion (resuming if it was interrupted) and return its result dict.

    Raises RunDirError (the run directory is in the way, or a checkpoint cannot be read or written;
    nothing that existed is changed), ConfigError or DataError (found before anything is written),
    TrainingDivergedError (the loss became NaN or infinite) and KeyboardInterrupt (Ctrl-C, after the
    checkpoint of the last finished step was saved).
    """
    cfg = C.resolve(cfg)
    rd = Path(run_dir)
    on_cpu = runs.select_device(cfg.train.device).type == "cpu"  # torchrun: gloo on CPU, NCCL on GPU
    distributed = dist_utils.init_from_env("gloo" if on_cpu else None)
    ranks = Ranks(distributed, dist_utils.rank(), dist_utils.world_size())
    # what the run directory holds decides resume or refusal; nothing is changed yet
    resume = bool(dist_utils.on_rank0(lambda: rundir.check_run_dir(rd, cfg, force), ranks.distributed))
    if ranks.main:
        check_available(cfg.train.log_to)  # an optional tracker that is not installed: say so now
    hw = _set_up_device(cfg)
    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
    random.seed(cfg.train.seed)
    data, train_examples = _load_data(cfg, hw.device)
    tm, opt = _build_model(cfg, data, train_examples, hw.device, ranks)
    sampler, total, local_batch = _plan_batches(cfg, data, ranks)
    state = _resume(rd / runs.CHECKPOINT_FILE, tm, opt, cfg, ranks) if resume else RunState()
    # every input checked: now the directory may change
    dist_utils.on_rank0(lambda: rundir.set_up_run_dir(rd, cfg, force, resume, state.step), ranks.distributed)
    runner = _wrap_model(tm, cfg, hw.device, ranks)
    prog = ProgressBar(total, "train", unit="steps", enabled=progress and ranks.main, plain=False)
    prog.update(state.step)
    state.t_start = time.perf_counter()
    metrics: MetricsLogger | None = None
    if ranks.main:  # metrics.jsonl and the trackers of train.log_to, continued when resuming
        t = cfg.train
        metrics = MetricsLogger(rd, t.log_to, state.train_time, resume_step=state.step if resume else None,
                                config=C.to_dict(cfg), wandb_project=t.wandb_project, wandb_mode=t.wandb_mode,
                                metrics_file=runs.METRICS_FILE)
    run = Run(cfg, rd, ranks, hw, data, tm, runner, opt, sampler, total, local_batch, state, metrics, prog)
    if ranks.main and progress:
        _announce(run, resumed_at=state.step if resume else None)
    try:
        with rundir.StopOnCtrlC(enabled=not ranks.distributed) as stop:
            _loop(run, stop)
        return _write_results(run, command)
    finally:
        prog.close()
        if metrics is not None:
            metrics.close()
        if ranks.distributed:  # every rank done before any leaves (the group is left at exit)
            dist_utils.barrier()


# ---------------------------------------------------------------------------------------------- stages


def _set_up_device(cfg: C.Config) -> Hardware:
    """Threads, the device (TF32 matmuls on CUDA) and the precision: bf16 autocast on CUDA by default."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = runs.select_device(cfg.train.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precision = runs.precision_used(device, cfg.train.precision)
    return Hardware(device, precision, runs.autocast(device, cfg.train.precision))


def _load_data(cfg: C.Config, device: torch.device) -> tuple[Data, list[Any]]:
    """The splits, tokenised once and kept on the device; and the training examples (for the loss terms)."""
    task = runs.build_task(cfg)
    fmt = runs.build_format(cfg, task)
    train_ex, valid_ex = runs.load_splits(cfg, task)
    valid = encode_examples(fmt, valid_ex, where="valid")
    curriculum = build_curriculum(cfg, fmt, train_ex, valid.max_length, device)
    seq_len = max(curriculum.max_length, valid.max_length)
    block_size = cfg.model.block_size or seq_len
    if block_size < seq_len:
        raise RunDirError(f"model.block_size={block_size} is shorter than the longest sequence ({seq_len})")
    return Data(task, fmt, curriculum, len(train_ex), valid.to(device), block_size), train_ex


def _build_model(
    cfg: C.Config, data: Data, train_examples: list[Any], device: torch.device, ranks: Ranks
) -> tuple[TrainModule, torch.optim.Optimizer]:
    """The GPT (fresh, or from ``model.init_from``), its loss terms and AdamW over both."""
    model = runs.build_model(cfg, data.fmt.tokenizer.vocab_size, data.block_size).to(device)
    gather = dist_utils.all_gather_with_grad if ranks.distributed else None
    tm = build_train_module(cfg, model, data.fmt, train_examples, device, gather)
    torch.manual_seed(cfg.train.seed + ranks.rank)  # but each rank its own dropout masks
    return tm, build_optimizer(tm, cfg, device)


def build_optimizer(tm: TrainModule, cfg: C.Config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW of ``optim.*`` over the model and its terms' heads (``seqvcr.model.configure_adamw``: weight
    decay on matrices only; fused kernels on CUDA)."""
    o = cfg.optim
    return configure_adamw(tm, o.weight_decay, o.lr, (o.beta1, o.beta2), device.type)


def _plan_batches(cfg: C.Config, data: Data, ranks: Ranks) -> tuple[BatchSampler, int, int]:
    """The global batches of every step, the run's length in steps, and this rank's share of a batch."""
    o = cfg.optim
    if o.batch_size % ranks.world != 0:
        raise RunDirError(f"optim.batch_size={o.batch_size} is not divisible by {ranks.world} processes")
    sampler = BatchSampler(data.n_train, o.batch_size, cfg.train.seed)
    total = o.max_steps or max(1, math.ceil(o.epochs * sampler.steps_per_epoch))
    return sampler, total, sampler.batch_size // ranks.world


def _resume(path: Path, tm: TrainModule, opt: torch.optim.Optimizer, cfg: C.Config, ranks: Ranks) -> RunState:
    """Weights, optimiser and RNG state from the checkpoint; every rank reads it (and restores its own)."""
    ck = read_checkpoint(path)
    ck.load_weights(tm.model, tm.heads())
    ck.load_optimizer(opt)
    states = ck.rng_states
    if len(states) == ranks.world:
        set_rng_state(states[ranks.rank])
    else:  # another number of processes than the run had: reproducible, but not the same masks
        torch.manual_seed(cfg.train.seed * 1_000_003 + ck.step * 1009 + ranks.rank)
        if ranks.main:
            sys.stderr.write(
                f"warning: {path} was written by {len(states)} process(es), resuming with "
                f"{ranks.world}: dropout masks differ from an uninterrupted run from here on\n"
            )
    return RunState(step=ck.step, last_good_step=ck.step, time_before=ck.train_time, first_step=ck.step)


def _wrap_model(tm: TrainModule, cfg: C.Config, device: torch.device, ranks: Ranks) -> nn.Module:
    """What a step calls: the train module, its GPT compiled (``train.compile``), in DDP under torchrun."""
    runner: nn.Module = tm
    if cfg.train.compile:
        tm.model = torch.compile(tm.model)  # type: ignore[assignment]
    if ranks.distributed:
        ddp_kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
        runner = nn.parallel.DistributedDataParallel(tm, **ddp_kwargs)
    return runner


def _announce(run: Run, resumed_at: int | None) -> None:
    """One line: what is trained, with which loss terms, on what, for how long."""
    cfg, data = run.cfg, run.data
    terms = " + ".join(run.tm.terms.keys())
    curriculum = f", curriculum {cfg.curriculum.name}" if cfg.curriculum.name != "none" else ""
    run.prog.write(
        f"training {data.task.describe()} / {cfg.method.name} / loss {terms}{curriculum} / "
        f"{run.tm.model.num_params() / 1e6:.2f}M params on {run.hw.device} ({run.hw.precision}), "
        f"{data.n_train} train / {len(data.valid)} valid examples, {run.total} steps of "
        f"{run.sampler.batch_size}" + (f" (resumed at step {resumed_at})" if resumed_at is not None else "")
    )


# ---------------------------------------------------------------------------------------------- the loop


def _loop(run: Run, stop: rundir.StopOnCtrlC) -> None:
    """Train from ``run.state.step`` to the last step: log, evaluate, snapshot and checkpoint on the way."""
    cfg, state, curriculum = run.cfg, run.state, run.data.curriculum
    share = slice(run.ranks.rank * run.local_batch, (run.ranks.rank + 1) * run.local_batch)
    interval = LogInterval(run.hw.device, run.tm.log_names)
    run.tm.train()
    while state.step < run.total:
        step = state.step
        lr = lr_at(step, run.total, cfg.optim)
        for g in run.opt.param_groups:
            g["lr"] = lr
        if curriculum.resets_optimizer(step):
            run.opt.state.clear()  # ICoT-SI: AdamW starts afresh when more CoT is removed
        batch = curriculum.batch(run.sampler.indices(step)[share].to(run.hw.device), step)
        with run.hw.autocast:
            loss, logged = run.runner(batch.x, batch.y, batch.mask, batch.rows)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.tm.parameters(), cfg.optim.grad_clip)
        run.opt.step()
        state.step += 1
        interval.add(loss, logged, batch.mask)
        run.prog.update()
        _after_step(run, interval, lr, batch, stop)
    if cfg.train.compile:
        run.tm.model = run.model()


def _after_step(run: Run, interval: LogInterval, lr: float, batch: Batch, stop: rundir.StopOnCtrlC) -> None:
    """What happens between steps: the NaN check, the log line, the validation probe, snapshots and
    checkpoints, and a requested stop (Ctrl-C)."""
    tc, s = run.cfg.train, run.state.step
    at_log = s % tc.log_every == 0 or s == run.total
    at_ckpt = s % tc.checkpoint_every == 0
    at_eval = s % tc.eval_every == 0 and s != run.total
    if (at_log or at_ckpt or at_eval) and dist_utils.any_rank(interval.nonfinite):
        raise TrainingDivergedError(
            f"loss became NaN/inf between steps {run.state.last_good_step} and {s} (lr {lr:.3g}); stopped: "
            f"{rundir.kept(run.ckpt_path, run.state.last_good_step)}; lower optim.lr or raise "
            "optim.warmup and re-run with --force")
    if at_log and interval.steps:
        rec = {**interval.record(s, lr, batch.x, run.local_batch), **run.data.curriculum.logs(s - 1)}
        _log(run, rec)
        parts = ", ".join(f"{k.removesuffix('_loss')} {rec[k]:.4f}" for k in run.tm.log_names)
        run.say(f"loss {rec['loss']:.4f} ({parts}) | lr {lr:.2e} | {rec['tokens_per_s']:,.0f} tok/s")
        interval.reset()
    if at_eval and run.ranks.main:
        valid, n = run.data.valid, tc.eval_examples  # the probe: the first eval_examples (0 = all)
        probe = valid.subset(range(n)) if n and n < len(valid) else valid
        res = evaluate(run.model(), run.data.fmt, probe, batch_size=tc.eval_batch_size,
                       precision=run.hw.precision)
        _log(run, _eval_record(s, res))
        run.say(f"valid exact match {res.exact_match:.4f} ({res.n} examples)")
        run.tm.train()
        interval.restart_clock()
    if s in C.snapshot_steps(tc, run.total) and run.ranks.main:
        rundir.save_snapshot(run.dir, run.model(), run.tm.heads(), s)
    if at_ckpt or stop.requested:
        _checkpoint(run)
    if stop.requested:
        run.say(f"interrupted: checkpoint of step {s} saved in {run.ckpt_path}; the same command resumes")
        raise KeyboardInterrupt


def _checkpoint(run: Run) -> None:
    """Save the checkpoint of the current step (every rank's RNG state, written by rank 0)."""
    rng_states = dist_utils.gather_to_rank0(rng_state())  # every rank's, so each resumes with its own
    if run.ranks.main:
        rundir.save_checkpoint(
            run.ckpt_path, run.model(), run.tm.heads(), run.opt, step=run.state.step,
            last_good_step=run.state.last_good_step, train_time=run.state.train_time(), cfg=run.cfg,
            rng_states=rng_states,
        )
    run.state.last_good_step = run.state.step


def _write_results(run: Run, command: str | None) -> dict[str, Any]:
    """Evaluate on the whole validation set, write the last checkpoint, model.safetensors and, last,
    result.json (rank 0; the other ranks return ``{}``)."""
    train_time = run.state.train_time()
    _checkpoint(run)  # a collective: before the rank-0-only part
    if not run.ranks.main:
        return {}
    model, cfg, step = run.model(), run.cfg, run.state.step
    final = evaluate(model, run.data.fmt, run.data.valid, batch_size=cfg.train.eval_batch_size,
                     precision=run.hw.precision)
    _log(run, _eval_record(step, final))
    rundir.save_final_model(run.dir, model, run.tm.heads(), step)
    info = runs.machine_info(run.hw.device)
    result = {
        "run_dir": str(run.dir), "task": run.data.task.describe(), "method": cfg.method.name,
        "seed": cfg.train.seed, "steps": step, "params": model.num_params(), "valid": final.summary(),
        "train_time_s": train_time, "device": str(run.hw.device), "precision": run.hw.precision,
        "world_size": run.ranks.world, "machine": info, "machine_description": runs.describe_machine(info),
        "code": runs.code_version(), "command": command, "config": C.to_dict(cfg),
    }
    write_json_atomic(run.dir / runs.RESULT_FILE, result)
    run.say(f"done: valid exact match {final.exact_match:.4f} on {final.n} examples")
    return result


# ---------------------------------------------------------------------------------------------- records


def _eval_record(step: int, res: EvalResult) -> dict[str, Any]:
    """The ``eval`` record of a validation evaluation at ``step``."""
    return {"kind": "eval", "step": step, "split": "valid", "exact_match": res.exact_match, "n": res.n,
            "position_accuracy": res.position_accuracy}


def _log(run: Run, record: dict[str, Any]) -> None:
    """Write one record (metrics.jsonl and the trackers; rank 0; a failed write is a one-line error)."""
    if run.metrics is not None:
        run.metrics.log(record)


