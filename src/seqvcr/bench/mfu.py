"""(c) GPU only: training tokens/s of gpt2-small (Seq-VCR + pause, bf16 autocast, TF32, optional
torch.compile) at the batch with the most tokens/s, and MFU = ``GPT.flops_per_token`` * tokens/s / the
device's dense bf16 peak. Target: >= 40% on an H100. On a CPU it is recorded as skipped, never estimated.
"""

from __future__ import annotations

from typing import Any

import torch

from seqvcr.bench.harness import Settings, measure, stats, target, tf32
from seqvcr.bench.step import TrainStep
from seqvcr.errors import SeqVCRError
from seqvcr.reporting.tables import markdown_table

__all__ = ["PEAK_BF16_TFLOPS", "TITLE", "markdown", "peak_bf16_tflops", "run", "targets"]

TITLE = "GPU training throughput and MFU"

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


def peak_bf16_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU from ``PEAK_BF16_TFLOPS``, or None when the name is not in the table."""
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in device_name.lower()), None)


def run(s: Settings) -> dict[str, Any]:
    """Tokens/s and MFU of gpt2-small training on the GPU at the batch with the most tokens/s."""
    if not s.cuda:
        return {"skipped": "no GPU"}
    name = torch.cuda.get_device_name(s.device)
    peak = s.peak_tflops or peak_bf16_tflops(name)
    candidates = [s.mfu_batch] if s.mfu_batch else ([64, 128] if s.quick else [128, 256, 512, 1024, 2048])
    tried: dict[int, Any] = {}
    with tf32(True):
        for bs in candidates:
            try:
                ts = TrainStep("gpt2-small", "seqvcr_pause", s.device, batch_size=bs)
                torch.cuda.reset_peak_memory_stats(s.device)
                t = measure(s, ts.step, 3, 5 if s.quick else 10).median
            except torch.cuda.OutOfMemoryError:
                tried[bs] = "out of memory"
                ts = None  # type: ignore[assignment]
                torch.cuda.empty_cache()
                break
            tok_s = ts.tokens_per_step / t
            tried[bs] = {"step_s": t, "tokens_per_s": tok_s,
                         "max_memory_gib": torch.cuda.max_memory_allocated(s.device) / 2**30}
            s.log(f"(c) batch {bs}: {tok_s:,.0f} tokens/s")
            del ts
            torch.cuda.empty_cache()
        fits = {b: r["tokens_per_s"] for b, r in tried.items() if isinstance(r, dict)}
        if not fits:
            raise SeqVCRError("bench (c): even the smallest batch does not fit on the GPU")
        bs = max(fits, key=fits.__getitem__)  # the first of the fastest
        best = TrainStep("gpt2-small", "seqvcr_pause", s.device, batch_size=bs, compile_model=s.compile)
        times = measure(s, best.step, 5 if s.compile else 3, 5 if s.quick else 20)
    t = times.median
    tok_s = best.tokens_per_step / t
    fpt = best.model.flops_per_token(best.seq_len)
    mfu = fpt * tok_s / (peak * 1e12) if peak else None
    return {
        "gpu": name,
        "peak_bf16_tflops": peak,
        "peak_source": "--peak-tflops" if s.peak_tflops else ("PEAK_BF16_TFLOPS table" if peak else None),
        "batch": bs,
        "seq_len": best.seq_len,
        "compile": s.compile,
        "batches_tried": {str(k): v for k, v in tried.items()},
        "step": stats(times),
        "tokens_per_s": tok_s,
        "flops_per_token": fpt,
        "achieved_tflops": fpt * tok_s / 1e12,
        "mfu": mfu,
        "note": "tokens = batch x padded length (all computed); FLOPs = 6N + 12LHQT of the GPT only "
                "(the Seq-VCR projection, about 2% more, is not counted)",
    }


def targets(res: dict[str, Any], s: Settings) -> list[dict[str, Any]]:
    """MFU >= 40% on an H100 (on any other GPU measured, but not judged)."""
    what = "MFU, gpt2-small training, H100"
    if "skipped" in res:
        return [target("c", what, "", None, "", ">= 40%", None, f"not measured ({res['skipped']})")]
    is_h100 = "h100" in res["gpu"].lower()
    status = None if is_h100 and res["mfu"] is not None else f"n/a ({res['gpu']} is not an H100)"
    if res["mfu"] is None:
        status = "not measured (unknown peak: pass --peak-tflops)"
    setting = f"{res['gpu']}, batch {res['batch']}, T {res['seq_len']}, compile {res['compile']}"
    return [target("c", what, setting, res["mfu"], "fraction", ">= 40%",
                   res["mfu"] is not None and res["mfu"] >= 0.40, status)]


def markdown(res: dict[str, Any]) -> list[str]:
    """The section of bench.md: the GPU, the batch, tokens/s and MFU."""
    header = ["GPU", "batch", "T", "compile", "tokens/s", "achieved TFLOP/s", "peak TFLOP/s", "MFU"]
    row = [res["gpu"], res["batch"], res["seq_len"], res["compile"], f"{res['tokens_per_s']:,.0f}",
           f"{res['achieved_tflops']:.1f}", res["peak_bf16_tflops"],
           f"{res['mfu']:.1%}" if res["mfu"] is not None else "-"]
    return [markdown_table(header, [row]), "", res["note"]]
