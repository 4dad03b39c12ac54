"""``seqvcr bench``: how fast the pieces of this implementation are, with the machine stated.

Five benchmarks, each timed with warm-up runs and then repeated runs (the median is reported;
``torch.cuda.synchronize`` around every timed region on a GPU). Every speed target is a RATIO of two
measurements taken in the same process, one right after the other, so that machine load and clock
drift cancel as far as they can.

(a) Seq-VCR loss, forward + backward, at the paper's size (N=32 sequences, T=24 positions, d=2048):
    ``seqvcr.objectives.seq_vcr_loss`` (N x N Gram per position, cost T*N^2*d) against the usual
    per-position d x d covariance as lightly's VICReg / VICRegL losses compute it (a T x d x d tensor,
    off-diagonal entries picked by a boolean mask, cost T*N*d^2). Values must agree (rtol 1e-4).
    Target: >= 20x. Also reported, not targeted: a stronger dense baseline that still builds the
    T x d x d covariance but subtracts the diagonal instead of indexing it.
(b) One full training step (forward, LM loss, Seq-VCR loss, backward, gradient clipping, AdamW step:
    the step of ``seqvcr.training``) with Seq-VCR (method ``seqvcr_pause``) and without it (``pause``,
    the same sequences), for the tiny preset (configs/tiny_cpu.yaml: 3x3, n_layer 2, n_embd 128,
    proj 256, batch 64) and gpt2-small (5x5, proj 2048, batch 32). Overhead = t_with / t_without - 1.
    Targets: <= 15% on CPU, <= 5% on GPU. The time of the Seq-VCR head alone (projection + loss,
    forward + backward) and its FLOP share are reported to explain the overhead.
(c) GPU only: training tokens/s of gpt2-small (Seq-VCR + pause, bf16 autocast, TF32, fused AdamW,
    optional torch.compile) at the batch that gives the most tokens/s (it fills the GPU), and the model
    FLOPs utilisation MFU = flops_per_token * tokens/s / peak, with flops_per_token = 6 N + 12 L H Q T
    (``GPT.flops_per_token``) and the dense bf16 peak of the device (table ``PEAK_BF16_TFLOPS``).
    Target: >= 40% on an H100. On a CPU it is recorded as skipped, never estimated.
(d) Evaluation throughput: greedy decoding with the KV cache (``GPT.generate``) against naive decoding
    (a full forward pass for every new token), examples/s, tiny preset on 3x3 (gpt2-small on 5x5 with
    ``--full``); plus the examples/s of the whole ``seqvcr.evaluation.evaluate`` path.
(e) Representation entropy of every layer over 1000 sequences: the forward pass with all hidden states
    plus ``seqvcr.entropy.matrix_entropy`` of each layer for each sequence, in large batches (seconds).

``--quick`` shrinks the sizes and repeats so that a test can run everything in seconds; its numbers
are not the targets' settings and are marked so in the output. Timings are wall-clock by default;
``--clock cpu`` times the CPU time of this process instead (CPU runs only), which with ``--threads 1``
is the compute time of the code and stays steady when other jobs share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from seqvcr.errors import ConfigError, SeqVCRError

__all__ = [
    "BENCHMARKS",
    "PEAK_BF16_TFLOPS",
    "naive_generate",
    "naive_seq_vcr_loss",
    "peak_bf16_tflops",
    "register",
    "run_benchmarks",
]

BENCHMARKS: dict[str, str] = {
    "a": "Seq-VCR loss vs per-position d x d covariance",
    "b": "training step with vs without Seq-VCR",
    "c": "GPU training throughput and MFU",
    "d": "evaluation: greedy decoding with KV cache vs naive",
    "e": "entropy of every layer over 1000 sequences",
}

#: Dense (no sparsity) bf16 tensor-core peak in TFLOP/s, from NVIDIA's data sheets, matched as a
#: case-insensitive substring of ``torch.cuda.get_device_name`` in this order (the first match wins).
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("h100 pcie", 756.0),
    ("h100 nvl", 835.0),
    ("h100", 989.4),  # H100 SXM5 (e.g. "NVIDIA H100 80GB HBM3")
    ("h200", 989.4),  # H200 (and GH200): the same GH100 compute die as the H100 SXM
    ("h800", 989.4),
    ("a100", 312.0),
    ("a800", 312.0),
    ("l40s", 362.0),
    ("l4", 121.0),
)

# The two (b) settings. tiny mirrors configs/tiny_cpu.yaml; gpt2-small is the paper's multiplication run.
CASES: dict[str, dict[str, Any]] = {
    "tiny": {
        "task": {"name": "mult", "digits": 3},
        "model": {"preset": "tiny", "n_layer": 2, "n_head": 4, "n_embd": 128, "dropout": 0.0},
        "seqvcr": {"proj_dim": 256},
        "optim": {"batch_size": 64, "lr": 1e-3, "weight_decay": 0.01},
    },
    "gpt2-small": {
        "task": {"name": "mult", "digits": 5},
        "model": {"preset": "gpt2-small"},
        "seqvcr": {"proj_dim": 2048},
        "optim": {"batch_size": 32, "lr": 5e-4, "weight_decay": 0.01},
    },
}

PAPER_SHAPE = (32, 24, 2048)  # (N, T, d) of benchmark (a)
QUICK_SHAPE = (32, 24, 512)


# ----------------------------------------------------------------------------------------------------
# settings and timing


@dataclass
class Settings:
    """What to run and how hard."""

    device: torch.device
    only: tuple[str, ...]
    quick: bool = False
    full: bool = False
    compile: bool = False
    warmup: int = 2
    repeats: int = 7
    peak_tflops: float | None = None
    mfu_batch: int | None = None
    clock: str = "wall"  # wall: time.perf_counter; cpu: time.process_time (CPU runs only)
    log: Callable[[str], None] = lambda msg: None
    done: Callable[[], None] = lambda: None  # one benchmark finished (a progress bar)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# The clock of every timed region: wall time by default. ``--clock cpu`` switches to the CPU time of
# this process (time.process_time), which on a CPU run with one thread is the compute time of the code
# and, unlike wall time, does not grow when other processes share the cores.
_CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock: Callable[[], float] = time.perf_counter


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn`` on the selected clock, synchronised on a GPU."""
    _sync(device)
    t0 = _clock()
    fn()
    _sync(device)
    return _clock() - t0


