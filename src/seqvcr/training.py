"""The training loop: next-token loss on CoT/answer tokens, plus Seq-VCR on a projected layer.

One file, one loop, no framework. Per step::

    x, y, mask = batch                                  # (B, T) ids, targets (-100 = no loss), valid
    out = model(x, y, output_hidden_states=seqvcr)      # logits, LM loss, hidden states L0..LN
    loss = out.loss + SeqVCR(proj(out.hidden_states[layer]), mask)

:func:`train` reads as its stages, each a function below it in the order it runs: the processes
(``torchrun`` or one), what the run directory holds (resume, or refuse), the device and precision, the
data, the model with its Seq-VCR head and optimiser, the batches, the checkpoint to resume from, the
run directory, speed-ups (``torch.compile``, DDP), the metrics loggers, then :func:`_loop` -- the
training loop itself -- and the final evaluation and files (:func:`_finish`).

The batch order is a pure function of (seed, step), so a run resumed from its checkpoint sees exactly
the batches it would have seen; the checkpoint (``checkpoint.safetensors``, see ``seqvcr.checkpoints``)
also holds the optimiser and the RNG state of every rank, so a resumed run, distributed or not, ends
with the weights an uninterrupted one would have. Under ``torchrun`` each rank takes its slice of the
global batch and the Seq-VCR statistics are computed on the gathered global batch (see
``seqvcr.distributed``). Metrics go to ``metrics.jsonl`` and to the trackers of ``train.log_to``
(``seqvcr.tracking``); ``train.snapshot_steps`` keeps the weights of chosen steps
(``RUN_DIR/snapshots/step_000500.safetensors``, weights only) for studies across training.

Nothing on disk changes before every input has been checked: the run directory's state, the data, the
model and the batch size are validated first, and only then is an old run removed (``force``), the
directory created and the config written.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import torch
from torch import nn

from seqvcr import config as C
from seqvcr import distributed as dist_utils
from seqvcr import outputs
from seqvcr.atomic import check_output_path, write_json_atomic, write_text_atomic
from seqvcr.checkpoints import (
    LEGACY_CHECKPOINT_FILE,
    MODEL_FILE,
    legacy_error,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    save_model,
    set_rng_state,
)
from seqvcr.errors import RunDirError, SeqVCRError, TrainingDivergedError
from seqvcr.evaluation import EvalResult, evaluate
from seqvcr.model import GPT, configure_adamw
from seqvcr.objectives import SeqVCR
from seqvcr.runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RESULT_FILE,
    SNAPSHOT_DIR,
    autocast,
    build_format,
    build_model,
    build_seqvcr,
    build_task,
    describe_machine,
    load_splits,
    machine_info,
    precision_used,
    select_device,
    snapshot_file,
)
from seqvcr.sequences import EncodedData, SequenceFormat, encode_examples, make_batch, seqvcr_positions
from seqvcr.tasks import Task
from seqvcr.tracking import TENSORBOARD_DIR, MetricsLogger, check_available


class TrainModule(nn.Module):
    """The model and its Seq-VCR head as one module, so DDP synchronises both.

    ``positions`` and ``pause_ids`` choose which states enter the Seq-VCR statistics
    (``seqvcr.positions``, see ``seqvcr.sequences.seqvcr_positions``); the default is every real token.
    """

    def __init__(
        self,
        model: GPT,
        seqvcr: SeqVCR | None,
        positions: str = "all",
        pause_ids: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.model = model
        self.seqvcr = seqvcr
        self.positions = positions
        self.pause_ids = pause_ids
        self.gather = None  # set to an all-gather with gradients under torchrun

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns (total loss, LM loss, Seq-VCR variance term, covariance term)."""
        need_hidden = self.seqvcr is not None
        out = self.model(x, y, output_hidden_states=need_hidden)
        if self.seqvcr is None:
            return out.loss, out.loss, None, None
        h = self.seqvcr.select(out.hidden_states)  # (B, T, n_embd) of the regularised layer
        counted = seqvcr_positions(x, y, mask, self.positions, self.pause_ids)  # (B, T)
        sv = self.seqvcr(h, counted, gather=self.gather)
        return out.loss + sv.loss, out.loss, sv.variance, sv.covariance


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


