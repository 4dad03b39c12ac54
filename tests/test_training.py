from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import micro_overrides
from oracles import lm_loss_reference, oracle_eval, seq_vcr_reference, seq_vcr_terms_reference

from seqvcr import config as C
from seqvcr import training
from seqvcr.checkpoints import read_checkpoint
from seqvcr.cli import main
from seqvcr.errors import ConfigError, RunDirError, TrainingDivergedError
from seqvcr.runs import build_task, load_run, load_splits
from seqvcr.tasks import make_task, read_examples
from seqvcr.terms import Batch


def _cfg(method: str = "seqvcr_pause", steps: int = 20, extra: list[str] | None = None) -> C.Config:
    return C.load_config(None, micro_overrides(method, steps) + (extra or []))


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.mark.slow
def test_train_writes_a_complete_run_dir(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = training.train(_cfg(), run, progress=False)
    files = ("config.yaml", "metrics.jsonl", "checkpoint.safetensors", "model.safetensors", "result.json")
    for name in files:
        assert (run / name).is_file(), name
    train_recs = _records(run, "train")
    assert [r["step"] for r in train_recs] == [5, 10, 15, 20]
    for key in (
        "loss",
        "lm_loss",
        "seqvcr_loss",
        "seqvcr_variance",
        "seqvcr_covariance",
        "lr",
        "tokens_per_s",
    ):
        assert key in train_recs[0]
    assert train_recs[-1]["lm_loss"] < train_recs[0]["lm_loss"]
    assert train_recs[0]["seqvcr_variance"] > 0
    assert [r["step"] for r in _records(run, "eval")] == [10, 20]
    saved = json.loads((run / "result.json").read_text())
    assert saved["steps"] == 20 == result["steps"]
    # the final validation scores are those of naive greedy decoding of the saved model, scored by hand
    cfg = C.resolve(_cfg())
    _, valid = load_splits(cfg, build_task(cfg))
    em, pos, _ = oracle_eval(run, valid, budget=5)  # 2x2 digits: 4 answer digits and <eos>
    assert saved["valid"]["n"] == 64
    assert saved["valid"]["exact_match"] == pytest.approx(em)
    assert saved["valid"]["position_accuracy"] == pytest.approx(pos)
    assert sum(pos) > 0  # the comparison is not between two zeros only
    # the saved config is complete: it reloads to the same resolved config
    assert C.to_dict(C.resolve(C.load_config(run / "config.yaml"))) == saved["config"]


@pytest.mark.slow
def test_finished_run_is_not_overwritten_without_force(tmp_path: Path) -> None:
    run = tmp_path / "run"
    training.train(_cfg(steps=5), run, progress=False)
    before = (run / "result.json").read_text()
    with pytest.raises(RunDirError, match="already holds a finished run"):
        training.train(_cfg(steps=5), run, progress=False)
    assert (run / "result.json").read_text() == before
    (run / "eval").mkdir()
    (run / "eval" / "old.json").write_text("{}")  # a measurement of the old weights
    again = training.train(_cfg(steps=5), run, progress=False, force=True)
    # a new run from scratch: its own result, one record per log step, no measurement of the old run
    assert json.loads((run / "result.json").read_text()) == again and again["steps"] == 5
    assert [r["step"] for r in _records(run, "train")] == [5]
    assert not (run / "eval").exists()


@pytest.mark.slow
def test_resume_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight = tmp_path / "straight"
    training.train(_cfg(), straight, progress=False)

    interrupted = tmp_path / "interrupted"
    real_lr_at = training.lr_at

    def crash_at_13(step: int, total: int, cfg: C.OptimConfig) -> float:
        if step == 13:
            raise KeyboardInterrupt
        return real_lr_at(step, total, cfg)

    monkeypatch.setattr(training, "lr_at", crash_at_13)
    with pytest.raises(KeyboardInterrupt):
        training.train(_cfg(), interrupted, progress=False)
    assert not (interrupted / "result.json").exists()
    assert read_checkpoint(interrupted / "checkpoint.safetensors").step == 10
    monkeypatch.setattr(training, "lr_at", real_lr_at)
    training.train(_cfg(), interrupted, progress=False)

    a = read_checkpoint(straight / "checkpoint.safetensors").tensors
    b = read_checkpoint(interrupted / "checkpoint.safetensors").tensors
    assert a.keys() == b.keys()
    for key in a:  # weights, AdamW moments, RNG state
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert [r["step"] for r in _records(interrupted, "train")] == [5, 10, 15, 20]
    assert _records(interrupted, "train")[-1]["loss"] == pytest.approx(
        _records(straight, "train")[-1]["loss"]
    )


@pytest.mark.slow
def test_interrupted_run_with_other_config_needs_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    real_lr_at = training.lr_at

    def crash(step: int, total: int, cfg: C.OptimConfig) -> float:
        if step == 12:
            raise KeyboardInterrupt
        return real_lr_at(step, total, cfg)

    monkeypatch.setattr(training, "lr_at", crash)
    with pytest.raises(KeyboardInterrupt):
        training.train(_cfg(), run, progress=False)
    monkeypatch.setattr(training, "lr_at", real_lr_at)
    with pytest.raises(RunDirError, match="different config"):
        training.train(_cfg(extra=["optim.lr=1e-3"]), run, progress=False)


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    real_forward = training.TrainModule.forward
    calls = {"n": 0}

    def nan_after_12(self, x, y, mask, rows):  # noqa: ANN001, ANN202
        calls["n"] += 1
        loss, logged = real_forward(self, x, y, mask, rows)
        if calls["n"] > 12:
            loss = loss * float("nan")
        return loss, logged

    monkeypatch.setattr(training.TrainModule, "forward", nan_after_12)
    with pytest.raises(
        TrainingDivergedError, match=r"NaN/inf between steps 10 and 15.*last good checkpoint \(step 10\)"
    ):
        training.train(_cfg(), run, progress=False)
    ckpt = read_checkpoint(run / "checkpoint.safetensors")
    assert ckpt.step == 10
    assert all(torch.isfinite(v).all() for v in ckpt.tensors.values() if v.is_floating_point())
    assert not (run / "result.json").exists()


def test_lr_schedule() -> None:
    cfg = C.OptimConfig(lr=1.0, warmup=0.1, schedule="linear", min_lr_ratio=0.0)
    lrs = [training.lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    cos = C.OptimConfig(lr=1.0, warmup=0.0, schedule="cosine", min_lr_ratio=0.1)
    assert training.lr_at(0, 100, cos) == pytest.approx(1.0)
    assert training.lr_at(100, 100, cos) == pytest.approx(0.1)


def test_batch_sampler_is_a_function_of_step() -> None:
    a = training.BatchSampler(100, 16, seed=3)
    b = training.BatchSampler(100, 16, seed=3)
    steps = [0, 1, 7, 5, 20, 6]
    assert all(torch.equal(a.indices(s), b.indices(s)) for s in steps)
    epoch0 = torch.cat([a.indices(s) for s in range(a.steps_per_epoch)])
    assert len(set(epoch0.tolist())) == 6 * 16  # no repeats within an epoch


@pytest.mark.slow
def test_cli_train_eval_roundtrip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert (
        main(
            [
                "data",
                "mult",
                "--digits",
                "2",
                "--train",
                "300",
                "--test",
                "50",
                "--seed",
                "5",
                "--out",
                str(data),
            ]
        )
        == 0
    )
    capsys.readouterr()
    cfg_file = tmp_path / "micro.yaml"
    cfg_file.write_text("")
    run = tmp_path / "run"
    args = [
        "train",
        str(cfg_file),
        *micro_overrides("vanilla", 10),
        f"task.test_file={data / 'test.txt'}",
        "--out",
        str(run),
        "--quiet",
    ]
    assert main(args) == 0
    capsys.readouterr()
    preds = tmp_path / "preds.jsonl"
    assert main(["eval", str(run), "--data", str(data / "test.txt"), "--predictions", str(preds),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 50 and len(summary["position_accuracy"]) == 4
    lines = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(lines) == 50
    # every number against naive greedy decoding of the saved model, scored by hand
    em, pos, outputs = oracle_eval(run, data / "test.txt", budget=5)
    assert summary["exact_match"] == pytest.approx(em)
    assert summary["position_accuracy"] == pytest.approx(pos)
    assert [r["output"].split() for r in lines] == outputs
    golds = [ex.answer for ex in read_examples(make_task("mult", digits=2), data / "test.txt")]
    assert [r["target"].split() for r in lines] == [list(g) for g in golds]
    assert [r["correct"] for r in lines] == [o == [*g, "<eos>"] for o, g in zip(outputs, golds)]
    # a second train into the finished run directory is refused with one line
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("seqvcr train: error:") and "--force" in err and "\n" not in err


@pytest.mark.slow
def test_cli_bad_data_line_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 * 3 4||#### 3 0 9 0\n1 2 * x 4||#### 3 0 9 0\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "seqvcr",
            "data",
            "mult",
            "--digits",
            "2",
            "--train",
            "10",
            "--exclude",
            str(bad),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert f"{bad}:2" in proc.stderr and "Traceback" not in proc.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "seqvcr",
            "data",
            "mult",
            "--digits",
            "2",
            "--train",
            "10",
            "--exclude",
            str(empty),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "empty" in proc.stderr and "Traceback" not in proc.stderr


def test_seqvcr_positions_choose_the_states_that_enter_the_loss() -> None:
    """TrainModule's Seq-VCR term equals seq_vcr_loss on the hand-selected positions of the chosen layer."""
    from seqvcr.objectives import SeqVCR, seq_vcr_loss
    from seqvcr.runs import build_format, build_model, build_task
    from seqvcr.sequences import encode_examples, make_batch

    cfg = C.resolve(C.load_config(None, micro_overrides("seqvcr_pause") + ["seqvcr.layer=1"]))
    task = build_task(cfg)
    fmt = build_format(cfg, task)
    examples = task.generate(8, seed=3)
    data = encode_examples(fmt, examples)
    x, y, mask = make_batch(data, torch.arange(8))
    model = build_model(cfg, fmt.tokenizer.vocab_size, data.max_length)
    head = SeqVCR(32, proj_dim=16, layer=1)
    tok = fmt.tokenizer
    pause_ids = (tok.pause_start_id, tok.pause_id, tok.pause_end_id)
    n_prompt = len(fmt.prompt_tokens(examples[0]))  # every 2x2 problem has the same layout
    expected_masks = {
        "all": mask,
        "answer": torch.arange(x.shape[1])[None, :].expand_as(x) >= n_prompt - 1,
        "pause": torch.isin(x, torch.tensor(pause_ids)),
    }
    expected_masks["answer"] = expected_masks["answer"] & mask
    losses = {}
    for positions, chosen in expected_masks.items():
        tm = _train_module(model, head, positions, pause_ids)
        total, logged = tm(x, y, mask, torch.arange(8))
        lm = logged[tm.log_names.index("lm_loss")]
        h = model(x, y, output_hidden_states=True).hidden_states[1]  # (8, T, 32)
        want = seq_vcr_loss(head.projection(h), head.lambda1, head.lambda2, head.eta, mask=chosen)
        torch.testing.assert_close(total - lm, want)
        losses[positions] = float((total - lm).detach())
    assert len(set(losses.values())) == 3  # the choice changes the loss


def test_positions_pause_needs_pause_tokens() -> None:
    with pytest.raises(ConfigError, match="'pause' needs pause tokens"):
        C.load_config(None, micro_overrides("seqvcr") + ["seqvcr.positions=pause"])
    with pytest.raises(ConfigError, match="seqvcr.positions"):
        C.load_config(None, micro_overrides("seqvcr_pause") + ["seqvcr.positions=question"])


def _train_module(model: torch.nn.Module, head: torch.nn.Module, positions: str,
                  pause_ids: tuple[int, ...]) -> training.TrainModule:
    """The model with the LM and Seq-VCR terms, Seq-VCR on ``head``'s layer over ``positions``."""
    from seqvcr.terms import LanguageModel, SeqVCRTerm

    terms = torch.nn.ModuleDict({"lm": LanguageModel(), "seqvcr": SeqVCRTerm(head, positions, pause_ids)})
    return training.TrainModule(model, terms)


def _hand_positions(x: torch.Tensor, lengths: list[int], prompts: list[int], pause_ids: tuple[int, ...],
                    which: str) -> torch.Tensor:
    """The (B, T) positions whose states enter Seq-VCR, from each sequence's layout: every real input
    token but the final <eos> (``all``), the states from the last prompt token on that predict a
    trained token (``answer``), the pause block (``pause``), or the last two together."""
    out = torch.zeros_like(x, dtype=torch.bool)
    for b, (n, p) in enumerate(zip(lengths, prompts, strict=True)):
        for j in range(n - 1):  # input j predicts token j + 1; the final <eos> (j = n - 1) predicts nothing
            in_answer = j >= p - 1
            in_pause = int(x[b, j]) in pause_ids
            out[b, j] = {"all": True, "answer": in_answer, "pause": in_pause,
                         "pause_answer": in_answer or in_pause}[which]
    return out


@pytest.mark.parametrize("positions", ["all", "answer", "pause_answer"])
def test_the_training_objective_is_lm_loss_plus_seqvcr_loss(positions: str) -> None:
    """The loss a training step backpropagates is the next-token loss over the CoT, answer and <eos>
    targets plus lambda1 * variance + lambda2 * covariance of the projected layer over the chosen
    positions (Eq. 3-4, no other weight), in value and in gradient; sequences of different lengths,
    so that padding and the final <eos> could leak into either term."""
    from seqvcr.objectives import SeqVCR
    from seqvcr.runs import build_format, build_model
    from seqvcr.sequences import encode_examples, make_batch

    cfg = C.resolve(C.load_config(None, [
        "task.name=arith", "task.operators=3", "task.under=true", "method.name=seqvcr_pause",
        "model.preset=tiny", "model.n_layer=2", "model.n_head=2", "model.n_embd=16",
    ]))
    task = build_task(cfg)
    fmt = build_format(cfg, task)
    examples = task.generate(10, seed=4)
    data = encode_examples(fmt, examples)
    lengths = data.lengths.tolist()
    assert len(set(lengths)) > 2, "the test needs sequences of different lengths"
    x, y, mask = make_batch(data, torch.arange(10))
    torch.manual_seed(1)
    model = build_model(cfg, fmt.tokenizer.vocab_size, data.max_length).double()
    head = SeqVCR(16, proj_dim=12, lambda1=0.7, lambda2=0.3, layer=1).double()
    tok = fmt.tokenizer
    pause_ids = (tok.pause_start_id, tok.pause_id, tok.pause_end_id)
    tm = _train_module(model, head, positions, pause_ids)
    total, logged = tm(x, y, mask, torch.arange(10))
    lm, _, var, cov = logged  # lm_loss, seqvcr_loss, seqvcr_variance, seqvcr_covariance
    assert tm.log_names == ("lm_loss", "seqvcr_loss", "seqvcr_variance", "seqvcr_covariance")

    ids = [tok.encode(fmt.prompt_tokens(ex) + fmt.target_tokens(ex)) for ex in examples]
    prompts = [len(fmt.prompt_tokens(ex)) for ex in examples]
    out = model(x, output_hidden_states=True)
    lm_ref = lm_loss_reference(out.logits, ids, prompts)
    chosen = _hand_positions(x, lengths, prompts, pause_ids, positions)
    z = head.projection(out.hidden_states[1])  # (B, T, 12): layer 1 = the output of block 1
    sv_ref = seq_vcr_reference(z, 0.7, 0.3, chosen)
    var_ref, cov_ref = seq_vcr_terms_reference(z, chosen)
    torch.testing.assert_close(lm, lm_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var, var_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cov, cov_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(total, lm_ref + sv_ref, rtol=1e-10, atol=1e-12)
    params = [p for p in tm.parameters() if p.requires_grad]
    grads = torch.autograd.grad(total, params, allow_unused=True)
    grads_ref = torch.autograd.grad(lm_ref + sv_ref, params, allow_unused=True)
    for p, g, g_ref in zip(params, grads, grads_ref, strict=True):
        g = torch.zeros_like(p) if g is None else g
        g_ref = torch.zeros_like(p) if g_ref is None else g_ref
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-12)
    (k,) = [i for i, p in enumerate(params) if p is head.projection.weight]
    assert float(grads[k].abs().sum()) > 0  # the projection is trained by the Seq-VCR term
    # the reference is sensitive to what it checks: the final <eos> of the shorter rows counted as a
    # Seq-VCR position, or the last prompt token trained, would each change it
    with_eos = chosen | (torch.arange(x.shape[1])[None, :] == (data.lengths - 1)[:, None])
    with torch.no_grad():
        assert float(seq_vcr_reference(z, 0.7, 0.3, with_eos)) != pytest.approx(float(sv_ref), rel=1e-6)
        assert float(lm_loss_reference(out.logits, ids, [p - 1 for p in prompts])) != pytest.approx(
            float(lm_ref), rel=1e-6)


@pytest.mark.slow
def test_logged_losses_are_the_objective_of_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One step at learning rate 0 (so the saved weights are the ones the step used): the logged loss,
    LM loss, Seq-VCR loss and its two terms are those of the reference objective on that step's batch."""
    run = tmp_path / "run"
    cfg = _cfg(steps=1, extra=["train.log_every=1", "seqvcr.lambda1=0.6", "seqvcr.lambda2=0.2"])
    monkeypatch.setattr(training, "lr_at", lambda step, total, cfg: 0.0)
    training.train(cfg, run, progress=False)
    (rec,) = _records(run, "train")
    loaded = load_run(run)
    cfg = loaded.config
    train_ex, _ = load_splits(cfg, loaded.task)
    batch = training.BatchSampler(len(train_ex), cfg.optim.batch_size, cfg.train.seed).indices(0)
    examples = [train_ex[i] for i in batch.tolist()]
    fmt, tok = loaded.fmt, loaded.fmt.tokenizer
    ids = torch.tensor([tok.encode(fmt.prompt_tokens(ex) + fmt.target_tokens(ex)) for ex in examples])
    prompts = [len(fmt.prompt_tokens(ex)) for ex in examples]  # 2x2: every sequence has one length
    with torch.no_grad():
        out = loaded.model(ids[:, :-1], output_hidden_states=True)
        lm_ref = float(lm_loss_reference(out.logits, ids.tolist(), prompts))
        assert loaded.seqvcr is not None
        z = loaded.seqvcr.projection(out.hidden_states[-1])  # the default layer: the last
        var_ref, cov_ref = (float(t) for t in seq_vcr_terms_reference(z))  # every real input token
    assert rec["step"] == 1
    assert rec["lm_loss"] == pytest.approx(lm_ref, rel=1e-5)
    assert rec["seqvcr_variance"] == pytest.approx(var_ref, rel=1e-5)
    assert rec["seqvcr_covariance"] == pytest.approx(cov_ref, rel=1e-5)
    assert rec["seqvcr_loss"] == pytest.approx(0.6 * var_ref + 0.2 * cov_ref, rel=1e-4)
    assert rec["loss"] == pytest.approx(lm_ref + 0.6 * var_ref + 0.2 * cov_ref, rel=1e-5)


def test_a_loss_term_leaves_the_initial_weights_and_the_batches_alone() -> None:
    """Paired seeds of an ablation start alike: with Seq-VCR or the running-sum term switched on, the GPT
    is built from the same seeded generator state and the steps see the same batches (under ICoT-SI the
    same CoT removal too), as in the run without the term: what docs/results.md's paired-seed
    comparisons rely on."""
    import random

    def start(overrides: list[str]) -> tuple[dict[str, torch.Tensor], list[Batch]]:
        cfg = C.resolve(C.load_config(None, micro_overrides("vanilla", 400) + overrides))
        torch.manual_seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        cpu, ranks = torch.device("cpu"), training.Ranks(False, 0, 1)
        data, examples = training._load_data(cfg, cpu)
        tm, _ = training._build_model(cfg, data, examples, cpu, ranks)
        sampler, _, _ = training._plan_batches(cfg, data, ranks)
        batches = [data.curriculum.batch(sampler.indices(step), step) for step in (0, 37, 150, 399)]
        return tm.model.state_dict(), batches

    icot = ["curriculum.name=icot_si", "curriculum.steps_per_token=10"]
    seqvcr, running_sum = ["method.name=seqvcr"], ["running_sum.weight=1", "running_sum.layer=1"]
    for base, with_term in (([], seqvcr), ([], running_sum), (icot, icot + seqvcr)):
        (w0, b0), (w1, b1) = start(base), start(with_term)
        assert w1.keys() == w0.keys()
        assert all(torch.equal(w1[k], w0[k]) for k in w0)
        for a, b in zip(b0, b1, strict=True):
            assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("x", "y", "mask", "rows"))
