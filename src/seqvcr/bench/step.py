"""(b) One full training step of ``seqvcr.training`` with Seq-VCR (method ``seqvcr_pause``) and without
it (``pause``, the same sequences), for the tiny preset and gpt2-small (:data:`CASES`). Overhead =
t_with / t_without - 1; targets <= 15% on CPU, <= 5% on GPU. The Seq-VCR head's own time and FLOP share
are reported to explain the overhead. :class:`TrainStep` is also what (c) times.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch

from seqvcr import config as C
from seqvcr.bench.harness import MODELS, Settings, autocast, measure_interleaved, ms, stats, target, tf32
from seqvcr.objectives import SeqVCR
from seqvcr.reporting.tables import markdown_table
from seqvcr.runs import build_format, build_model, build_task
from seqvcr.sequences import encode_examples, make_batch
from seqvcr.terms import build_train_module
from seqvcr.training import build_optimizer

__all__ = ["CASES", "TITLE", "TrainStep", "markdown", "run", "targets"]

TITLE = "training step with vs without Seq-VCR"

# tiny mirrors configs/tiny_cpu.yaml (3x3); gpt2-small is the paper's multiplication run (5x5).
CASES: dict[str, dict[str, Any]] = {
    "tiny": {
        "task": {"name": "mult", "digits": 3},
        "model": MODELS["tiny"],
        "seqvcr": {"proj_dim": 256},
        "optim": {"batch_size": 64, "lr": 1e-3, "weight_decay": 0.01},
    },
    "gpt2-small": {
        "task": {"name": "mult", "digits": 5},
        "model": MODELS["gpt2-small"],
        "seqvcr": {"proj_dim": 2048},
        "optim": {"batch_size": 32, "lr": 5e-4, "weight_decay": 0.01},
    },
}


class TrainStep:
    """One configured training step, exactly as ``seqvcr.training`` runs it (forward, LM + Seq-VCR loss,
    backward, gradient clipping, AdamW), cycling over four fixed batches kept on the device."""

    def __init__(self, case: str, method: str, device: torch.device, *, compile_model: bool = False,
                 batch_size: int | None = None, seed: int = 0) -> None:
        spec = json.loads(json.dumps(CASES[case]))  # deep copy
        spec["method"] = {"name": method, "pauses": 2}  # seqvcr_pause or pause
        spec["train"] = {"device": str(device)}
        if batch_size is not None:
            spec["optim"]["batch_size"] = batch_size
        self.cfg = cfg = C.resolve(C.from_dict(spec))
        self.device = device
        bs = cfg.optim.batch_size
        task = build_task(cfg)
        fmt = build_format(cfg, task)
        examples = task.generate(max(4 * bs, 256), seed=seed + 1)
        data = encode_examples(fmt, examples).to(device)  # (M, L) on the device
        torch.manual_seed(seed)
        self.model = model = build_model(cfg, fmt.tokenizer.vocab_size, data.max_length).to(device)
        self.tm = build_train_module(cfg, model, fmt, examples, device)
        self.tm.train()
        if compile_model:
            self.tm.model = torch.compile(model, dynamic=False)  # type: ignore[assignment]
        self.opt = build_optimizer(self.tm, cfg, device)
        g = torch.Generator().manual_seed(seed)
        rows = [torch.randperm(len(data), generator=g)[:bs].to(device) for _ in range(4)]  # (B,) each
        self.batches = [(*make_batch(data, r), r) for r in rows]  # each (x, y, mask (B, T), rows (B,))
        self.seq_len = int(self.batches[0][0].shape[1])
        self.batch_size = bs
        self.tokens_per_step = bs * self.seq_len  # every position is computed (padded or not)
        self._i = 0

    def step(self) -> None:
        x, y, mask, rows = self.batches[self._i % len(self.batches)]
        self._i += 1
        with autocast(self.device):
            loss, _ = self.tm(x, y, mask, rows)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.tm.parameters(), self.cfg.optim.grad_clip)
        self.opt.step()

    def head_step(self, projection_only: bool = False) -> Callable[[], None]:
        """Forward + backward of the Seq-VCR head alone (projection + loss) on a random (B, T, n_embd);
        with ``projection_only`` of the linear projection alone (to split the head's time)."""
        head = self.tm.heads()["seqvcr"]
        assert isinstance(head, SeqVCR)
        x, _, mask, _ = self.batches[0]
        h = torch.randn(x.shape[0], x.shape[1], self.model.config.n_embd, device=self.device)

        def run() -> None:
            z = h.detach().requires_grad_()  # (B, T, n_embd)
            with autocast(self.device):
                loss = head.projection(z).float().sum() if projection_only else head(z, mask).loss
            loss.backward()

        return run


def run(s: Settings) -> dict[str, Any]:
    """Step time with and without Seq-VCR for the tiny preset and gpt2-small."""
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
        with tf32(s.cuda):
            times = measure_interleaved(s, {"with": with_sv.step, "without": without.step}, warm, reps, block)
            heads = {"head": with_sv.head_step(), "projection": with_sv.head_step(projection_only=True)}
            parts = measure_interleaved(s, heads, warm, reps)
        t_with, t_without = times["with"].median, times["without"].median  # per step
        t_head, t_proj = parts["head"].median, parts["projection"].median
        cfg = with_sv.cfg
        n_embd, proj = with_sv.model.config.n_embd, cfg.seqvcr.proj_dim
        model_flops = with_sv.model.flops_per_token(with_sv.seq_len)
        head_flops = 6 * n_embd * proj  # projection forward + backward, per token
        overhead = t_with / t_without - 1.0
        s.log(f"(b) {case}: {ms(t_without)} -> {ms(t_with)} ms per step, overhead {overhead:+.1%}")
        out["cases"][case] = {
            "setting": {
                "task": with_sv.cfg.task.name + f" {cfg.task.digits}x{cfg.task.digits}",
                "batch": with_sv.batch_size,
                "seq_len": with_sv.seq_len,
                "n_layer": cfg.model.n_layer,
                "n_embd": n_embd,
                "proj_dim": proj,
                "params": with_sv.model.num_params(),
                "precision": s.precision,
                "compile": s.compile,
                "steps_per_timing": block,
            },
            "with_seqvcr_s": t_with,
            "without_seqvcr_s": t_without,
            "with_seqvcr": stats(times["with"]),
            "without_seqvcr": stats(times["without"]),
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


def targets(res: dict[str, Any], s: Settings) -> list[dict[str, Any]]:
    """The overhead of each case on this device (<= 15% on CPU, <= 5% on GPU); on a CPU the GPU targets
    are listed as not measured."""
    out: list[dict[str, Any]] = []
    here = "GPU" if s.cuda else "CPU"
    for where in dict.fromkeys([here, "GPU"]):
        limit = 0.05 if where == "GPU" else 0.15
        for case in ("tiny", "gpt2-small"):
            tid, what = f"b-{where.lower()}-{case}", f"Seq-VCR step overhead, {case}, {where}"
            r = res["cases"].get(case) if where == here else None
            if r is None:
                why = "not measured (--quick)" if where == here else "not measured (no GPU)"
                out.append(target(tid, what, "", None, "", f"<= {limit:.0%}", None, why))
                continue
            st = r["setting"]
            setting = f"batch {st['batch']}, T {st['seq_len']}, proj {st['proj_dim']}, {st['precision']}"
            out.append(target(tid, what, setting, r["overhead"], "ratio", f"<= {limit:.0%}",
                              r["overhead"] <= limit, "n/a (quick)" if s.quick else None))
    return out


def markdown(res: dict[str, Any]) -> list[str]:
    """The section of bench.md: one row per case."""
    header = ["case", "setting", "without Seq-VCR ms", "with Seq-VCR ms", "overhead",
              "head fwd+bwd ms (projection + loss)", "projection FLOP share"]
    rows = []
    for case, v in res["cases"].items():
        st = v["setting"]
        setting = (f"mult, batch {st['batch']}, T {st['seq_len']}, {st['n_layer']}x{st['n_embd']}, "
                   f"proj {st['proj_dim']}, {st['precision']}")
        head = (f"{ms(v['seqvcr_head_fwd_bwd_s'])} ({ms(v['projection_fwd_bwd_s'])} + "
                f"{ms(v['seqvcr_loss_fwd_bwd_s'])})")
        rows.append([case, setting, ms(v["without_seqvcr_s"]), ms(v["with_seqvcr_s"]),
                     f"{v['overhead']:+.1%}", head, f"{v['projection_flops_share']:.1%}"])
    rows += [[case, why, "-", "-", "-", "-", "-"] for case, why in res.get("skipped_cases", {}).items()]
    return [markdown_table(header, rows)]
