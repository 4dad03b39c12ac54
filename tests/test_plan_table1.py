"""plans/table1.yaml, the paper's Table 1 at paper scale, expands to the runs App. D describes, and the
GPU-hours estimate ``seqvcr sweep --dry-run`` prints is the hand computation of its FLOPs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seqvcr.cli import main
from seqvcr.datafiles import resolve_data_path
from seqvcr.experiments import estimate
from seqvcr.experiments.plan import load_plan
from seqvcr.experiments.sweep import expand

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "plans" / "table1.yaml"
METHODS = ["vanilla", "cot", "pause", "seqvcr", "seqvcr_pause"]


def test_table1_expands_to_the_papers_runs(tmp_path: Path) -> None:
    plan = load_plan(PLAN, gpt2_dir=str(tmp_path))
    _, runs = expand(plan)
    assert len(runs) == 2 * 5 * 3
    seen = set()
    for r in runs:
        c = r.config
        digits, method = c["task"]["digits"], c["method"]["name"]
        seen.add((digits, method, r.seed))
        assert c["model"]["init_from"] == str(tmp_path.resolve())  # fine-tuned from the local GPT-2
        assert c["model"]["preset"] == "gpt2-small"
        assert c["optim"]["epochs"] == 40 and c["optim"]["lr"] == 5e-4 and c["optim"]["batch_size"] == 32
        assert c["optim"]["max_steps"] is None and c["task"]["train_size"] == 808_000
        assert c["task"]["test_file"] == f"ref:mult/{digits}x{digits}/test.txt"
        assert c["task"]["valid_file"] == f"ref:mult/{digits}x{digits}/valid.txt"
        assert c["method"]["pauses"] == 2 and c["seqvcr"]["proj_dim"] == 2048
        assert (c["seqvcr"]["lambda1"], c["seqvcr"]["lambda2"]) == (1.0, 0.004)
        assert r.skip is None  # the directory exists
    assert seen == {(d, m, s) for d in (4, 5) for m in METHODS for s in (0, 1, 2)}


def _hand_tokens(digits: int, method: str) -> int:
    """T by hand from a line of Deng et al.'s test file: question, '||', [pause block], [CoT, '####'],
    answer, <eos>."""
    line = resolve_data_path(f"ref:mult/{digits}x{digits}/test.txt").read_text().splitlines()[0]
    question, rest = line.split("||")
    cot, answer = rest.split("####")
    q, c, a = len(question.split()), len(cot.split()), len(answer.split())
    assert (q, a) == (2 * digits + 1, 2 * digits)
    pauses = 4 if "pause" in method else 0  # </pause_start> <pause> <pause> </pause_end>
    return q + 1 + pauses + (c + 1 if method == "cot" else 0) + a + 1


def _hand_hours(digits: int, method: str, mfu: float, peak: float) -> float:
    d, L, H, V = 768, 12, 12, 5 + 10 + 6  # GPT-2 small; 5 special tokens, 10 digits, * + ( ) || ####
    N = V * d + L * (12 * d * d + 13 * d) + 2 * d  # tied embedding + blocks (weights, biases, LNs) + ln_f
    T = _hand_tokens(digits, method)
    steps = 40 * (808_000 // 32)  # 40 epochs of 25,250 steps
    flops = steps * 32 * T * (6 * N + 12 * L * H * (d // H) * T)
    return flops / (mfu * peak * 1e12) / 3600


def test_the_estimate_is_the_hand_computation(tmp_path: Path) -> None:
    plan = load_plan(PLAN, gpt2_dir=str(tmp_path))
    _, runs = expand(plan)
    for r in runs[:: 3]:
        digits, method = r.config["task"]["digits"], r.config["method"]["name"]
        cost = estimate.run_cost(r.config)
        assert cost.steps == 1_010_000 and cost.seq_len == _hand_tokens(digits, method)
        assert cost.gpu_hours(0.1, 312.0) == pytest.approx(_hand_hours(digits, method, 0.1, 312.0), rel=1e-12)


def test_dry_run_prints_the_runs_and_their_gpu_hours(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    total = 3 * sum(_hand_hours(d, m, 0.1, 312.0) for d in (4, 5) for m in METHODS)
    assert main(["sweep", str(PLAN), "--gpt2-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan table1: 10 settings x 3 seeds = 30 runs")
    assert "A100 bf16 at 312 TFLOP/s peak, assumed MFU 10%" in out
    printed = float(re.search(r"total: 30 runs, ([\d,]+) GPU hours", out).group(1).replace(",", ""))
    assert printed == round(total)
    one = _hand_hours(5, "cot", 0.1, 312.0)
    assert f"5x5 | CoT: 3 run(s) x 1,010,000 steps x 32 x {_hand_tokens(5, 'cot')} tokens" in out
    assert f"{one:,.1f} GPU hours each" in out
    # another MFU and peak: the hours scale inversely with both
    assert main(["sweep", str(PLAN), "--gpt2-dir", str(tmp_path), "--dry-run", "--mfu", "0.4",
                 "--peak-tflops", "989.4"]) == 0
    out = capsys.readouterr().out
    printed = float(re.search(r"total: 30 runs, ([\d,]+) GPU hours", out).group(1).replace(",", ""))
    assert printed == round(total * 0.1 * 312.0 / (0.4 * 989.4)) and "assumed MFU 40%" in out
    assert main(["sweep", str(PLAN), "--dry-run", "--mfu", "2"]) == 2
    assert "--mfu: expected a fraction in (0, 1], got 2.0" in capsys.readouterr().err
