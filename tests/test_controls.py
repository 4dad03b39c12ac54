"""The positive controls: the running-sum term, the CoT-removal curriculum (ICoT-SI) and the probe, each
against an independent reference; and the training loop with them (resume, Ctrl-C, provenance)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import micro_overrides

from seqvcr import config as C
from seqvcr import training
from seqvcr.analysis.probe import probe_run, ridge_r2, write_probe
from seqvcr.curriculum import CotRemoval, build_curriculum, remove_cot, smoothing_distribution
from seqvcr.datafiles import resolve_data_path
from seqvcr.errors import ConfigError
from seqvcr.runs import build_format, build_task, load_splits
from seqvcr.sequences import SequenceFormat, encode_examples, make_batch
from seqvcr.tasks import read_examples
from seqvcr.terms import RunningSum, answer_positions, running_sum_targets, running_sums


def _digits(x: int, width: int) -> list[int]:
    return [int(c) for c in str(x)[::-1].ljust(width, "0")]


def _running_sums_reference(a: int, b: int, n: int, m: int) -> list[int]:
    """c_k = floor(S_k / 10^k), S_k the partial products of weight at most 10^k: a closed form of the
    recursion (floor(S_k / 10^k) = sum_{i+j=k} a_i b_j + floor(floor(S_{k-1} / 10^(k-1)) / 10))."""
    da, db = _digits(a, n), _digits(b, m)
    out = []
    for k in range(n + m):
        s = sum(da[i] * db[j] * 10 ** (i + j) for i in range(n) for j in range(m) if i + j <= k)
        out.append(s // 10**k)
    return out


@pytest.mark.parametrize(("n", "m"), [(1, 1), (3, 3), (4, 4), (5, 3)])
def test_running_sums_match_the_closed_form_and_the_product(n: int, m: int) -> None:
    g = torch.Generator().manual_seed(n * 10 + m)
    for _ in range(50):
        a = int(torch.randint(10 ** (n - 1), 10**n, (1,), generator=g))
        b = int(torch.randint(10 ** (m - 1), 10**m, (1,), generator=g))
        got = running_sums(_digits(a, n), _digits(b, m), n + m)
        assert got == _running_sums_reference(a, b, n, m)
        assert sum((c % 10) * 10**k for k, c in enumerate(got)) == a * b  # answer digit k = c_k mod 10
        assert got[-1] < 10  # nothing is left to carry past the answer


def test_running_sum_targets_of_the_reference_file() -> None:
    """On Deng et al.'s 3x3 test file, every c_k mod 10 is the file's own answer digit."""
    task = build_task(C.resolve(C.load_config(None, ["task.digits=3"])))
    examples = read_examples(task, resolve_data_path("ref:mult/3x3/test.txt"))[:200]
    targets = running_sum_targets(task, examples)  # (200, 6)
    assert targets.shape == (200, 6)
    for ex, row in zip(examples, targets.tolist(), strict=True):
        assert [str(int(c) % 10) for c in row] == list(ex.answer)
    arith = build_task(C.resolve(C.load_config(None, ["task.name=arith"])))
    with pytest.raises(ConfigError, match="needs the multiplication task"):
        running_sum_targets(arith, arith.generate(2, seed=0))


@pytest.mark.parametrize("pauses", [0, 3])
def test_answer_positions_are_the_states_that_predict_the_answer_digits(pauses: int) -> None:
    task = build_task(C.resolve(C.load_config(None, ["task.digits=2", "task.digits_b=3"])))
    fmt = SequenceFormat.for_task(task, pauses=pauses)
    examples = task.generate(6, seed=1)
    data = encode_examples(fmt, examples)
    x, y, mask = make_batch(data, torch.arange(6))
    pos = answer_positions(mask, 5)  # (6, 5)
    for b, ex in enumerate(examples):
        want = fmt.tokenizer.encode(list(ex.answer))
        assert [int(y[b, p]) for p in pos[b]] == want


def test_the_running_sum_term_is_the_mse_of_its_head_on_the_answer_states() -> None:
    task = build_task(C.resolve(C.load_config(None, ["task.digits=3"])))
    fmt = SequenceFormat.for_task(task, pauses=2)
    examples = task.generate(12, seed=2)
    data = encode_examples(fmt, examples)
    rows = torch.tensor([3, 0, 7, 11])
    x, y, mask = make_batch(data, rows)
    targets = running_sum_targets(task, examples)
    torch.manual_seed(0)
    term = RunningSum(8, targets, weight=2.5, layer=1, scale=50.0).double()
    hidden = [torch.randn(4, x.shape[1], 8, dtype=torch.float64) for _ in range(3)]
    from seqvcr.model import GPTOutput

    out = GPTOutput(logits=None, loss=None, hidden_states=tuple(hidden))  # only hidden_states is read
    value = term(out, _batch(x, y, mask, rows))
    # by hand: the state just before each answer token, the head's affine map, the squared error
    w, bias = term.head.weight[0].detach(), term.head.bias[0].detach()
    errors = []
    for b, row in enumerate(rows.tolist()):
        ids = x[b].tolist()
        n_inputs = int(mask[b].sum())
        for k in range(6):
            t = n_inputs - 1 - 6 + k  # the input whose next token is answer digit k
            assert int(y[b, t]) == fmt.tokenizer.encode([examples[row].answer[k]])[0]
            pred = float(hidden[1][b, t] @ w + bias)
            errors.append((pred - float(targets[row, k]) / 50.0) ** 2)
        assert ids  # the row is real
    mse = sum(errors) / len(errors)
    assert float(value.logs["running_sum_mse"].detach()) == pytest.approx(mse, rel=1e-5)
    assert float(value.loss.detach()) == pytest.approx(2.5 * mse, rel=1e-5)
    value.loss.backward()
    assert term.head.weight.grad is not None and float(term.head.weight.grad.abs().sum()) > 0


def _batch(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor):  # noqa: ANN202
    from seqvcr.terms import Batch

    return Batch(x, y, mask, rows)


def test_running_sum_needs_multiplication() -> None:
    with pytest.raises(ConfigError, match=r"running_sum\.weight.*needs task mult"):
        C.load_config(None, ["task.name=arith", "running_sum.weight=1"])
    with pytest.raises(ConfigError, match=r"running_sum\.layer"):
        C.resolve(C.load_config(None, micro_overrides() + ["running_sum.weight=1", "running_sum.layer=3"]))


# ---------------------------------------------------------------------------------------------- ICoT-SI


def test_smoothing_distribution_is_deng_et_al_s() -> None:
    lam = 4.0
    p = smoothing_distribution(lam)
    assert p.shape == (100,) and float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    for o in range(5):
        assert float(p[o]) == pytest.approx((1 - math.exp(-lam)) * math.exp(-lam * o), rel=1e-12)
    assert smoothing_distribution(math.inf).tolist() == [1.0] + [0.0] * 99


def _cot_setup(pauses: int = 0):  # noqa: ANN202
    task = build_task(C.resolve(C.load_config(None, ["task.digits=3"])))
    plain = SequenceFormat.for_task(task, pauses=pauses)
    with_cot = SequenceFormat(task, plain.tokenizer, cot=True, pauses=pauses)
    examples = task.generate(10, seed=5)
    return task, plain, with_cot, examples


@pytest.mark.parametrize("pauses", [0, 2])
def test_removing_cot_tokens_matches_the_sequences_built_by_hand(pauses: int) -> None:
    _, plain, with_cot, examples = _cot_setup(pauses)
    data = encode_examples(with_cot, examples)
    cot_lengths = torch.tensor([len(ex.cot) for ex in examples])
    rows = torch.tensor([0, 1, 2, 3, 4, 9])
    to_remove = torch.tensor([0, 1, 8, 23, 24, 200])  # 3x3: 24 CoT tokens
    part = remove_cot(data, cot_lengths, rows, to_remove, plain.tokenizer.pad_id)
    tok = plain.tokenizer
    for i, (row, r) in enumerate(zip(rows.tolist(), to_remove.tolist(), strict=True)):
        ex = examples[row]
        prompt = plain.prompt_tokens(ex)
        if r >= len(ex.cot):  # the whole CoT and its separator: exactly the format evaluation decodes
            want = prompt + plain.target_tokens(ex)
        else:
            want = prompt + list(ex.cot[r:]) + ["####", *ex.answer, "<eos>"]
        n = int(part.lengths[i])
        assert tok.decode(part.ids[i, :n].tolist()) == want
        assert all(int(t) == tok.pad_id for t in part.ids[i, n:])
        assert int(part.prompt_lengths[i]) == len(prompt)
    assert part.ids.shape[1] == int(part.lengths.max())  # trimmed to the longest row
    # fully removed rows are the evaluation format's encoding, token for token
    vanilla = encode_examples(plain, [examples[3], examples[4], examples[9]])
    for i, j in ((4, 1), (5, 2)):
        n = int(vanilla.lengths[j])
        assert part.ids[i, :n].tolist() == vanilla.ids[j, :n].tolist()


def test_the_schedule_removes_a_token_every_k_steps_and_resets_the_optimiser() -> None:
    _, plain, with_cot, examples = _cot_setup()
    data = encode_examples(with_cot, examples)
    cot_lengths = torch.tensor([len(ex.cot) for ex in examples])
    cur = CotRemoval(data, cot_lengths, pad_id=plain.tokenizer.pad_id, steps_per_token=3,
                     smoothing_lambda=math.inf, reset_optimizer=True, start_step=4, seed=0)
    assert [cur.scheduled(s) for s in range(12)] == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2]
    resets = [s for s in range(200) if cur.resets_optimizer(s)]
    assert resets == list(range(7, 4 + 3 * 24 + 1, 3))  # every removal while CoT is left, none after
    rows = torch.arange(4)
    b = cur.batch(rows, 10)  # two tokens removed from every row, no smoothing
    assert int(b.mask.sum(1)[0]) == int(data.lengths[0]) - 1 - 2
    assert cur.logs(10) == {"cot_removed": 2.0}
    assert cur.logs(10_000) == {"cot_removed": 25.0}  # every CoT token and the separator


def test_the_smoothed_removal_is_a_pure_function_of_the_step() -> None:
    _, plain, with_cot, examples = _cot_setup()
    data = encode_examples(with_cot, examples)
    cot_lengths = torch.tensor([len(ex.cot) for ex in examples])
    kw = dict(pad_id=plain.tokenizer.pad_id, steps_per_token=2, smoothing_lambda=0.5, reset_optimizer=True,
              start_step=0, seed=3)
    a, b = CotRemoval(data, cot_lengths, **kw), CotRemoval(data, cot_lengths, **kw)  # type: ignore[arg-type]
    rows = torch.arange(10)
    assert torch.equal(a.batch(rows, 7).x, b.batch(rows, 7).x)
    lengths = {tuple(a.batch(rows, s).mask.sum(1).tolist()) for s in range(6, 12)}
    assert len(lengths) > 1  # the offsets vary from step to step


def test_icot_si_config_checks() -> None:
    with pytest.raises(ConfigError, match="curriculum.name.*not cot"):
        C.load_config(None, micro_overrides("cot") + ["curriculum.name=icot_si"])
    with pytest.raises(ConfigError, match="curriculum.name"):
        C.load_config(None, micro_overrides() + ["curriculum.name=stepwise"])
    with pytest.raises(ConfigError, match="smoothing_lambda"):
        C.load_config(None, micro_overrides() + ["curriculum.name=icot_si", "curriculum.smoothing_lambda=0"])
    cfg = C.resolve(C.load_config(None, micro_overrides("vanilla") + ["curriculum.name=icot_si"]))
    task = build_task(cfg)
    train_ex, _ = load_splits(cfg, task)
    cur = build_curriculum(cfg, build_format(cfg, task), train_ex, 0, torch.device("cpu"))
    assert isinstance(cur, CotRemoval)
    assert cur.steps_per_token == round((512 // 16) / 8)  # Deng's 8 tokens per epoch of 32 steps


def test_the_cost_estimate_follows_the_cot_removal() -> None:
    """`seqvcr sweep --dry-run`'s FLOPs under ICoT-SI: every step at the width of the batch the curriculum
    really builds there (no smoothing), against 6N + 12 L H Q T summed step by step; Deng's pace from
    the epoch length."""
    from seqvcr.experiments.estimate import run_cost

    steps = 40
    cfg = C.resolve(C.load_config(None, micro_overrides("pause", steps) + [
        "curriculum.name=icot_si", "curriculum.steps_per_token=3", "curriculum.start_step=4",
        "curriculum.smoothing_lambda=null"]))
    task = build_task(cfg)
    train_ex, _ = load_splits(cfg, task)
    cur = build_curriculum(cfg, build_format(cfg, task), train_ex, 0, torch.device("cpu"))
    rows = torch.arange(cfg.optim.batch_size)
    widths = [cur.batch(rows, step).x.shape[1] + 1 for step in range(steps)]  # x: the sequence less one
    assert widths[0] > widths[-1] and len(set(widths)) > 3  # the CoT goes within the run
    L, H, d = cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd
    cost = run_cost(cfg)
    six_n = 6 * cost.params
    flops = sum(cfg.optim.batch_size * t * (six_n + 12 * L * H * (d // H) * t) for t in widths)
    assert cost.steps == steps and cost.seq_len == pytest.approx(sum(widths) / steps, rel=1e-12)
    assert cost.flops == pytest.approx(flops, rel=1e-12)
    deng = C.resolve(C.load_config(None, micro_overrides("vanilla", 400) + ["curriculum.name=icot_si"]))
    per_token = round((512 // 16) / 8)  # 8 tokens per epoch of 32 steps
    assert run_cost(deng).seq_lens[max(run_cost(deng).seq_lens)] == per_token  # full CoT for one interval


# ---------------------------------------------------------------------------------------------- training


def _control_cfg(steps: int = 24, extra: list[str] | None = None) -> C.Config:
    return C.load_config(None, micro_overrides("seqvcr_pause", steps) + [
        "running_sum.weight=2", "curriculum.name=icot_si", "curriculum.steps_per_token=1",
        "train.checkpoint_every=8", "model.dropout=0.0", *(extra or [])])


@pytest.mark.slow
def test_controls_train_log_their_terms_and_resume_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running sum + ICoT-SI + Seq-VCR: every term logs its value, the CoT is gone by the end, evaluation
    has no CoT, and a run stopped by Ctrl-C mid-way (between checkpoints) resumes to the very weights of
    an uninterrupted one (the curriculum, its optimiser resets and the running-sum head included)."""
    whole = tmp_path / "whole"
    result = training.train(_control_cfg(), whole, progress=False)
    records = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in records if r["kind"] == "train"]
    for name in ("lm_loss", "seqvcr_loss", "seqvcr_variance", "seqvcr_covariance", "running_sum_mse",
                 "cot_removed"):
        assert all(math.isfinite(r[name]) for r in train_recs), name
    assert train_recs[-1]["cot_removed"] == 9.0  # 2x2: 8 CoT tokens (e.g. 4 5 0 + 0 6 1 2) and the separator
    assert result["code"]["seqvcr"]
    if "commit" in result["code"]:
        assert len(result["code"]["commit"]) == 40 and isinstance(result["code"]["dirty"], bool)

    # the same run, asked to stop (as Ctrl-C does) after step 13: a checkpoint of step 13, then resumed
    parted = tmp_path / "parted"
    real_after = training._after_step

    def stop_at_13(run, interval, lr, batch, stop):  # noqa: ANN001, ANN202
        if run.state.step == 13:
            stop.requested = True
        return real_after(run, interval, lr, batch, stop)

    monkeypatch.setattr(training, "_after_step", stop_at_13)
    with pytest.raises(KeyboardInterrupt):
        training.train(_control_cfg(), parted, progress=False)
    from seqvcr.checkpoints import read_checkpoint

    assert read_checkpoint(parted / "checkpoint.safetensors").step == 13
    monkeypatch.setattr(training, "_after_step", real_after)
    training.train(_control_cfg(), parted, progress=False)
    from safetensors.torch import load_file

    a, b = load_file(whole / "model.safetensors"), load_file(parted / "model.safetensors")
    assert set(a) == set(b) and any(k.startswith("running_sum.") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = micro_overrides("vanilla", 100_000) + ["train.checkpoint_every=100000", "train.log_every=1"]
    config = tmp_path / "micro.yaml"
    config.write_text("task:\n  name: mult\n")
    cmd = [sys.executable, "-m", "seqvcr", "train", str(config), "--out", str(run), *overrides]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # wait until a few steps are done
        if "[" in line and "/100000]" in line and "loss" in line and int(line.split("/")[0].strip("[ ")) >= 3:
            break
        assert time.monotonic() < deadline, "training did not start"
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    assert "interrupted: checkpoint of step" in rest
    from seqvcr.checkpoints import read_checkpoint

    step = read_checkpoint(run / "checkpoint.safetensors").step
    assert step >= 3
    assert not (run / "result.json").exists()
    logged = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(logged) <= step  # nothing logged past the saved step


# ---------------------------------------------------------------------------------------------- probe


def _ridge_reference(
    xf: torch.Tensor, yf: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor, lam: float
) -> float:
    """The same ridge fit as an augmented least-squares problem: rows [X 1; sqrt(lam n) I 0]."""
    n, d = xf.shape
    penalty = math.sqrt(lam * n) * torch.eye(d, dtype=xf.dtype)
    a = torch.cat([torch.cat([xf, torch.ones(n, 1, dtype=xf.dtype)], 1),
                   torch.cat([penalty, torch.zeros(d, 1, dtype=xf.dtype)], 1)])
    rhs = torch.cat([yf, torch.zeros(d, dtype=xf.dtype)])
    sol = torch.linalg.lstsq(a, rhs[:, None]).solution[:, 0]
    pred = xt @ sol[:d] + sol[d]
    return float(1 - ((yt - pred) ** 2).sum() / ((yt - yt.mean()) ** 2).sum())


def test_a_ridge_probe_finds_a_planted_linear_feature_and_not_noise() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 40, generator=g, dtype=torch.float64)
    w = torch.randn(40, generator=g, dtype=torch.float64)
    planted = x @ w + 3.0 + 0.05 * torch.randn(600, generator=g, dtype=torch.float64)
    noise = torch.randn(600, generator=g, dtype=torch.float64)
    fit, test = slice(0, 400), slice(400, None)
    r2_planted = ridge_r2(x[fit], planted[fit], x[test], planted[test], 1e-3)
    r2_noise = ridge_r2(x[fit], noise[fit], x[test], noise[test], 1e-3)
    assert r2_planted > 0.99
    assert r2_noise < 0.05
    for y in (planted, noise):
        for lam in (1e-3, 1.0):
            assert ridge_r2(x[fit], y[fit], x[test], y[test], lam) == pytest.approx(
                _ridge_reference(x[fit], y[fit], x[test], y[test], lam), abs=1e-8)


