"""What a sweep will cost before it runs: the training FLOPs of each run and the GPU hours they take at an
assumed model FLOPs utilisation (MFU) of a stated GPU peak.

For a run: ``steps`` (``optim.max_steps``, else the training loop's count over ``optim.epochs``) x
``batch * T`` tokens per step (every batch is padded to the longest training sequence, ``T`` tokens) x
the GPT's training FLOPs per token, ``6 N + 12 L H Q T`` (``GPT.flops_per_token``, the count ``seqvcr
bench`` uses for MFU). Under ICoT-SI ``T`` shrinks as the schedule removes CoT tokens: each step counts
at the length of its scheduled removal (the smoothing's random extra removal, which shortens only some
rows of a batch, is left out). GPU seconds = FLOPs / (MFU x peak). Left out: the Seq-VCR projection and
its N x N Gram matrices (about 2% of a GPT-2 small step at projection 2048), the validation, evaluation
and entropy. The MFU is an assumption, printed with the estimate (``seqvcr bench`` on the GPU measures
the real one).

Once some runs of a sweep have finished, what is left is also estimated from them, on the machine they
ran on (``measured_lines``): a run to go takes its setting's mean training time, or, in a setting with
no finished run, its FLOPs at the finished runs' pace; a started run only the steps after its checkpoint.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seqvcr import config as C
from seqvcr.errors import ConfigError

if TYPE_CHECKING:
    from seqvcr.sequences import SequenceFormat

__all__ = ["DEFAULT_GPU", "DEFAULT_MFU", "DEFAULT_PEAK_TFLOPS", "RunCost", "estimate_lines", "measured_lines",
           "run_cost"]

#: The GPU the estimate is stated for, and its dense bf16 peak (NVIDIA's data sheet; the "a100" entry of
#: ``seqvcr.bench.mfu.PEAK_BF16_TFLOPS``).
DEFAULT_GPU = "A100 bf16"
DEFAULT_PEAK_TFLOPS = 312.0
#: The assumed model FLOPs utilisation: GPT-2 small on batches of 32 sequences of a few dozen tokens
#: keeps a GPU far below large-batch utilisation (about 2,000 tokens per step).
DEFAULT_MFU = 0.10


@dataclass(frozen=True)
class RunCost:
    """The training cost of one run."""

    steps: int
    batch_size: int
    seq_lens: dict[int, int]  # padded training length T -> steps at it (one entry without a curriculum)
    params: int  # N: the GPT's non-embedding parameters (the 6N of the FLOPs count)
    flops: float  # sum over steps of batch x T x flops_per_token(T)

    @property
    def seq_len(self) -> float:
        """T averaged over the steps."""
        return sum(t * n for t, n in self.seq_lens.items()) / self.steps

    @property
    def flops_per_token(self) -> float:
        """FLOPs per token averaged over every token trained."""
        return self.flops / (self.steps * self.batch_size * self.seq_len)

    def seq_len_text(self) -> str:
        """``T``, or under a curriculum its range and mean: ``15-40 (mean 19.3)``."""
        if len(self.seq_lens) == 1:
            return f"{next(iter(self.seq_lens))}"
        return f"{min(self.seq_lens)}-{max(self.seq_lens)} (mean {self.seq_len:.1f})"

    def gpu_hours(self, mfu: float = DEFAULT_MFU, peak_tflops: float = DEFAULT_PEAK_TFLOPS) -> float:
        """Hours of one GPU computing at ``mfu`` of ``peak_tflops``."""
        return self.flops / (mfu * peak_tflops * 1e12) / 3600.0


def run_cost(config: dict[str, Any] | C.Config) -> RunCost:
    """The training FLOPs of the run a (resolved or raw) config describes; the GPT is built on the meta
    device, so nothing is allocated."""
    import torch

    from seqvcr.datafiles import resolve_data_path
    from seqvcr.model import GPT, GPTConfig
    from seqvcr.runs import build_format, build_task

    cfg = C.resolve(config if isinstance(config, C.Config) else C.from_dict(config))
    task = build_task(cfg)
    fmt = build_format(cfg, task)
    batch, n = cfg.optim.batch_size, cfg.task.train_size
    if cfg.task.train_file:  # its lines are the training examples
        with open(resolve_data_path(cfg.task.train_file)) as f:
            n = sum(1 for line in f if line.strip())
    per_epoch = max(1, n // min(batch, n))
    steps = cfg.optim.max_steps or max(1, math.ceil(cfg.optim.epochs * per_epoch))
    seq_lens = _steps_by_length(cfg, fmt, n, steps)
    m = cfg.model
    with torch.device("meta"):
        model = GPT(GPTConfig(vocab_size=fmt.tokenizer.vocab_size,
                              block_size=max(*seq_lens, m.block_size or 0), n_layer=m.n_layer,
                              n_head=m.n_head, n_embd=m.n_embd, dropout=0.0, bias=m.bias,
                              tie_weights=m.tie_weights))
    flops = sum(k * batch * t * model.flops_per_token(t) for t, k in seq_lens.items())
    return RunCost(steps, batch, seq_lens, model.num_params(non_embedding=True), float(flops))


def _steps_by_length(cfg: C.Config, fmt: SequenceFormat, n_examples: int, steps: int) -> dict[int, int]:
    """Training steps at each padded length T. T: the longest prompt (question, separator, pause block) +
    target ([CoT,] answer, <eos>) over a sample of the task's problems (every multiplication problem of a
    size has the same); under ICoT-SI, the full CoT's length until the first removal, one token less per
    removal, and the run's own length once the whole CoT (and its separator) is gone."""
    from seqvcr.curriculum import steps_per_token
    from seqvcr.sequences import SequenceFormat

    sample = fmt.task.generate(256, seed=0)

    def longest(f: SequenceFormat) -> int:
        return max(len(f.prompt_tokens(ex)) + len(f.target_tokens(ex)) for ex in sample)

    if cfg.curriculum.name != "icot_si":
        return {longest(fmt): steps}
    full = longest(SequenceFormat(fmt.task, fmt.tokenizer, cot=True, pauses=fmt.pauses))
    lengths = [full - k for k in range(max(len(ex.cot) for ex in sample))] + [longest(fmt)]
    every, start = steps_per_token(cfg, n_examples), cfg.curriculum.start_step
    counts: Counter[int] = Counter()
    for k, t in enumerate(lengths):  # k tokens removed from step start + k * every (0 from step 0)
        lo = 0 if k == 0 else min(steps, start + k * every)
        hi = steps if k == len(lengths) - 1 else min(steps, start + (k + 1) * every)
        if hi > lo:
            counts[t] += hi - lo
    return dict(counts)