def measure(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """``warmup`` untimed calls, then the seconds of each of ``repeats`` calls."""
    for _ in range(warmup):
        fn()
    return [_timed(fn, device) for _ in range(repeats)]


def measure_interleaved(
    fns: dict[str, Callable[[], Any]], device: torch.device, warmup: int, repeats: int
) -> dict[str, list[float]]:
    """Like :func:`measure` for several functions, alternating them (A B A B ...) so that load changes
    on the machine hit every function alike; a ratio of their medians is then a fair comparison."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(_timed(fn, device))
    return times


def _stats(times: list[float]) -> dict[str, Any]:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": len(times),
    }


@contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    """Set the CUDA TF32 switches for a block and restore them after."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA (the training fast path), nothing on CPU (fp32, as the trainer)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def peak_bf16_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU from ``PEAK_BF16_TFLOPS``, or None when the name is not in the table."""
    name = device_name.lower()
    for key, peak in PEAK_BF16_TFLOPS:
        if key in name:
            return peak
    return None


# ----------------------------------------------------------------------------------------------------
# (a) Seq-VCR loss


def naive_seq_vcr_loss(
    x: torch.Tensor, lambda1: float = 1.0, lambda2: float = 0.004, eta: float = 1e-3
) -> torch.Tensor:
    """Seq-VCR computed the usual way, with one d x d covariance per position (the reference of (a)).

    This is how lightly's ``VICRegLoss`` / ``VICRegLLoss`` (and VICRegL's code) compute the terms for
    inputs with extra dims: ``torch.einsum("b...c,b...d->...cd")`` builds every C_i, a boolean mask
    selects the off-diagonal entries. Same equation as Eq. 3-4 (no division of the variance by 2).

    x: (N, T, d). Returns a scalar.
    """
    n, _, d = x.shape
    std = torch.sqrt(x.var(dim=0) + eta)  # (T, d) unbiased variance across the batch
    variance = F.relu(1.0 - std).mean()  # 1/(T d) sum_i sum_k
    xc = x - x.mean(dim=0)  # (N, T, d)
    cov = torch.einsum("b...c,b...e->...ce", xc, xc) / (n - 1)  # (T, d, d): every C_i
    nondiag = ~torch.eye(d, dtype=torch.bool, device=x.device)  # (d, d)
    covariance = (cov[..., nondiag].pow(2).sum(-1) / d).mean()  # (T, d*d-d) -> (T,) -> mean over i
    return lambda1 * variance + lambda2 * covariance


def _dense_seq_vcr_loss(
    x: torch.Tensor, lambda1: float = 1.0, lambda2: float = 0.004, eta: float = 1e-3
) -> torch.Tensor:
    """A stronger d x d baseline: still the (T, d, d) covariance, but ||C||_F^2 - ||diag C||^2 instead of
    boolean indexing (no copy of the off-diagonal entries). x: (N, T, d)."""
    n, t, d = x.shape
    xc = x - x.mean(dim=0)  # (N, T, d)
    var = xc.pow(2).sum(0) / (n - 1)  # (T, d)
    variance = F.relu(1.0 - torch.sqrt(var + eta)).sum() / (t * d)
    cov = torch.einsum("btc,bte->tce", xc, xc) / (n - 1)  # (T, d, d)
    covariance = (cov.pow(2).sum() - var.pow(2).sum()) / (t * d)
    return lambda1 * variance + lambda2 * covariance


def bench_a(s: Settings) -> dict[str, Any]:
    """(a): ours vs the per-position d x d covariance, forward + backward, same process, values equal."""
    from seqvcr.objectives import seq_vcr_loss

    n, t, d = QUICK_SHAPE if s.quick else PAPER_SHAPE
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, t, d, generator=gen).to(s.device)  # (N, T, d) float32
    impls: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "seqvcr (N x N Gram)": lambda z: seq_vcr_loss(z, 1.0, 0.004, 1e-3),
        "per-position d x d (lightly/VICRegL form)": naive_seq_vcr_loss,
        "per-position d x d, diagonal subtracted": _dense_seq_vcr_loss,
    }
    values: dict[str, float] = {}
    grads: dict[str, torch.Tensor] = {}

    def fwd_bwd(name: str) -> Callable[[], None]:
        def run() -> None:
            z = x.detach().requires_grad_()  # (N, T, d) a fresh leaf
            loss = impls[name](z)
            loss.backward()
            values[name] = float(loss.detach())
            grads[name] = z.grad  # type: ignore[assignment]

        return run

    # fp32 matmuls everywhere (TF32 off) so that the two forms compute the same numbers
    with _tf32(False):
        # the naive form takes seconds per call on a CPU at the paper's size: fewer repeats there
        slow = not s.cuda and not s.quick
        warm, reps = (1, 3) if slow else (s.warmup, s.repeats)
        times = measure_interleaved({k: fwd_bwd(k) for k in impls}, s.device, warm, reps)
    ours, naive, dense = list(impls)
    rel_value = abs(values[ours] - values[naive]) / max(abs(values[naive]), 1e-30)
    g_ref = grads[naive]
    rel_grad = float((grads[ours] - g_ref).abs().max() / g_ref.abs().max().clamp(min=1e-30))
    match = rel_value <= 1e-4
    med = {k: statistics.median(v) for k, v in times.items()}
    s.log(f"(a) ours {_ms(med[ours])} ms, d x d {_ms(med[naive])} ms: {med[naive] / med[ours]:.1f}x")
    return {
        "shape": {"N": n, "T": t, "d": d},
        "paper_size": (n, t, d) == PAPER_SHAPE,
        "dtype": "float32",
        "implementations": {
            k: {**_stats(times[k]), "loss": values[k]} for k in impls
        },
        "values_match": match,
        "rel_value_diff": rel_value,
        "rel_grad_diff": rel_grad,
        "ratio": med[naive] / med[ours],
        "ratio_vs_dense": med[dense] / med[ours],
    }