@pytest.mark.slow
def test_probe_of_a_trained_run_writes_its_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    training.train(C.load_config(None, micro_overrides("pause", 10)), run, progress=False)
    data = tmp_path / "probe.txt"
    task = build_task(C.resolve(C.load_config(None, micro_overrides())))
    data.write_text("".join(task.format_line(ex) + "\n" for ex in task.generate(40, seed=9)))
    result = probe_run(run, data, fit_fraction=0.5)
    assert result["layers"] == ["L0", "L1", "L2"] and len(result["r2"][0]) == 4
    assert result["n_fit"] == 20 and result["n_test"] == 20
    paths = write_probe(result, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["r2"] == result["r2"]
    assert paths["csv"].read_text().splitlines()[0] == "layer,position 1,position 2,position 3,position 4"
    assert paths["png"].stat().st_size > 1000
    with pytest.raises(ConfigError, match="fit-fraction"):
        probe_run(run, data, fit_fraction=1.0)


def test_the_removal_offsets_follow_the_smoothing_distribution() -> None:
    """Before the schedule removes anything, each row loses o extra CoT tokens, o ~ (1 - e^-lam) e^(-lam o):
    the sampled offsets' mean and P(o = 0) against the distribution's (a geometric law)."""
    _, plain, with_cot, examples = _cot_setup()
    data = encode_examples(with_cot, examples)
    cot_lengths = torch.tensor([len(ex.cot) for ex in examples])
    lam = 0.5
    cur = CotRemoval(data, cot_lengths, pad_id=plain.tokenizer.pad_id, steps_per_token=10_000,
                     smoothing_lambda=lam, reset_optimizer=True, start_step=0, seed=1)
    rows = torch.arange(10)
    offsets = []
    for step in range(60):
        kept = cur.batch(rows, step).mask.sum(1)  # (B,) input tokens left
        offsets += ((data.lengths[rows] - 1) - kept).tolist()  # tokens removed from each row
    assert max(offsets) < int(cot_lengths.min())  # no row lost its whole CoT: the offsets are uncut
    q = math.exp(-lam)
    mean = sum(offsets) / len(offsets)
    assert mean == pytest.approx(q / (1 - q), abs=0.35)  # 1.54; the standard error is 0.08
    assert offsets.count(0) / len(offsets) == pytest.approx(1 - q, abs=0.08)  # 0.39


def test_the_schema_names_every_curriculum() -> None:
    """`curriculum.name`'s allowed values (the schema's) are exactly the curricula that exist."""
    from seqvcr.config import _CHOICES
    from seqvcr.curriculum import CURRICULA

    assert tuple(_CHOICES["curriculum.name"]) == tuple(CURRICULA)