def estimate_lines(runs: list[Any], *, mfu: float = DEFAULT_MFU, peak_tflops: float = DEFAULT_PEAK_TFLOPS,
                   gpu: str = DEFAULT_GPU) -> list[str]:
    """The estimate as printed by ``seqvcr sweep --dry-run``: one line per distinct setting (its runs
    differ only in the seed), then the total and the assumptions. ``runs``: the sweep's RunEntry
    objects (``config``, ``setting``, ``seed``, ``skip``)."""
    if not 0 < mfu <= 1:
        raise ConfigError(f"--mfu: expected a fraction in (0, 1], got {mfu}")
    if peak_tflops <= 0:
        raise ConfigError(f"--peak-tflops: expected a positive number, got {peak_tflops}")
    groups: dict[str, list[Any]] = {}
    for r in runs:
        groups.setdefault(r.setting, []).append(r)
    lines = [f"estimate (training only), {gpu} at {peak_tflops:g} TFLOP/s peak, assumed MFU {mfu:.0%}:"]
    total = 0.0
    for setting, members in groups.items():
        cost = run_cost(members[0].config)
        hours = cost.gpu_hours(mfu, peak_tflops)
        total += hours * len(members)
        lines.append(f"  {setting}: {len(members)} run(s) x {cost.steps:,} steps x {cost.batch_size} x "
                     f"{cost.seq_len_text()} tokens x {cost.flops_per_token / 1e6:,.1f} MFLOP/token = "
                     f"{cost.flops:.3g} FLOP, {hours:,.1f} GPU hours each")
    lines.append(f"total: {len(runs)} runs, {total:,.0f} GPU hours ({total / 24:,.1f} GPU days) on {gpu} "
                 f"at MFU {mfu:.0%}; FLOPs per token = 6 N + 12 L H Q T (GPT.flops_per_token), tokens = "
                 "batch x padded length; Seq-VCR head, validation and evaluation not counted")
    return lines


def measured_lines(runs: list[Any], train_s: dict[str, float], started: dict[str, int]) -> list[str]:
    """The time left to a sweep by its finished runs' training times, as ``seqvcr sweep --dry-run`` prints
    it (nothing when no run has finished). ``runs``: the sweep's RunEntry objects; ``train_s``: a finished
    run's id -> its ``train_time_s``; ``started``: an unfinished run's id -> the step of its checkpoint."""
    costs = {r.id: run_cost(r.config) for r in runs if r.skip is None}
    finished = [i for i in train_s if i in costs]
    if not finished:
        return []
    pace = sum(train_s[i] for i in finished) / sum(costs[i].flops for i in finished)  # seconds per FLOP
    groups: dict[str, list[Any]] = {}
    for r in runs:
        if r.skip is None:
            groups.setdefault(r.setting, []).append(r)
    lines = [f"time left, measured: the training times of the {len(finished)} finished run(s) (result.json), "
             "on the machine and with the workers they had:"]
    total, left_runs = 0.0, 0
    for setting, members in groups.items():
        times = [train_s[r.id] for r in members if r.id in train_s]
        left = [r for r in members if r.id not in train_s]
        each = sum(times) / len(times) if times else pace * costs[left[0].id].flops
        hours = sum(each * (1 - started.get(r.id, 0) / costs[r.id].steps) for r in left) / 3600
        total += hours
        left_runs += len(left)
        basis = f"mean of {len(times)}" if times else "by FLOPs at the finished runs' pace"
        lines.append(f"  {setting}: {len(times)} done, {len(left)} to go"
                     + (f", {hours:,.1f} h (a run {each / 3600:,.1f} h, {basis})" if left else ""))
    lines.append(f"left: {left_runs} runs, {total:,.1f} hours of one worker (a started run from its "
                 "checkpoint); W workers running as the finished runs did take about 1/W of it")
    return lines