class BatchSampler:
    """Batch indices as a pure function of (seed, step): a fresh permutation per epoch, last partial
    batch dropped, so every step has the same shape and resuming needs no sampler state."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n = n
        self.batch_size = min(batch_size, n)
        self.seed = seed
        self.steps_per_epoch = max(1, n // self.batch_size)
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def indices(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm[k * self.batch_size : (k + 1) * self.batch_size]


@dataclass
class RunState:
    """Where a run is: its step, the last checkpointed step, and training time over all attempts."""

    step: int = 0
    last_good_step: int = 0
    time_before: float = 0.0  # seconds trained by earlier attempts (from the checkpoint)
    t_start: float = 0.0  # perf_counter() when this attempt started

    def train_time(self) -> float:
        return self.time_before + time.perf_counter() - self.t_start


class Progress:
    """One line per log interval on stderr (and nothing on non-main ranks)."""

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        self.total = total
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()

    def line(self, step: int, text: str) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / max(step, 1) * (self.total - step)
        self.stream.write(f"[{step:>7}/{self.total}] {text} | {elapsed:5.0f}s elapsed, eta {eta:5.0f}s\n")
        self.stream.flush()


@dataclass
class Ranks:
    """This process's place in the run: one of ``world`` processes under ``torchrun``, or alone."""

    distributed: bool
    rank: int
    world: int

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run directory and evaluates."""
        return self.rank == 0


@dataclass
class Hardware:
    """Where and how the run computes: the device, the precision (``bf16`` | ``fp32``) and the autocast
    context of the forward pass."""

    device: torch.device
    precision: str
    autocast: AbstractContextManager[Any]


@dataclass
class Data:
    """The task, its sequence format and the tokenised splits, on the device."""

    task: Task
    fmt: SequenceFormat
    train: EncodedData  # (N, L): every training sequence padded to the longest of both splits
    valid: EncodedData
    block_size: int  # the model's positions


@dataclass
class Batches:
    """Which sequences each step trains on: the sampler of global batches and this rank's share."""

    sampler: BatchSampler
    total: int  # steps of the whole run
    local_batch: int  # sequences per step on this rank (the global batch / world)


# ---------------------------------------------------------------------------------------------- train