# ----------------------------------------------------------------------------------------------------
# (b) / (c) training steps


def case_config(case: str, method: str, device: torch.device, batch_size: int | None = None) -> Any:
    """The resolved Config of a (b)/(c) case for ``method`` (``seqvcr_pause`` or ``pause``)."""
    from seqvcr import config as C

    data = json.loads(json.dumps(CASES[case]))  # deep copy
    data["method"] = {"name": method, "pauses": 2}
    data["train"] = {"device": str(device)}
    if batch_size is not None:
        data["optim"]["batch_size"] = batch_size
    return C.resolve(C.from_dict(data))


class TrainStep:
    """One configured training step, exactly as ``seqvcr.training`` runs it, on a few fixed batches.

    The data are pre-tokenised, padded to one length and kept on the device; batches are cycled so
    consecutive steps see different data. ``step()`` does forward (bf16 autocast on CUDA), LM +
    Seq-VCR loss, backward, gradient clipping and the AdamW update (fused on CUDA).
    """

    def __init__(self, case: str, method: str, device: torch.device, *, compile_model: bool = False,
                 batch_size: int | None = None, seed: int = 0) -> None:
        from seqvcr.runs import build_format, build_model, build_seqvcr, build_task
        from seqvcr.sequences import encode_examples, make_batch
        from seqvcr.training import TrainModule, _optimizer

        cfg = case_config(case, method, device, batch_size)
        self.cfg = cfg
        self.device = device
        bs = cfg.optim.batch_size
        task = build_task(cfg)
        fmt = build_format(cfg, task)
        examples = task.generate(max(4 * bs, 256), seed=seed + 1)
        data = encode_examples(fmt, examples).to(device)  # (M, L) on the device
        torch.manual_seed(seed)
        model = build_model(cfg, fmt.tokenizer.vocab_size, data.max_length).to(device)
        head = build_seqvcr(cfg, model.config.n_embd)
        if head is not None:
            head.to(device)
        self.model = model
        self.tm = TrainModule(model, head)
        self.tm.train()
        if compile_model:
            self.tm.model = torch.compile(model, dynamic=False)  # type: ignore[assignment]
        self.opt = _optimizer(self.tm, cfg, device)
        g = torch.Generator().manual_seed(seed)
        self.batches = [
            make_batch(data, torch.randperm(len(data), generator=g)[:bs].to(device)) for _ in range(4)
        ]  # each (x (B, T), y (B, T), mask (B, T))
        self.seq_len = int(self.batches[0][0].shape[1])
        self.batch_size = bs
        self.tokens_per_step = bs * self.seq_len  # every position is computed (padded or not)
        self._i = 0

    def step(self) -> None:
        x, y, mask = self.batches[self._i % len(self.batches)]
        self._i += 1
        with _autocast(self.device):
            loss, _, _, _ = self.tm(x, y, mask)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.tm.parameters(), self.cfg.optim.grad_clip)
        self.opt.step()

    def head_step(self, projection_only: bool = False) -> Callable[[], None]:
        """Forward + backward of the Seq-VCR head alone (projection + loss) on a random (B, T, n_embd);
        with ``projection_only`` of the linear projection alone (to split the head's time)."""
        head = self.tm.seqvcr
        assert head is not None
        x, _, mask = self.batches[0]
        h = torch.randn(x.shape[0], x.shape[1], self.model.config.n_embd, device=self.device)

        def run() -> None:
            z = h.detach().requires_grad_()  # (B, T, n_embd)
            with _autocast(self.device):
                loss = head.projection(z).float().sum() if projection_only else head(z, mask).loss
            loss.backward()

        return run


