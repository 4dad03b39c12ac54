"""``seqvcr bench``: the report's schema, and its numbers against independent references (Eq. 3-4 from
``torch.cov``, Eq. 2 from NumPy, transformers' greedy decoding, a FLOP count of the real model). No speed
assertions: speed targets live in the benchmark output (docs/benchmarks.md), not in unit tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from oracles import counted_matmul_flops_per_token, entropy_reference, seq_vcr_reference

from seqvcr.bench import (
    BENCHMARKS,
    naive_generate,
    naive_seq_vcr_loss,
    parse_only,
    peak_bf16_tflops,
    render_markdown,
)
from seqvcr.bench.harness import Settings, untrained_model
from seqvcr.bench.step import TrainStep
from seqvcr.cli import main
from seqvcr.errors import ConfigError
from seqvcr.hf import save_hf_gpt2
from seqvcr.model import GPT, PRESETS, GPTConfig
from seqvcr.objectives import SeqVCR, seq_vcr_loss
from seqvcr.sequences import SequenceFormat
from seqvcr.tasks import make_task


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--quick", "--only", "a,b,c,d,e", "--device", "cpu", "--threads", "1",
                 "--clock", "cpu", "--out", str(out)])
    assert code == 0
    return out, json.loads((out / "bench.json").read_text())


@pytest.mark.slow
def test_quick_bench_writes_json_and_markdown(quick_report) -> None:
    out, rep = quick_report
    for key in ("schema", "command", "machine", "machine_description", "device", "results", "targets",
                "load_average", "started", "seconds"):
        assert key in rep, key
    assert rep["schema"] == "seqvcr-bench/1" and rep["quick"] is True
    assert rep["command"].startswith("seqvcr bench --out ") and "--quick" in rep["command"]
    assert rep["settings"]["clock"] == "cpu" and rep["settings"]["threads"] == 1
    assert set(rep["results"]) == set(BENCHMARKS)
    md = (out / "bench.md").read_text()
    assert rep["machine_description"] in md and rep["command"] in md
    assert md.count("\n## ") == 1 + len(BENCHMARKS)  # targets + one section per benchmark


@pytest.mark.slow
def test_quick_bench_results(quick_report) -> None:
    """Each result's schema and settings, and every number that can be recomputed against an
    independent reference; timings are only checked to be positive."""
    _, rep = quick_report
    r = rep["results"]
    a = r["a"]
    assert a["shape"] == {"N": 32, "T": 24, "d": 512} and not a["paper_size"] and a["ratio"] > 0
    # (a): the input is torch.randn with seed 0; every implementation's loss is Eq. 3-4 from torch.cov
    x = torch.randn(32, 24, 512, generator=torch.Generator().manual_seed(0))
    reference = float(seq_vcr_reference(x, 1.0, 0.004))
    assert len(a["implementations"]) == 3
    for name, v in a["implementations"].items():
        assert v["loss"] == pytest.approx(reference, rel=1e-5), name
        assert v["median_s"] > 0
    assert a["rel_value_diff"] <= 1e-4 and a["rel_grad_diff"] <= 1e-3

    tiny = r["b"]["cases"]["tiny"]
    assert tiny["with_seqvcr_s"] > 0 and tiny["without_seqvcr_s"] > 0 and tiny["seqvcr_head_fwd_bwd_s"] > 0
    # 3x3 digits with 2 pauses: 3 + 1 + 3 + 1 ("||") + 4 (pause block) prompt tokens, 6 digits + <eos>
    assert tiny["setting"]["seq_len"] == 12 + 7 - 1
    assert (tiny["setting"]["batch"], tiny["setting"]["proj_dim"]) == (64, 256)
    assert (tiny["setting"]["n_layer"], tiny["setting"]["n_embd"]) == (2, 128)
    assert "gpt2-small" in r["b"]["skipped_cases"]

    assert r["c"] == {"skipped": "no GPU", "bench_seconds": r["c"]["bench_seconds"]}  # --device cpu

    d = r["d"]["cases"]["tiny 3x3"]
    assert (d["examples"], d["prompt_len"], d["new_tokens"]) == (128, 12, 7)
    assert d["kv_cache"]["examples_per_s"] > 0 and d["naive"]["examples_per_s"] > 0
    assert 0.99 <= d["token_agreement"] <= 1.0  # the decoders themselves: test_decoders_match_transformers

    e = r["e"]
    assert e["layers"] == 3 and e["sequences"] == 200 and e["seq_len"] == 19
    assert e["total_s"] >= e["forward_s"] > 0 and e["entropy_s"] > 0
    # (e): the untrained tiny model (seed 0) on task.generate(200, seed=3); Eq. 2 from NumPy over each
    # whole sequence, normalised by log(min(T, d)) = log 19
    model, _, data = untrained_model(Settings(device=torch.device("cpu"), only=("e",)), "tiny", 3,
                                     lambda task: task.generate(200, seed=3))
    with torch.no_grad():
        hidden = model(data.ids, output_hidden_states=True).hidden_states
    means = [sum(entropy_reference(h[j]) for j in range(200)) / 200 / math.log(19) for h in hidden]
    assert e["mean_normalized_entropy_per_layer"] == pytest.approx(means, abs=1e-4)


def test_the_step_benchmark_times_the_training_objective() -> None:
    """(b)'s two sides: with Seq-VCR the timed step's loss is the LM loss plus Eq. 3-4 of the projected
    last layer over the real input tokens; without, the same model's LM loss alone."""
    cpu = torch.device("cpu")
    with_sv, without = TrainStep("tiny", "seqvcr_pause", cpu), TrainStep("tiny", "pause", cpu)
    x, y, mask, rows = with_sv.batches[0]
    assert torch.equal(x, without.batches[0][0])
    with torch.no_grad():
        out = with_sv.model(x, output_hidden_states=True)
        lm_ref = F.cross_entropy(out.logits.flatten(0, 1), y.flatten(), ignore_index=-100)
        head = with_sv.tm.heads()["seqvcr"]
        assert isinstance(head, SeqVCR) and (head.lambda1, head.lambda2) == (1.0, 0.004)
        sv_ref = seq_vcr_reference(head.projection(out.hidden_states[-1]), 1.0, 0.004, mask)
        total, _ = with_sv.tm(x, y, mask, rows)
        alone, _ = without.tm(x, y, mask, rows)
    assert float(total) == pytest.approx(float(lm_ref) + float(sv_ref), rel=1e-5)
    assert float(alone) == pytest.approx(float(lm_ref), rel=1e-6)
    assert float(sv_ref) > 1e-3 * float(lm_ref)  # the Seq-VCR term is not negligible here