def train(
    cfg: C.Config,
    run_dir: str | Path,
    *,
    force: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Train one run to completion (resuming if it was interrupted) and return its result dict.

    Raises:
        RunDirError: the run directory is in the way (a finished run without ``force``, another
            config, an earlier-format checkpoint, an unwritable place) or a checkpoint cannot be read
            or written; nothing that existed before is removed or changed.
        ConfigError, DataError: bad config values or data, found before anything is written.
        TrainingDivergedError: the loss became NaN or infinite.
    """
    cfg = C.resolve(cfg)
    rd = Path(run_dir)
    ranks = _set_up_processes(cfg)
    # what the run directory holds decides resume or refusal; nothing is changed yet
    resume = bool(_on_rank0(lambda: check_run_dir(rd, cfg, force), ranks.distributed))
    if ranks.main:
        check_available(cfg.train.log_to)  # an optional tracker that is not installed: say so now
    hw = _set_up_device(cfg)
    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
    random.seed(cfg.train.seed)
    data = _load_data(cfg, hw.device)
    tm, opt = _build_model(cfg, data, hw.device, ranks)
    batches = _plan_batches(cfg, data, ranks)
    ckpt_path = rd / CHECKPOINT_FILE
    state = _resume(ckpt_path, tm, opt, cfg, ranks) if resume else RunState()
    # every input checked: now the directory may change
    _on_rank0(lambda: _set_up_run_dir(rd, cfg, force, resume, state.step), ranks.distributed)
    n_params = tm.model.num_params()
    runner = _wrap_model(tm, cfg, hw.device, ranks)
    prog = Progress(batches.total, enabled=progress and ranks.main)
    if ranks.main and progress:
        _announce(cfg, data, batches, hw, n_params, state.step if resume else None)
    state.t_start = time.perf_counter()
    metrics = _open_metrics(rd, cfg, state, resume) if ranks.main else None
    try:
        _loop(runner, tm, opt, cfg, data, batches, state, ranks, hw, metrics, prog, ckpt_path)
        return _finish(rd, tm, opt, cfg, data, state, ranks, hw, metrics, prog, command)
    finally:
        if metrics is not None:
            metrics.close()
        if ranks.distributed:
            dist_utils.barrier()


# ---------------------------------------------------------------------------------------------- stages


def _set_up_processes(cfg: C.Config) -> Ranks:
    """Join the process group under ``torchrun`` (gloo on CPU, NCCL on GPU); a lone process is rank 0
    of 1."""
    on_cpu = select_device(cfg.train.device).type == "cpu"
    distributed = dist_utils.init_from_env("gloo" if on_cpu else None)
    return Ranks(distributed, dist_utils.rank(), dist_utils.world_size())


def _set_up_device(cfg: C.Config) -> Hardware:
    """Threads, the device (TF32 matmuls on CUDA) and the precision: bf16 autocast on CUDA by default."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = select_device(cfg.train.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precision = precision_used(device, cfg.train.precision)
    return Hardware(device, precision, autocast(device, cfg.train.precision))


def _load_data(cfg: C.Config, device: torch.device) -> Data:
    """The splits, generated or read once, tokenised once, padded to one length, kept on the device."""
    task = build_task(cfg)
    fmt = build_format(cfg, task)
    train_ex, valid_ex = load_splits(cfg, task)
    train_data = encode_examples(fmt, train_ex, where="train")
    valid_data = encode_examples(fmt, valid_ex, where="valid")
    seq_len = max(train_data.max_length, valid_data.max_length)
    train_data = encode_examples(fmt, train_ex, pad_to=seq_len, where="train").to(device)
    valid_data = valid_data.to(device)
    block_size = cfg.model.block_size or seq_len
    if block_size < seq_len:
        raise RunDirError(f"model.block_size={block_size} is shorter than the longest sequence ({seq_len})")
    return Data(task, fmt, train_data, valid_data, block_size)


def _build_model(
    cfg: C.Config, data: Data, device: torch.device, ranks: Ranks
) -> tuple[TrainModule, torch.optim.Optimizer]:
    """The GPT (fresh, or from ``model.init_from``), its Seq-VCR head and AdamW over both."""
    tok = data.fmt.tokenizer
    model = build_model(cfg, tok.vocab_size, data.block_size).to(device)
    head = build_seqvcr(cfg, model.config.n_embd)
    if head is not None:
        head.to(device)
    pause_ids = (tok.pause_start_id, tok.pause_id, tok.pause_end_id)
    tm = TrainModule(model, head, positions=cfg.seqvcr.positions, pause_ids=pause_ids)
    torch.manual_seed(cfg.train.seed + ranks.rank)  # but each rank its own dropout masks
    if ranks.distributed:
        tm.gather = dist_utils.all_gather_with_grad
    return tm, build_optimizer(tm, cfg, device)


def build_optimizer(tm: TrainModule, cfg: C.Config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW of ``optim.*`` over the model and its head (``seqvcr.model.configure_adamw``: weight decay
    on matrices only; fused kernels on CUDA)."""
    o = cfg.optim
    return configure_adamw(tm, o.weight_decay, o.lr, (o.beta1, o.beta2), device.type)


def _plan_batches(cfg: C.Config, data: Data, ranks: Ranks) -> Batches:
    """The global batches of every step, the run's length in steps, and this rank's slice."""
    if cfg.optim.batch_size % ranks.world != 0:
        raise RunDirError(
            f"optim.batch_size={cfg.optim.batch_size} is not divisible by {ranks.world} processes"
        )
    sampler = BatchSampler(len(data.train), cfg.optim.batch_size, cfg.train.seed)
    total = cfg.optim.max_steps or max(1, math.ceil(cfg.optim.epochs * sampler.steps_per_epoch))
    return Batches(sampler, total, sampler.batch_size // ranks.world)


def _resume(
    path: Path, tm: TrainModule, opt: torch.optim.Optimizer, cfg: C.Config, ranks: Ranks
) -> RunState:
    """Weights, optimiser and RNG state from the checkpoint; every rank reads it (and restores its
    own RNG state)."""
    state = RunState()
    ck = read_checkpoint(path)
    ck.load_weights(tm.model, tm.seqvcr)
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
    state.step = state.last_good_step = ck.step
    state.time_before = ck.train_time
    return state


def _wrap_model(tm: TrainModule, cfg: C.Config, device: torch.device, ranks: Ranks) -> nn.Module:
    """What a step calls: the train module, its GPT compiled (``train.compile``), inside DDP under
    ``torchrun``."""
    runner: nn.Module = tm
    if cfg.train.compile:
        tm.model = torch.compile(tm.model)  # type: ignore[assignment]
    if ranks.distributed:
        ddp_kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
        runner = nn.parallel.DistributedDataParallel(tm, **ddp_kwargs)
    return runner


def _announce(
    cfg: C.Config, data: Data, batches: Batches, hw: Hardware, n_params: int, resumed_at: int | None
) -> None:
    """One line on stderr: what is trained, on what, for how long."""
    sys.stderr.write(
        f"training {data.task.describe()} / {cfg.method.name} / {n_params / 1e6:.2f}M params on "
        f"{hw.device} ({hw.precision}), {len(data.train)} train / {len(data.valid)} valid examples, "
        f"{batches.total} steps of {batches.sampler.batch_size}"
        + (f" (resumed at step {resumed_at})" if resumed_at is not None else "")
        + "\n"
    )


def _open_metrics(rd: Path, cfg: C.Config, state: RunState, resume: bool) -> MetricsLogger:
    """metrics.jsonl and the trackers of ``train.log_to`` (rank 0), continued when resuming."""
    t = cfg.train
    return MetricsLogger(
        rd, t.log_to, state.train_time, resume_step=state.step if resume else None,
        config=C.to_dict(cfg), wandb_project=t.wandb_project, wandb_mode=t.wandb_mode,
        metrics_file=METRICS_FILE,
    )


def _loop(
    runner: nn.Module,
    tm: TrainModule,
    opt: torch.optim.Optimizer,
    cfg: C.Config,
    data: Data,
    batches: Batches,
    state: RunState,
    ranks: Ranks,
    hw: Hardware,
    metrics: MetricsLogger | None,
    prog: Progress,
    ckpt_path: Path,
) -> None:
    """Train from ``state.step`` to the last step: log, evaluate, snapshot and checkpoint on the way."""
    tc = cfg.train
    total, local_bs = batches.total, batches.local_batch
    snapshot_at = set(C.snapshot_steps(tc, total))
    device = data.train.ids.device
    valid_probe = data.valid
    if tc.eval_examples and tc.eval_examples < len(data.valid):
        valid_probe = data.valid.subset(range(tc.eval_examples))
    interval = _LogInterval(device)
    tm.train()
    while state.step < total:
        step = state.step
        lr = lr_at(step, total, cfg.optim)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = batches.sampler.indices(step)[ranks.rank * local_bs : (ranks.rank + 1) * local_bs].to(device)
        x, y, mask = make_batch(data.train, idx)  # (B, T) each
        with hw.autocast:
            loss, lm_loss, var, cov = runner(x, y, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(tm.parameters(), cfg.optim.grad_clip)
        opt.step()
        state.step += 1
        interval.add(loss, lm_loss, var, cov, mask)

        s = state.step
        at_log = s % tc.log_every == 0 or s == total
        at_ckpt = s % tc.checkpoint_every == 0
        at_eval = s % tc.eval_every == 0 and s != total
        if (at_log or at_ckpt or at_eval) and _any_rank(interval.nonfinite):
            raise TrainingDivergedError(
                f"loss became NaN/inf between steps {state.last_good_step} and {s} "
                f"(lr {lr:.3g}); stopped: {_kept(ckpt_path, state.last_good_step)}; lower optim.lr or "
                "raise optim.warmup and re-run with --force"
            )
        if at_log and interval.steps:
            rec = interval.record(s, lr, x, local_bs, with_seqvcr=tm.seqvcr is not None)
            _log(metrics, rec)
            extra = (f" (lm {rec['lm_loss']:.4f}, var {rec['seqvcr_variance']:.4f}, "
                     f"cov {rec['seqvcr_covariance']:.4f})" if tm.seqvcr is not None else "")
            prog.line(s, f"loss {rec['loss']:.4f}{extra} | lr {lr:.2e} | {rec['tokens_per_s']:,.0f} tok/s")
            interval.reset()
        if at_eval and ranks.main:
            model = tm.model if not tc.compile else tm.model._orig_mod
            res = evaluate(model, data.fmt, valid_probe, batch_size=tc.eval_batch_size,
                           precision=hw.precision)
            _log(metrics, _eval_record(s, res))
            prog.line(s, f"valid exact match {res.exact_match:.4f} ({res.n} examples)")
            tm.train()
            interval.restart_clock()
        if s in snapshot_at and ranks.main:
            _save_snapshot(ckpt_path.parent, tm, s, tc.compile)
        if at_ckpt:
            rng_states = _gather_rng_states()  # every rank's, so each resumes with its own
            if ranks.main:
                model_for_ckpt = tm
                if tc.compile:
                    model_for_ckpt = TrainModule(tm.model._orig_mod, tm.seqvcr, tm.positions, tm.pause_ids)
                _save_checkpoint(ckpt_path, model_for_ckpt, opt, state, cfg, rng_states)
            state.last_good_step = s
    if tc.compile:
        tm.model = tm.model._orig_mod


def _finish(
    rd: Path,
    tm: TrainModule,
    opt: torch.optim.Optimizer,
    cfg: C.Config,
    data: Data,
    state: RunState,
    ranks: Ranks,
    hw: Hardware,
    metrics: MetricsLogger | None,
    prog: Progress,
    command: str | None,
) -> dict[str, Any]:
    """Evaluate on the whole validation set, write the last checkpoint, model.safetensors and, last,
    result.json (rank 0; the other ranks return ``{}``)."""
    train_time = state.train_time()
    rng_states = _gather_rng_states()  # a collective: before the rank-0-only part
    if not ranks.main:
        return {}
    model = tm.model
    final = evaluate(model, data.fmt, data.valid, batch_size=cfg.train.eval_batch_size,
                     precision=hw.precision)
    _log(metrics, _eval_record(state.step, final))
    ckpt_path = rd / CHECKPOINT_FILE
    _save_checkpoint(ckpt_path, tm, opt, state, cfg, rng_states)
    state.last_good_step = state.step
    try:
        save_model(rd / MODEL_FILE, model, tm.seqvcr, state.step)
    except OSError as err:
        raise RunDirError(
            f"{rd / MODEL_FILE}: cannot be written ({err.strerror or err}); "
            f"{_kept(ckpt_path, state.step)}; free some space and re-run the same command"
        ) from None
    info = machine_info(hw.device)
    result = {
        "run_dir": str(rd),
        "task": data.task.describe(),
        "method": cfg.method.name,
        "seed": cfg.train.seed,
        "steps": state.step,
        "params": model.num_params(),
        "valid": final.summary(),
        "train_time_s": train_time,
        "device": str(hw.device),
        "precision": hw.precision,
        "world_size": ranks.world,
        "machine": info,
        "machine_description": describe_machine(info),
        "command": command,
        "config": C.to_dict(cfg),
    }
    write_json_atomic(rd / RESULT_FILE, result)
    prog.line(state.step, f"done: valid exact match {final.exact_match:.4f} on {final.n} examples")
    return result


# ---------------------------------------------------------------------------------------------- records


class _LogInterval:
    """The running sums of one log interval, kept on the device (no host sync per step), and whether
    the loss has ever been NaN or infinite."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums = torch.zeros(4, device=device)  # loss, lm loss, variance, covariance
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.tokens = 0
        self.steps = 0
        self.t_last = time.perf_counter()

    def add(
        self,
        loss: torch.Tensor,
        lm_loss: torch.Tensor,
        var: torch.Tensor | None,
        cov: torch.Tensor | None,
        mask: torch.Tensor,
    ) -> None:
        """Count one step (its scalar losses and, on CPU, its real tokens)."""
        self.steps += 1
        self.tokens += int(mask.sum()) if self.device.type == "cpu" else 0
        with torch.no_grad():
            self.nonfinite |= ~torch.isfinite(loss.detach())
            self.sums += torch.stack(
                [
                    loss.detach().float(),
                    lm_loss.detach().float(),
                    var.detach().float() if var is not None else torch.zeros((), device=self.device),
                    cov.detach().float() if cov is not None else torch.zeros((), device=self.device),
                ]
            )

    def record(
        self, step: int, lr: float, x: torch.Tensor, local_bs: int, *, with_seqvcr: bool
    ) -> dict[str, Any]:
        """The interval's ``train`` record: the losses of the global batch averaged over the steps,
        and the throughput (padded tokens on a GPU, which counts them without a sync per step)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.tokens = int(self.steps * x.shape[0] * x.shape[1])
        now = time.perf_counter()
        dt = max(now - self.t_last, 1e-9)
        world = dist_utils.world_size()
        if world > 1:  # log the global batch's losses, not rank 0's shard
            torch.distributed.all_reduce(self.sums)
            self.sums /= world
        avg = (self.sums / self.steps).tolist()
        return {
            "kind": "train",
            "step": step,
            "loss": avg[0],
            "lm_loss": avg[1],
            "seqvcr_loss": avg[0] - avg[1] if with_seqvcr else 0.0,
            "seqvcr_variance": avg[2],
            "seqvcr_covariance": avg[3],
            "lr": lr,
            "tokens_per_s": self.tokens * world / dt,
            "examples_per_s": self.steps * local_bs * world / dt,
        }

    def reset(self) -> None:
        """Start the next interval."""
        self.sums.zero_()
        self.tokens = 0
        self.steps = 0
        self.restart_clock()

    def restart_clock(self) -> None:
        """Leave the time until now (an evaluation) out of the throughput."""
        self.t_last = time.perf_counter()


def _eval_record(step: int, res: EvalResult) -> dict[str, Any]:
    """The ``eval`` record of a validation evaluation at ``step``."""
    return {
        "kind": "eval",
        "step": step,
        "split": "valid",
        "exact_match": res.exact_match,
        "n": res.n,
        "position_accuracy": res.position_accuracy,
    }


# ---------------------------------------------------------------------------------------------- files


def check_run_dir(run_dir: Path, cfg: C.Config, force: bool) -> bool:
    """Decide what to do with the run directory, changing nothing. True: resume an interrupted run.

    A finished run (result.json) or a trained model that cannot be resumed is never replaced without
    ``force``; an interrupted run with the same config is resumed; one with a different config needs
    ``force``; a checkpoint of the earlier pickle format must be converted first (never loaded).
    """
    check_output_path(run_dir, "run directory", directory=True)
    if force:
        return False
    if (run_dir / RESULT_FILE).is_file():
        raise RunDirError(
            f"{run_dir}: already holds a finished run (result.json); use --force to overwrite it"
        )
    if (run_dir / CHECKPOINT_FILE).is_file():
        saved = C.load_config(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else None
        if saved is None or C.to_dict(C.resolve(saved)) != C.to_dict(cfg):
            raise RunDirError(
                f"{run_dir}: holds an interrupted run with a different config; "
                "use --force to start over or pick another directory"
            )
        return True
    if (run_dir / LEGACY_CHECKPOINT_FILE).is_file():
        raise legacy_error(run_dir)
    if (run_dir / MODEL_FILE).is_file():
        raise RunDirError(
            f"{run_dir}: holds a trained model ({MODEL_FILE}) without a checkpoint to resume from; "
            "use --force to train anew or pick another directory"
        )
    return False


#: The files of a run that ``force`` removes (once the new run's inputs have been checked).
RUN_FILES = (RESULT_FILE, MODEL_FILE, CHECKPOINT_FILE, LEGACY_CHECKPOINT_FILE, METRICS_FILE, CONFIG_FILE)
#: Measurements of the old run's weights that ``force`` removes with it (``seqvcr entropy``, ``seqvcr eval``).
MEASUREMENT_FILES = outputs.ENTROPY_FILES
#: Directories of a run that ``force`` removes: saved evaluations, snapshots, TensorBoard events. (A W&B
#: directory is kept: its offline runs may not have been uploaded yet.)
RUN_DIRS = (outputs.EVAL_DIR, SNAPSHOT_DIR, TENSORBOARD_DIR)


def _set_up_run_dir(run_dir: Path, cfg: C.Config, force: bool, resume: bool, step: int) -> None:
    """Remove the old run (``force``), create the directory, write the config (rank 0 only)."""
    if force and run_dir.is_dir():
        for name in (*RUN_FILES, *MEASUREMENT_FILES):
            (run_dir / name).unlink(missing_ok=True)
        for name in RUN_DIRS:
            shutil.rmtree(run_dir / name, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:  # temporary files of an attempt killed while writing (never read)
        for tmp in run_dir.glob(f"{name}.tmp*"):
            tmp.unlink(missing_ok=True)
    if resume:
        _truncate_metrics(run_dir / METRICS_FILE, step)
    else:  # records, snapshots and events of an attempt that saved no checkpoint describe nothing kept
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
        for name in (SNAPSHOT_DIR, TENSORBOARD_DIR):
            shutil.rmtree(run_dir / name, ignore_errors=True)
    C.save_yaml(cfg, run_dir / CONFIG_FILE)


T = TypeVar("T")


def _on_rank0(fn: Callable[[], T], distributed: bool) -> T | None:
    """Run ``fn`` on rank 0 and give every rank its verdict: the value, or the same one-line error
    (so no rank waits forever in a collective for a rank that has given up)."""
    value: T | None = None
    error: BaseException | None = None
    if dist_utils.rank() == 0:
        try:
            value = fn()
        except (SeqVCRError, OSError) as err:
            error = err
    if distributed:
        box: list[Any] = [value, None if error is None else str(error)]
        torch.distributed.broadcast_object_list(box, src=0)
        value = box[0]
        if box[1] is not None and error is None:
            error = RunDirError(box[1])
    if error is not None:
        raise error
    return value


def _gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's RNG state, in rank order, on rank 0 (the others get ``[]``); a collective."""
    own = rng_state()
    world = dist_utils.world_size()
    if world == 1:
        return [own]
    out: list[Any] = [None] * world if dist_utils.rank() == 0 else []
    torch.distributed.gather_object(own, out if dist_utils.rank() == 0 else None, dst=0)
    return out


def _kept(path: Path, step: int) -> str:
    """What is left on disk to resume from, named only if it exists."""
    if path.is_file():
        return f"the last good checkpoint (step {step}) is kept in {path}"
    return "no checkpoint had been saved yet"


def _save_checkpoint(
    path: Path,
    tm: TrainModule,
    opt: torch.optim.Optimizer,
    state: RunState,
    cfg: C.Config,
    rng_states: list[dict[str, Any]],
) -> None:
    """Write ``checkpoint.safetensors`` for ``state.step``; a failed write (full disk) is a one-line
    RunDirError, the temporary file is gone and the previous checkpoint is untouched."""
    try:
        save_checkpoint(
            path,
            tm.model,
            tm.seqvcr,
            opt,
            step=state.step,
            train_time=state.train_time(),
            rng_states=rng_states,
            config=C.to_dict(cfg),
        )
    except OSError as err:
        raise RunDirError(
            f"{path}: cannot write the checkpoint of step {state.step} ({err.strerror or err}); "
            f"{_kept(path, state.last_good_step)}; free some space and re-run the same command to resume"
        ) from None


def _any_rank(flag: torch.Tensor) -> bool:
    """True if ``flag`` is set on any process (so every rank stops together on a NaN)."""
    if dist_utils.world_size() > 1:
        flag = flag.to(torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after the checkpoint a run resumes from, so no step appears twice.

    A torn last line (the process was killed while writing it) is dropped too; any other line that is
    not a JSON record is a RunDirError naming file:line (it was not written by seqvcr).
    """
    if not path.is_file():
        return
    lines = path.read_text(errors="replace").splitlines()
    kept = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            record_step = int(record["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if lineno == len(lines):
                continue  # torn by a kill during the write
            raise RunDirError(
                f"{path}:{lineno}: not a metrics record; remove the line (or the file) to resume"
            ) from None
        if record_step <= step:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def _log(logger: MetricsLogger | None, record: dict[str, Any]) -> None:
    """Write one record (metrics.jsonl and the trackers; a failed write is a one-line error)."""
    if logger is not None:
        logger.log(record)


def _save_snapshot(run_dir: Path, tm: TrainModule, step: int, compiled: bool) -> None:
    """Keep the weights of ``step`` in ``RUN_DIR/snapshots/step_000500.safetensors`` (weights only)."""
    path = snapshot_file(run_dir, step)
    path.parent.mkdir(exist_ok=True)
    model = tm.model._orig_mod if compiled else tm.model
    try:
        save_model(path, model, tm.seqvcr, step)
    except OSError as err:
        raise RunDirError(
            f"{path}: cannot write the snapshot of step {step} ({err.strerror or err}); free some space "
            "and re-run the same command to resume from the last checkpoint"
        ) from None