def bench_b(s: Settings) -> dict[str, Any]:
    """(b): step time with and without Seq-VCR for the tiny preset and gpt2-small."""
    cases = ["tiny"] if s.quick else ["tiny", "gpt2-small"]
    out: dict[str, Any] = {"cases": {}}
    if s.quick:
        out["skipped_cases"] = {"gpt2-small": "skipped: --quick"}
    for case in cases:
        s.log(f"(b) {case}: building models")
        with_sv = TrainStep(case, "seqvcr_pause", s.device, compile_model=s.compile)
        without = TrainStep(case, "pause", s.device, compile_model=s.compile)
        # gpt2-small on a CPU takes seconds per step: fewer, still interleaved, repeats
        slow = case == "gpt2-small" and not s.cuda
        if slow:
            warm, reps, block = 1, 5, 1
        elif s.quick:
            warm, reps, block = s.warmup, s.repeats, 1
        else:  # blocks of 5 steps, 2 x repeats (at least 10) blocks each: steps are cheap here
            warm, reps, block = s.warmup + 1, max(2 * s.repeats, 10), 5

        def blocked(ts: TrainStep, k: int) -> Callable[[], None]:
            def run() -> None:
                for _ in range(k):
                    ts.step()

            return run

        with _tf32(s.cuda):
            times = measure_interleaved(
                {"with": blocked(with_sv, block), "without": blocked(without, block)}, s.device, warm, reps
            )
            parts = measure_interleaved(
                {"head": with_sv.head_step(), "projection": with_sv.head_step(projection_only=True)},
                s.device, warm, reps,
            )
        t_with = statistics.median(times["with"]) / block
        t_without = statistics.median(times["without"]) / block
        t_head = statistics.median(parts["head"])
        t_proj = statistics.median(parts["projection"])
        cfg = with_sv.cfg
        n_embd, proj = with_sv.model.config.n_embd, cfg.seqvcr.proj_dim
        model_flops = with_sv.model.flops_per_token(with_sv.seq_len)
        head_flops = 6 * n_embd * proj  # projection forward + backward, per token
        overhead = t_with / t_without - 1.0
        s.log(f"(b) {case}: {_ms(t_without)} -> {_ms(t_with)} ms per step, overhead {overhead:+.1%}")
        out["cases"][case] = {
            "setting": {
                "task": with_sv.cfg.task.name + f" {cfg.task.digits}x{cfg.task.digits}",
                "batch": with_sv.batch_size,
                "seq_len": with_sv.seq_len,
                "n_layer": cfg.model.n_layer,
                "n_embd": n_embd,
                "proj_dim": proj,
                "params": with_sv.model.num_params(),
                "precision": "bf16 autocast" if s.cuda else "fp32",
                "compile": s.compile,
                "steps_per_timing": block,
            },
            "with_seqvcr_s": t_with,
            "without_seqvcr_s": t_without,
            "with_seqvcr": _stats([t / block for t in times["with"]]),
            "without_seqvcr": _stats([t / block for t in times["without"]]),
            "overhead": overhead,
            "seqvcr_head_fwd_bwd_s": t_head,
            "seqvcr_head_share_of_step": t_head / t_with,
            "projection_fwd_bwd_s": t_proj,
            "seqvcr_loss_fwd_bwd_s": max(t_head - t_proj, 0.0),
            "projection_flops_share": head_flops / model_flops,
            "tokens_per_s_with": with_sv.tokens_per_step / t_with,
        }
        del with_sv, without
        if s.cuda:
            torch.cuda.empty_cache()
    return out


def bench_c(s: Settings) -> dict[str, Any]:
    """(c): tokens/s and MFU of gpt2-small training on the GPU at the batch with the most tokens/s."""
    if not s.cuda:
        return {"skipped": "no GPU"}
    name = torch.cuda.get_device_name(s.device)
    peak = s.peak_tflops or peak_bf16_tflops(name)
    candidates = [s.mfu_batch] if s.mfu_batch else ([64, 128] if s.quick else [128, 256, 512, 1024, 2048])
    tried: dict[int, Any] = {}
    best: tuple[float, int] | None = None
    with _tf32(True):
        for bs in candidates:
            try:
                ts = TrainStep("gpt2-small", "seqvcr_pause", s.device, batch_size=bs)
                torch.cuda.reset_peak_memory_stats(s.device)
                t = statistics.median(measure(ts.step, s.device, 3, 5 if s.quick else 10))
            except torch.cuda.OutOfMemoryError:
                tried[bs] = "out of memory"
                ts = None  # type: ignore[assignment]
                torch.cuda.empty_cache()
                break
            tok_s = ts.tokens_per_step / t
            tried[bs] = {"step_s": t, "tokens_per_s": tok_s,
                         "max_memory_gib": torch.cuda.max_memory_allocated(s.device) / 2**30}
            s.log(f"(c) batch {bs}: {tok_s:,.0f} tokens/s")
            if best is None or tok_s > best[0]:
                best = (tok_s, bs)
            del ts
            torch.cuda.empty_cache()
        if best is None:
            raise SeqVCRError("bench (c): even the smallest batch does not fit on the GPU")
        bs = best[1]
        result_step = TrainStep(
            "gpt2-small", "seqvcr_pause", s.device, batch_size=bs, compile_model=s.compile
        )
        times = measure(result_step.step, s.device, 5 if s.compile else 3, 5 if s.quick else 20)
    t = statistics.median(times)
    tok_s = result_step.tokens_per_step / t
    fpt = result_step.model.flops_per_token(result_step.seq_len)
    mfu = fpt * tok_s / (peak * 1e12) if peak else None
    return {
        "gpu": name,
        "peak_bf16_tflops": peak,
        "peak_source": "--peak-tflops" if s.peak_tflops else ("PEAK_BF16_TFLOPS table" if peak else None),
        "batch": bs,
        "seq_len": result_step.seq_len,
        "compile": s.compile,
        "batches_tried": {str(k): v for k, v in tried.items()},
        "step": _stats(times),
        "tokens_per_s": tok_s,
        "flops_per_token": fpt,
        "achieved_tflops": fpt * tok_s / 1e12,
        "mfu": mfu,
        "note": "tokens = batch x padded length (all computed); FLOPs = 6N + 12LHQT of the GPT only "
                "(the Seq-VCR projection, about 2% more, is not counted)",
    }


# ----------------------------------------------------------------------------------------------------
# (d) evaluation