@pytest.mark.slow
def test_quick_bench_targets_are_not_claimed(quick_report) -> None:
    _, rep = quick_report
    status = {t["id"]: t["status"] for t in rep["targets"]}
    assert status["a"].startswith("n/a")  # quick: not the paper size
    assert status["b-cpu-gpt2-small"].startswith("not measured")
    assert status["c"] == "not measured (no GPU)"  # --device cpu, whatever the machine has
    assert status["b-gpu-tiny"] == "not measured (no GPU)"
    assert not any(s in ("pass", "FAIL") for s in status.values())


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="(c) is measured on a GPU only")
def test_mfu_on_a_gpu(tmp_path: Path) -> None:
    """(c) on a GPU: the FLOPs per token against a count of the matrix products of gpt2-small's
    forward + backward, and MFU from the timed step (tokens = batch x padded length)."""
    assert main(["bench", "--quick", "--only", "c", "--device", "cuda", "--mfu-batch", "8", "--quiet",
                 "--out", str(tmp_path)]) == 0
    c = json.loads((tmp_path / "bench.json").read_text())["results"]["c"]
    # 5x5 digits with 2 pauses: 5 + 1 + 5 + 1 + 4 prompt tokens, 10 digits + <eos>
    assert c["batch"] == 8 and c["seq_len"] == 16 + 11 - 1
    vocab = SequenceFormat.for_task(make_task("mult", digits=5)).tokenizer.vocab_size
    with torch.device("meta"):
        model = GPT(GPTConfig(vocab_size=vocab, block_size=c["seq_len"], **PRESETS["gpt2-small"]))
    one_d = sum(p.numel() for p in model.parameters() if p.dim() == 1)
    flops = counted_matmul_flops_per_token(model, c["seq_len"]) + 6 * one_d
    assert c["flops_per_token"] == flops
    tokens_per_s = 8 * c["seq_len"] / c["step"]["median_s"]
    assert c["tokens_per_s"] == pytest.approx(tokens_per_s, rel=1e-6)
    peak = peak_bf16_tflops(c["gpu"])
    if peak is not None:
        assert c["peak_bf16_tflops"] == peak
        assert c["mfu"] == pytest.approx(flops * tokens_per_s / (peak * 1e12), rel=1e-6)
        assert 0 < c["mfu"] < 1


