"""``seqvcr bench``: the report's schema and the correctness checks it makes. No speed assertions:
speed targets live in the benchmark output (docs/benchmarks.md), not in unit tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seqvcr.bench import (
    BENCHMARKS,
    naive_generate,
    naive_seq_vcr_loss,
    parse_only,
    peak_bf16_tflops,
    render_markdown,
)
from seqvcr.cli import main
from seqvcr.errors import ConfigError
from seqvcr.model import GPT, GPTConfig
from seqvcr.objectives import seq_vcr_loss


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--quick", "--only", "a,b,c,d,e", "--device", "cpu", "--threads", "1",
                 "--clock", "cpu", "--out", str(out)])
    assert code == 0
    return out, json.loads((out / "bench.json").read_text())


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


def test_quick_bench_results(quick_report) -> None:
    _, rep = quick_report
    r = rep["results"]
    a = r["a"]
    assert a["values_match"] and a["rel_value_diff"] <= 1e-4 and a["rel_grad_diff"] <= 1e-3
    losses = [v["loss"] for v in a["implementations"].values()]
    assert len(losses) == 3 and max(losses) - min(losses) <= 1e-4 * abs(losses[0])
    assert a["ratio"] > 0 and not a["paper_size"]

    tiny = r["b"]["cases"]["tiny"]
    assert tiny["with_seqvcr_s"] > 0 and tiny["without_seqvcr_s"] > 0
    assert tiny["overhead"] == pytest.approx(tiny["with_seqvcr_s"] / tiny["without_seqvcr_s"] - 1)
    assert tiny["setting"]["batch"] == 64 and tiny["setting"]["proj_dim"] == 256
    assert "gpt2-small" in r["b"]["skipped_cases"]

    if not torch.cuda.is_available():
        assert r["c"]["skipped"] == "no GPU" and "mfu" not in r["c"]  # skipped, never a made-up number

    d = r["d"]["cases"]["tiny 3x3"]
    assert d["kv_cache"]["examples_per_s"] > 0 and d["naive"]["examples_per_s"] > 0
    assert d["token_agreement"] >= 0.99  # the cache changes the speed, not the tokens

    e = r["e"]
    assert e["layers"] == 3 and e["sequences"] == 200
    assert e["total_s"] >= e["forward_s"] > 0 and e["entropy_s"] > 0
    assert all(0.0 <= v <= 1.0 for v in e["mean_normalized_entropy_per_layer"])


def test_quick_bench_targets_are_not_claimed(quick_report) -> None:
    _, rep = quick_report
    status = {t["id"]: t["status"] for t in rep["targets"]}
    assert status["a"].startswith("n/a")  # quick: not the paper size
    assert status["b-cpu-gpt2-small"].startswith("not measured")
    if not torch.cuda.is_available():
        assert status["c"] == "not measured (no GPU)"
        assert status["b-gpu-tiny"] == "not measured (no GPU)"
    assert not any(s in ("pass", "FAIL") for s in status.values())


def test_naive_loss_is_the_same_equation() -> None:
    x = torch.randn(6, 4, 5, dtype=torch.float64)
    for lam1, lam2 in ((1.0, 0.004), (0.1, 0.5)):
        torch.testing.assert_close(naive_seq_vcr_loss(x, lam1, lam2), seq_vcr_loss(x, lam1, lam2))


def test_naive_generate_matches_the_kv_cache() -> None:
    model = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    prompt = torch.randint(0, 13, (3, 5))
    assert torch.equal(naive_generate(model, prompt, 6), model.generate(prompt, 6))


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