@torch.no_grad()
def naive_generate(model: Any, prompt: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding without a cache: one full forward pass over the whole prefix per new token.

    prompt: (B, P). Returns (B, max_new_tokens)."""
    seq = prompt  # (B, P + k)
    out = []
    for step in range(max_new_tokens):
        token = model(seq).logits[:, -1, :].argmax(-1)  # (B,)
        out.append(token)
        if step < max_new_tokens - 1:
            seq = torch.cat([seq, token[:, None]], dim=1)
    return torch.stack(out, dim=1)  # (B, max_new_tokens)


def _eval_case(s: Settings, preset: str, digits: int, n: int) -> dict[str, Any]:
    from seqvcr import config as C
    from seqvcr.datafiles import resolve_data_path
    from seqvcr.evaluation import evaluate
    from seqvcr.runs import build_format, build_model, build_task
    from seqvcr.sequences import encode_examples
    from seqvcr.tasks import read_examples

    cfg = C.resolve(C.from_dict({
        "task": {"name": "mult", "digits": digits},
        "model": dict(CASES["tiny"]["model"]) if preset == "tiny" else {"preset": preset},
        "method": {"name": "seqvcr_pause", "pauses": 2},
    }))
    task = build_task(cfg)
    fmt = build_format(cfg, task)
    examples = read_examples(task, resolve_data_path(f"ref:mult/{digits}x{digits}/valid.txt"))[:n]
    data = encode_examples(fmt, examples).to(s.device)
    torch.manual_seed(0)
    model = build_model(cfg, fmt.tokenizer.vocab_size, data.max_length).to(s.device).eval()
    p = int(data.prompt_lengths[0])
    if not bool((data.prompt_lengths == p).all()):
        raise SeqVCRError("bench (d): expected prompts of one length")
    new = int((data.lengths - data.prompt_lengths).max())  # answer digits + eos
    batch = 256
    prompts = [data.ids[i : i + batch, :p] for i in range(0, len(data), batch)]  # each (b, P)
    outputs: dict[str, list[torch.Tensor]] = {}

    def cached() -> None:
        with _autocast(s.device):
            outputs["cache"] = [model.generate(q, new) for q in prompts]

    def naive() -> None:
        with _autocast(s.device):
            outputs["naive"] = [naive_generate(model, q, new) for q in prompts]

    slow = preset == "gpt2-small" and not s.cuda
    warm, reps = (0, 1) if slow else (1, s.repeats if s.quick else 3)
    with _tf32(s.cuda):
        times = measure_interleaved({"kv_cache": cached, "naive": naive}, s.device, warm, reps)
        t_eval = measure(
            lambda: evaluate(model, fmt, data, batch_size=batch), s.device, 0, 1 if slow else reps
        )
    same = [(a == b).flatten() for a, b in zip(outputs["cache"], outputs["naive"])]
    agree = float(torch.cat(same).float().mean())  # fraction of identical tokens
    t_cache, t_naive = statistics.median(times["kv_cache"]), statistics.median(times["naive"])
    s.log(f"(d) {preset} {digits}x{digits}: {n / t_cache:,.1f} ex/s with cache, {n / t_naive:,.1f} naive")
    return {
        "model": preset,
        "task": f"mult {digits}x{digits}",
        "examples": len(data),
        "batch": batch,
        "prompt_len": p,
        "new_tokens": new,
        "precision": "bf16 autocast" if s.cuda else "fp32",
        "kv_cache": {**_stats(times["kv_cache"]), "examples_per_s": len(data) / t_cache},
        "naive": {**_stats(times["naive"]), "examples_per_s": len(data) / t_naive},
        "speedup": t_naive / t_cache,
        "token_agreement": agree,
        "evaluate_examples_per_s": len(data) / statistics.median(t_eval),
        "note": "untrained weights and a fixed number of new tokens (no stop at <eos>) for both decoders",
    }


def bench_d(s: Settings) -> dict[str, Any]:
    """(d): greedy decoding throughput, KV cache vs naive."""
    cases = {"tiny 3x3": _eval_case(s, "tiny", 3, 128 if s.quick else 1000)}
    if s.full:
        cases["gpt2-small 5x5"] = _eval_case(s, "gpt2-small", 5, 1000 if s.cuda else 64)
    return {"cases": cases}


# ----------------------------------------------------------------------------------------------------
# (e) entropy


def bench_e(s: Settings) -> dict[str, Any]:
    """(e): forward with every hidden state + matrix entropy of each layer for each sequence."""
    from seqvcr import config as C
    from seqvcr.entropy import matrix_entropy
    from seqvcr.runs import build_format, build_model, build_task
    from seqvcr.sequences import encode_examples

    preset, digits, n = ("tiny", 3, 200) if s.quick else ("gpt2-small", 5, 1000)
    model_cfg = dict(CASES["tiny"]["model"]) if preset == "tiny" else {"preset": preset}
    cfg = C.resolve(C.from_dict({
        "task": {"name": "mult", "digits": digits},
        "model": model_cfg,
        "method": {"name": "seqvcr_pause", "pauses": 2},
    }))
    task = build_task(cfg)
    fmt = build_format(cfg, task)
    data = encode_examples(fmt, task.generate(n, seed=3)).to(s.device)  # (n, L)
    torch.manual_seed(0)
    model = build_model(cfg, fmt.tokenizer.vocab_size, data.max_length).to(s.device).eval()
    batch = 1000 if s.cuda else 250
    lengths = data.lengths.tolist()
    timing = {"forward_s": 0.0, "entropy_s": 0.0}
    means: list[torch.Tensor] = []

    @torch.no_grad()
    def run_all() -> None:
        timing["forward_s"] = timing["entropy_s"] = 0.0
        sums = None
        for start in range(0, n, batch):
            x = data.ids[start : start + batch]  # (b, L)
            t0 = _clock()
            with _autocast(s.device):
                hidden = model(x, output_hidden_states=True).hidden_states  # n_layer+1 of (b, L, C)
            _sync(s.device)
            t1 = _clock()
            h = torch.stack([t.float() for t in hidden])  # (n_layer+1, b, L, C)
            ent = torch.empty(h.shape[0], h.shape[1], dtype=torch.float64, device=s.device)  # (layers, b)
            rows = torch.tensor(lengths[start : start + batch], device=s.device)  # (b,)
            for length in sorted(set(rows.tolist())):  # one batched call per sequence length
                sel = (rows == length).nonzero().squeeze(1)
                ent[:, sel] = matrix_entropy(h[:, sel, :length], alpha=1.0, normalize=True)
            _sync(s.device)
            t2 = _clock()
            timing["forward_s"] += t1 - t0
            timing["entropy_s"] += t2 - t1
            sums = ent.sum(1) if sums is None else sums + ent.sum(1)
        means[:] = [sums / n]

    with _tf32(s.cuda):
        # warm-up on one batch, then full passes (one on a CPU at the full size: it takes minutes)
        slow = not s.cuda and not s.quick
        reps = 1 if slow else (2 if s.quick else 3)
        with torch.no_grad(), _autocast(s.device):
            model(data.ids[: min(batch, 8)], output_hidden_states=True)
        runs = []
        for _ in range(reps):
            total = _timed(run_all, s.device)
            runs.append({"total_s": total, **timing})
    best = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]  # the median run
    s.log(f"(e) {preset}: {n} sequences, {best['total_s']:.2f} s (entropy {best['entropy_s']:.2f} s)")
    return {
        "model": preset,
        "layers": model.config.n_layer + 1,
        "sequences": n,
        "seq_len": data.max_length,
        "batch": batch,
        "precision": "bf16 autocast forward, float64 entropy" if s.cuda else "fp32 forward, float64 entropy",
        "runs": len(runs),
        "total_s": best["total_s"],
        "forward_s": best["forward_s"],
        "entropy_s": best["entropy_s"],
        "mean_normalized_entropy_per_layer": [round(float(v), 4) for v in means[0]],
    }


# ----------------------------------------------------------------------------------------------------
# targets, report


def _target(tid: str, what: str, setting: str, measured: float | None, unit: str, required: str,
            passed: bool | None, status: str | None = None) -> dict[str, Any]:
    if status is None:
        status = "pass" if passed else "FAIL"
    return {"id": tid, "target": what, "setting": setting, "measured": measured, "unit": unit,
            "required": required, "status": status}


def evaluate_targets(results: dict[str, Any], s: Settings) -> list[dict[str, Any]]:
    """Each target of the issue with the measured ratio and pass / FAIL (or why it was not measured)."""
    out: list[dict[str, Any]] = []
    a = results.get("a")
    if a is not None and "error" not in a:
        setting = "N={N} T={T} d={d}".format(**a["shape"])
        status = None if a["paper_size"] else "n/a (quick: not the paper size)"
        if not a["values_match"]:
            status = "FAIL (values differ)"
        out.append(_target("a", "Seq-VCR loss fwd+bwd vs per-position d x d", setting, a["ratio"], "x",
                           ">= 20", a["ratio"] >= 20, status))
    b = results.get("b")
    if b is not None and "error" not in b:
        for case in ("tiny", "gpt2-small"):
            where = "GPU" if s.cuda else "CPU"
            limit = 0.05 if s.cuda else 0.15
            r = b["cases"].get(case)
            if r is None:
                out.append(_target(f"b-{where.lower()}-{case}", f"Seq-VCR step overhead, {case}, {where}",
                                   "", None, "", f"<= {limit:.0%}", None, "not measured (--quick)"))
                continue
            st = r["setting"]
            setting = f"batch {st['batch']}, T {st['seq_len']}, proj {st['proj_dim']}, {st['precision']}"
            status = "n/a (quick)" if s.quick else None
            out.append(_target(f"b-{where.lower()}-{case}", f"Seq-VCR step overhead, {case}, {where}",
                               setting, r["overhead"], "ratio", f"<= {limit:.0%}", r["overhead"] <= limit,
                               status))
        if not s.cuda:
            for case in ("tiny", "gpt2-small"):
                out.append(_target(f"b-gpu-{case}", f"Seq-VCR step overhead, {case}, GPU", "", None, "",
                                   "<= 5%", None, "not measured (no GPU)"))
    c = results.get("c")
    if c is not None and "error" not in c:
        if "skipped" in c:
            out.append(_target("c", "MFU, gpt2-small training, H100", "", None, "", ">= 40%", None,
                               f"not measured ({c['skipped']})"))
        else:
            is_h100 = "h100" in c["gpu"].lower()
            status = None if is_h100 and c["mfu"] is not None else f"n/a ({c['gpu']} is not an H100)"
            if c["mfu"] is None:
                status = "not measured (unknown peak: pass --peak-tflops)"
            setting = f"{c['gpu']}, batch {c['batch']}, T {c['seq_len']}, compile {c['compile']}"
            out.append(_target("c", "MFU, gpt2-small training, H100", setting, c["mfu"], "fraction", ">= 40%",
                               c["mfu"] is not None and c["mfu"] >= 0.40, status))
    return out


def _fmt_measured(t: dict[str, Any]) -> str:
    m = t["measured"]
    if m is None:
        return "-"
    if t["unit"] == "x":
        return f"{m:.1f}x"
    if t["unit"] in ("ratio", "fraction"):
        return f"{m:+.1%}" if t["unit"] == "ratio" else f"{m:.1%}"
    return f"{m:.4g}"


def _ms(x: float) -> str:
    return f"{x * 1e3:,.1f}"


_CLOCK_TEXT = {"wall": "wall-clock time", "cpu": "CPU time of the benchmark process (time.process_time)"}


def render_markdown(report: dict[str, Any]) -> str:
    """bench.md: machine, command, the targets table, then one table per benchmark."""
    r = report["results"]
    lines = [
        "# seqvcr bench",
        "",
        f"- Machine: {report['machine_description']}",
        f"- Device: {report['device']}"
        + ("" if report["gpu"] else " (no GPU available for this measurement)"),
        f"- Load average (1 min) at start / end: {report['load_average'][0]} / {report['load_average'][1]}",
        f"- Command: `{report['command']}`",
        f"- Timing: {_CLOCK_TEXT[report['settings']['clock']]}, {report['settings']['threads']} torch "
        "thread(s); medians of repeated runs after warm-up, compared implementations alternated",
        f"- Date: {report['started']}, {report['seconds']:.0f} s in all"
        + (" -- QUICK MODE: reduced sizes, not the targets' settings" if report["quick"] else ""),
        "",
        "## Targets (ratios measured in this run)",
        "",
        "| target | setting | measured | required | result |",
        "|---|---|---|---|---|",
    ]
    for t in report["targets"]:
        lines.append(f"| {t['id']}: {t['target']} | {t['setting'] or '-'} | {_fmt_measured(t)} | "
                     f"{t['required']} | {t['status']} |")
    for key, title in BENCHMARKS.items():
        if key not in r:
            continue
        res = r[key]
        lines += ["", f"## ({key}) {title}", ""]
        if "error" in res:
            lines.append(f"error: {res['error']}")
            continue
        if "skipped" in res:
            lines.append(f"skipped: {res['skipped']}")
            continue
        if key == "a":
            sh = res["shape"]
            lines += [f"N={sh['N']}, T={sh['T']}, d={sh['d']}, {res['dtype']}, forward + backward; "
                      f"values match: {res['values_match']} (relative difference "
                      f"{res['rel_value_diff']:.1e}, gradients {res['rel_grad_diff']:.1e})", "",
                      "| implementation | median ms | min ms | loss | ratio to ours |",
                      "|---|---|---|---|---|"]
            ours = next(iter(res["implementations"].values()))["median_s"]
            for name, v in res["implementations"].items():
                lines.append(f"| {name} | {_ms(v['median_s'])} | {_ms(v['min_s'])} | {v['loss']:.6f} | "
                             f"{v['median_s'] / ours:.1f}x |")
        elif key == "b":
            lines += ["| case | setting | without Seq-VCR ms | with Seq-VCR ms | overhead | head fwd+bwd ms "
                      "(projection + loss) | projection FLOP share |", "|---|---|---|---|---|---|---|"]
            for case, v in res["cases"].items():
                st = v["setting"]
                setting = (f"mult, batch {st['batch']}, T {st['seq_len']}, {st['n_layer']}x{st['n_embd']}, "
                           f"proj {st['proj_dim']}, {st['precision']}")
                lines.append(f"| {case} | {setting} | {_ms(v['without_seqvcr_s'])} | "
                             f"{_ms(v['with_seqvcr_s'])} | {v['overhead']:+.1%} | "
                             f"{_ms(v['seqvcr_head_fwd_bwd_s'])} ({_ms(v['projection_fwd_bwd_s'])} + "
                             f"{_ms(v['seqvcr_loss_fwd_bwd_s'])}) | {v['projection_flops_share']:.1%} |")
            for case, why in res.get("skipped_cases", {}).items():
                lines.append(f"| {case} | {why} | - | - | - | - | - |")
        elif key == "c":
            lines += ["| GPU | batch | T | compile | tokens/s | achieved TFLOP/s | peak TFLOP/s | MFU |",
                      "|---|---|---|---|---|---|---|---|",
                      f"| {res['gpu']} | {res['batch']} | {res['seq_len']} | {res['compile']} | "
                      f"{res['tokens_per_s']:,.0f} | {res['achieved_tflops']:.1f} | "
                      f"{res['peak_bf16_tflops']} | "
                      + (f"{res['mfu']:.1%} |" if res["mfu"] is not None else "- |"), "", res["note"]]
        elif key == "d":
            lines += ["| case | examples | new tokens | KV cache ex/s | naive ex/s | speed-up "
                      "| evaluate() ex/s |", "|---|---|---|---|---|---|---|"]
            for case, v in res["cases"].items():
                lines.append(f"| {case} ({v['precision']}) | {v['examples']} | {v['new_tokens']} | "
                             f"{v['kv_cache']['examples_per_s']:,.1f} | "
                             f"{v['naive']['examples_per_s']:,.1f} | {v['speedup']:.1f}x | "
                             f"{v['evaluate_examples_per_s']:,.1f} |")
        elif key == "e":
            lines += ["| model | layers | sequences | T | batch | forward s | entropy s | total s |",
                      "|---|---|---|---|---|---|---|---|",
                      f"| {res['model']} | {res['layers']} | {res['sequences']} | {res['seq_len']} | "
                      f"{res['batch']} | {res['forward_s']:.2f} | {res['entropy_s']:.2f} | "
                      f"{res['total_s']:.2f} |"]
    return "\n".join(lines) + "\n"


@contextmanager
def _use_clock(name: str) -> Iterator[None]:
    global _clock
    old = _clock
    _clock = _CLOCKS[name]
    try:
        yield
    finally:
        _clock = old


def run_benchmarks(s: Settings, command: str) -> dict[str, Any]:
    """Run the selected benchmarks and return the report (the content of bench.json)."""
    from seqvcr.runs import describe_machine, machine_info

    if s.clock not in _CLOCKS:
        raise ConfigError(f"--clock: {s.clock!r} is not one of {', '.join(_CLOCKS)}")
    if s.clock == "cpu" and s.cuda:
        raise ConfigError("--clock cpu: CPU time does not measure GPU work; use --clock wall on a GPU")

    started = datetime.now(UTC).isoformat(timespec="seconds")
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    funcs = {"a": bench_a, "b": bench_b, "c": bench_c, "d": bench_d, "e": bench_e}
    results: dict[str, Any] = {}
    for key in s.only:
        s.log(f"({key}) {BENCHMARKS[key]}")
        tb = time.perf_counter()
        with _use_clock(s.clock):
            results[key] = funcs[key](s)
        results[key]["bench_seconds"] = time.perf_counter() - tb  # wall time, for the record
        s.done()
    info = machine_info(s.device)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report: dict[str, Any] = {
        "schema": "seqvcr-bench/1",
        "command": command,
        "started": started,
        "seconds": time.perf_counter() - t0,
        "quick": s.quick,
        "full": s.full,
        "device": str(s.device),
        "gpu": info.get("gpu"),
        "machine": info,
        "machine_description": describe_machine(info),
        "load_average": [None if v is None else round(v, 2) for v in (load0, load1)],
        "settings": {"warmup": s.warmup, "repeats": s.repeats, "compile": s.compile, "only": list(s.only),
                     "clock": s.clock, "threads": torch.get_num_threads()},
        "results": results,
    }
    report["targets"] = evaluate_targets(results, s)
    return report


# ----------------------------------------------------------------------------------------------------
# command line


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the ``seqvcr`` command."""
    p = subparsers.add_parser(
        "bench",
        help="benchmarks: Seq-VCR loss, training-step overhead, GPU MFU, decoding, entropy (JSON + Markdown)",
        description="Run the benchmarks (a) Seq-VCR loss vs per-position d x d covariance, (b) training "
        "step with / without Seq-VCR, (c) GPU tokens/s and MFU, (d) decoding with / without KV cache, "
        "(e) entropy of every layer; write OUT/bench.json and OUT/bench.md with the machine stated.",
    )
    p.add_argument("--out", default="bench_out", help="output directory")
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (seconds; for tests)")
    p.add_argument("--full", action="store_true", help="also gpt2-small on 5x5 in (d)")
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of a,b,c,d,e")
    p.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda | cuda:N")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in (b) and (c)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice); 1 is steadier on a busy machine")
    p.add_argument("--clock", choices=tuple(_CLOCKS), default="wall",
                   help="wall or cpu: CPU time of this process, steady on a shared machine "
                   "(CPU runs; with --threads 1 it is the compute time)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7, --quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up runs (default 2, --quick 1)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="(c) the GPU's dense bf16 peak, for GPUs not in the built-in table")
    p.add_argument("--mfu-batch", type=int, default=None, help="(c) use this batch instead of searching")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines")
    p.set_defaults(func=_cmd_bench)


def parse_only(text: str) -> tuple[str, ...]:
    """'a,b,d' -> ('a', 'b', 'd') in canonical order; ConfigError for unknown ids."""
    wanted = [w.strip().lower() for w in text.split(",") if w.strip()]
    unknown = sorted(set(wanted) - set(BENCHMARKS))
    if unknown or not wanted:
        raise ConfigError(f"--only: unknown benchmark(s) {', '.join(unknown) or '(none)'}; allowed: "
                          f"{', '.join(BENCHMARKS)}")
    return tuple(k for k in BENCHMARKS if k in wanted)


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (canonical form: every option spelled out)."""
    parts = ["seqvcr", "bench", "--out", args.out, "--only", ",".join(parse_only(args.only)),
             "--device", args.device]
    for flag in ("quick", "full", "compile"):
        if getattr(args, flag):
            parts.append(f"--{flag}")
    if args.clock != "wall":
        parts += ["--clock", args.clock]
    for name in ("threads", "repeats", "warmup", "peak_tflops", "mfu_batch"):
        value = getattr(args, name)
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def _cmd_bench(args: argparse.Namespace) -> int:
    for name in ("repeats", "warmup"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "repeats" else 0):
            raise ConfigError(f"--{name}: must be >= {1 if name == 'repeats' else 0}, got {value}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: must be >= 1, got {args.threads}")
    threads = torch.get_num_threads()
    try:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        return _bench(args)
    finally:
        torch.set_num_threads(threads)  # an in-process caller keeps its setting


def _bench(args: argparse.Namespace) -> int:
    from seqvcr.atomic import write_json_atomic, write_text_atomic
    from seqvcr.runs import select_device

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} exists and is not a directory")
    device = select_device(args.device)
    if device.type == "cuda" and device.index is None:  # "cuda" -> the current device, explicitly
        device = torch.device("cuda", torch.cuda.current_device())
    from seqvcr.progress import ProgressBar

    only = parse_only(args.only)
    bar = ProgressBar(len(only), "bench", unit="benchmarks", enabled=not args.quiet, plain=False)
    s = Settings(
        device=device,
        only=only,
        quick=args.quick,
        full=args.full,
        compile=args.compile,
        warmup=args.warmup if args.warmup is not None else (1 if args.quick else 2),
        repeats=args.repeats if args.repeats is not None else (2 if args.quick else 7),
        peak_tflops=args.peak_tflops,
        mfu_batch=args.mfu_batch,
        clock=args.clock,
        log=lambda msg: bar.write(f"bench: {msg}"),
        done=bar.update,
    )
    command = _command(args)
    with bar:
        report = run_benchmarks(s, command)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "bench.json", report)
    write_text_atomic(out / "bench.md", render_markdown(report))
    targets = {t["id"]: [t["measured"], t["status"]] for t in report["targets"]}
    print(json.dumps({"out": str(out), "targets": targets}))
    a = report["results"].get("a")
    if a is not None and not a["values_match"]:
        raise SeqVCRError(
            f"bench (a): the two Seq-VCR forms differ (relative {a['rel_value_diff']:.1e} > 1e-4); "
            f"see {out / 'bench.json'}"
        )
    return 0