def test_naive_loss_is_the_same_equation() -> None:
    """(a)'s reference and the library against Eq. 3-4 from torch.cov."""
    x = torch.randn(6, 4, 5, dtype=torch.float64)
    for lam1, lam2 in ((1.0, 0.004), (0.1, 0.5)):
        reference = seq_vcr_reference(x, lam1, lam2)
        torch.testing.assert_close(naive_seq_vcr_loss(x, lam1, lam2), reference)
        torch.testing.assert_close(seq_vcr_loss(x, lam1, lam2), reference)


@pytest.mark.slow
def test_decoders_match_transformers(tmp_path: Path) -> None:
    """(d)'s two sides, the naive decoder and the KV cache, against greedy decoding by transformers'
    own GPT-2 on the exported weights."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    save_hf_gpt2(model, tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    prompt = torch.randint(0, 13, (3, 5))
    with torch.no_grad():
        theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6,
                             min_new_tokens=6, do_sample=False, pad_token_id=0)[:, 5:]
    assert theirs.shape == (3, 6)
    assert torch.equal(naive_generate(model, prompt, 6), theirs)
    assert torch.equal(model.generate(prompt, 6), theirs)


def test_options() -> None:
    assert parse_only("e, a") == ("a", "e")
    with pytest.raises(ConfigError, match="allowed: a, b, c, d, e"):
        parse_only("a,z")
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_bf16_tflops("NVIDIA H200") == 989.4
    assert peak_bf16_tflops("Some Future GPU") is None


def test_bad_option_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["bench", "--only", "x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--only" in err


def test_markdown_renders_skips_and_gpu_results() -> None:
    rep = {
        "machine_description": "test machine", "device": "cuda:0", "gpu": "NVIDIA H100 80GB HBM3",
        "load_average": [0.1, 0.2], "command": "seqvcr bench", "started": "now", "seconds": 1.0,
        "settings": {"clock": "wall", "threads": 2},
        "quick": False,
        "targets": [{"id": "c", "target": "MFU", "setting": "x", "measured": 0.45, "unit": "fraction",
                     "required": ">= 40%", "status": "pass"}],
        "results": {"c": {"gpu": "NVIDIA H100 80GB HBM3", "batch": 512, "seq_len": 26, "compile": True,
                          "tokens_per_s": 1e6, "achieved_tflops": 450.0, "peak_bf16_tflops": 989.4,
                          "mfu": 0.45, "note": "n"},
                    "e": {"skipped": "why"}},
    }
    md = render_markdown(rep)
    assert "| c: MFU | x | 45.0% | >= 40% | pass |" in md and "skipped: why" in md
