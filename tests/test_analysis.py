"""Layer entropy, figures, tables and the run report (seqvcr.analysis), on micro runs trained here."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import micro_overrides
from oracles import oracle_entropy_means, oracle_eval

from seqvcr import config as C
from seqvcr import training
from seqvcr.analysis.layer_entropy import compute_layer_entropy, sample_indices, write_entropy
from seqvcr.analysis.report import build_report, majority_baseline
from seqvcr.cli import main
from seqvcr.errors import RunDirError
from seqvcr.reporting import run_tables as tables
from seqvcr.runs import LoadedRun, build_format, build_model, build_task, load_run
from seqvcr.sequences import encode_examples
from seqvcr.tasks import make_task, read_examples, write_examples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two micro 2x2 runs (vanilla, seqvcr_pause) and a 2x2 test file disjoint from their training data."""
    root = tmp_path_factory.mktemp("analysis")
    task = make_task("mult", digits=2)
    test = root / "test.txt"
    write_examples(task, test, task.generate(60, seed=99))
    out: dict[str, Path] = {"test": test}
    for method in ("vanilla", "seqvcr_pause"):
        cfg = C.load_config(None, micro_overrides(method, 20) + [f"task.test_file={test}"])
        training.train(cfg, root / method, progress=False, command=f"seqvcr train micro {method}")
        out[method] = root / method
    return out


def _naive_entropy(z: torch.Tensor) -> float:
    """-sum p log p of the eigenvalues of the raw Gram Z Z^T, normalised by the trace (Eq. 2, alpha=1)."""
    z = z.double()
    eig = torch.linalg.eigvalsh(z @ z.T).clamp(min=0)
    p = eig / eig.sum()
    p = p[p > 1e-12]
    return float(-(p * p.log()).sum())


@pytest.mark.slow
def test_entropy_matches_the_naive_formula(runs: dict[str, Path]) -> None:
    res = compute_layer_entropy(runs["seqvcr_pause"], runs["test"], n_sequences=40, seed=0, batch_size=16)
    run = load_run(runs["seqvcr_pause"])
    examples = read_examples(run.task, runs["test"])
    assert res["n"] == 40 and len(res["indices"]) == 40
    assert len(res["layers"]) == run.model.config.n_layer + 1
    for k in (0, 7, 39):
        ex = examples[res["indices"][k]]
        data = encode_examples(run.fmt, [ex])
        ids = data.ids[:, : int(data.lengths[0]) - 1]  # every real token but the final <eos>
        with torch.no_grad():
            hidden = run.model(ids, output_hidden_states=True).hidden_states
        for layer, h in enumerate(hidden):
            assert res["layers"][layer]["values"][k] == pytest.approx(_naive_entropy(h[0]), rel=1e-6)
    # summary statistics of the distribution
    vals = torch.tensor(res["layers"][1]["values"], dtype=torch.float64)
    L1 = res["layers"][1]
    assert L1["mean"] == pytest.approx(float(vals.mean()))
    assert L1["std"] == pytest.approx(float(vals.std()))
    half = 1.959963984540054 * float(vals.std()) / math.sqrt(40)
    assert L1["ci95"] == pytest.approx([L1["mean"] - half, L1["mean"] + half])
    # dataset level: one vector per sequence, the mean of its token representations
    means = []
    for i in res["indices"]:
        data = encode_examples(run.fmt, [examples[i]])
        with torch.no_grad():
            h = run.model(data.ids[:, : int(data.lengths[0]) - 1], output_hidden_states=True).hidden_states[2]
        means.append(h[0].double().mean(0))
    assert res["layers"][2]["dataset"] == pytest.approx(_naive_entropy(torch.stack(means)), rel=1e-6)


def test_entropy_normalised_and_variable_lengths(tmp_path: Path) -> None:
    """Arithmetic expressions have sequences of different lengths: each is measured on its own tokens."""
    cfg = C.resolve(C.load_config(None, ["task.name=arith", "task.operators=3", "model.preset=tiny",
                                         "model.n_layer=1", "model.n_embd=16", "model.n_head=2"]))
    task = build_task(cfg)
    fmt = build_format(cfg, task)
    examples = task.generate(30, seed=3)
    path = tmp_path / "arith.txt"
    write_examples(task, path, examples, cot=False)
    examples = read_examples(task, path)
    data = encode_examples(fmt, examples)
    assert len(set(data.lengths.tolist())) > 1
    torch.manual_seed(0)
    model = build_model(cfg, fmt.tokenizer.vocab_size, data.max_length).eval()
    run = LoadedRun(tmp_path, cfg, task, fmt, model, None, 0, None)
    res = compute_layer_entropy(run, path, n_sequences=None, batch_size=7, normalize=True)
    assert res["n"] == 30 and res["sample"] == "the whole file"
    for k in (0, 11, 29):
        one = encode_examples(fmt, [examples[k]])
        t = int(one.lengths[0]) - 1
        with torch.no_grad():
            h = model(one.ids[:, :t], output_hidden_states=True).hidden_states[1][0]
        expected = _naive_entropy(h) / math.log(min(t, 16))
        assert res["layers"][1]["values"][k] == pytest.approx(expected, rel=1e-6)
    assert all(0.0 <= v <= 1.0 + 1e-12 for L in res["layers"] for v in L["values"])


def test_sample_indices() -> None:
    assert sample_indices(10, None, 0) == list(range(10))
    assert sample_indices(10, 20, 0) == list(range(10))
    assert sample_indices(10, 4, None) == [0, 1, 2, 3]
    a = sample_indices(1000, 50, 1)
    assert a == sample_indices(1000, 50, 1) and a == sorted(a) and len(set(a)) == 50
    assert a != sample_indices(1000, 50, 2)


@pytest.mark.slow
def test_entropy_command_writes_json_and_csv(runs: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ent"
    assert main(["entropy", str(runs["vanilla"]), "--data", str(runs["test"]), "--n", "25",
                 "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "entropy.json").read_text())
    assert [L["mean"] for L in printed["layers"]] == [L["mean"] for L in saved["layers"]]
    assert "values" not in printed["layers"][0] and len(saved["layers"][0]["values"]) == 25
    rows = list(csv.DictReader((out / "entropy.csv").open()))
    assert [r["name"] for r in rows] == ["L0", "L1", "L2"]
    assert float(rows[1]["mean"]) == pytest.approx(saved["layers"][1]["mean"])
    values = list(csv.DictReader((out / "entropy_values.csv").open()))
    assert len(values) == 3 * 25
    direct = compute_layer_entropy(runs["vanilla"], runs["test"], n_sequences=25)
    assert [L["mean"] for L in direct["layers"]] == [L["mean"] for L in saved["layers"]]
    # write_entropy alone
    paths = write_entropy(direct, tmp_path / "again")
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())


def test_tables_have_the_table1_layout() -> None:
    entries = [
        {"method": "seqvcr_pause", "pauses": 2, "task": "mult 4x4", "exact_match": 0.99},
        {"method": "vanilla", "pauses": 2, "task": "mult 4x4", "exact_match": 0.25},
        {"method": "vanilla", "pauses": 2, "task": "mult 5x5", "exact_match": 0.0},
        {"method": "cot", "pauses": 2, "task": "mult 4x4", "exact_match": 1.0},
        {"method": "seqvcr_pause", "pauses": 2, "task": "mult 4x4", "exact_match": 0.97},
    ]
    t = tables.accuracy_table(entries)
    assert t.header == ["configuration", "mult 4x4", "mult 5x5"]
    assert [r[0] for r in t.rows] == ["With CoT", "Vanilla (no CoT)", "Seq-VCR + Pause (2)"]
    assert t.rows[2][1] == pytest.approx(0.98) and t.rows[0][2] is None
    md = t.to_markdown()
    assert md.splitlines()[0] == "| configuration | mult 4x4 | mult 5x5 |"
    assert "0.980 +- 0.014 (2 runs)" in md
    assert t.to_csv().splitlines()[0] == "configuration,mult 4x4,mult 5x5"
    thr = tables.throughput_table([
        {"run": "a", "method": "vanilla", "task": "t", "examples_per_s": 100.0},
        {"run": "b", "method": "cot", "task": "t", "examples_per_s": 17.0},
        {"run": "c", "method": "cot", "task": "u", "examples_per_s": 5.0},
    ])
    assert [r[4] for r in thr.rows] == [pytest.approx(1.0), pytest.approx(0.17), None]


def test_majority_baseline() -> None:
    preds = [{"target": "1 2"}, {"target": "1 3"}, {"target": "0 3"}, {"target": "1 3"}]
    assert majority_baseline(preds) == [0.75, 0.75]


@pytest.mark.slow
def test_report_figures_tables_and_numbers(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    path = build_report([runs["vanilla"], runs["seqvcr_pause"]], out, n_sequences=30, device="cpu",
                        command="seqvcr report ...", progress=False)
    assert path == out / "report.md"
    for name in ("entropy_per_layer.png", "entropy_hist.png", "position_accuracy.png", "loss_curves.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
    for stem in ("accuracy", "positions", "entropy", "throughput"):
        assert (out / f"{stem}.md").stat().st_size > 0 and (out / f"{stem}.csv").stat().st_size > 0
    text = path.read_text()
    for needle in ("entropy_per_layer.png", "entropy_hist.png", "position_accuracy.png", "loss_curves.png",
                   "| configuration | mult 2x2 |", "Vanilla (no CoT)", "Seq-VCR + Pause (2)", "T_norm",
                   "seqvcr train micro vanilla", "seqvcr report ...", "seed", "2 layers x 32 wide"):
        assert needle in text, needle
    assert not list(tmp_path.glob(".report.tmp-*"))  # the staging directory is gone
    # the report's numbers against naive greedy decoding scored by hand, and Eq. 2 from NumPy
    summary = json.loads((out / "summary.json").read_text())
    for r in summary["runs"]:
        rd, here = runs[r["method"]], out / "analysis" / r["name"]
        em, pos, outputs = oracle_eval(rd, runs["test"], budget=5)  # 2x2: 4 digits and <eos>
        assert r["exact_match"] == pytest.approx(em) and r["n"] == 60
        assert r["position_accuracy"] == pytest.approx(pos)
        preds = [json.loads(line) for line in (here / "predictions.jsonl").read_text().splitlines()]
        assert [p["output"].split() for p in preds] == outputs
        indices = json.loads((here / "entropy.json").read_text())["indices"]
        assert len(set(indices)) == 30 and all(0 <= i < 60 for i in indices)
        assert r["entropy_mean"] == pytest.approx(oracle_entropy_means(rd, runs["test"], indices), rel=1e-6)
    assert summary["runs"][0]["T_norm"] == pytest.approx(1.0)


@pytest.mark.slow
def test_report_refuses_an_existing_report(runs: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    build_report([runs["vanilla"]], out, n_sequences=10, device="cpu", progress=False)
    before = (out / "report.md").read_text()
    with pytest.raises(RunDirError, match="already holds a report"):
        build_report([runs["vanilla"]], out, n_sequences=10, device="cpu", progress=False)
    assert main(["report", str(runs["vanilla"]), "--out", str(out), "--n", "10", "--quiet"]) == 2
    assert "already holds a report" in capsys.readouterr().err
    assert (out / "report.md").read_text() == before
    assert main(["report", str(runs["vanilla"]), "--out", str(out), "--n", "10", "--quiet", "--force"]) == 0
    assert (out / "report.md").is_file()


@pytest.mark.slow
def test_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["entropy", str(tmp_path), "--data", "ref:mult/3x3/test.txt"]) == 2
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_report_dispatches_a_sweep_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import seqvcr.experiments.aggregate as aggregate

    calls = []

    def fake(path: Path, out: str | None = None, force: bool = False) -> Path:
        calls.append((Path(path), out, force))
        return Path(path) / "report" / "report.md"

    monkeypatch.setattr(aggregate, "report_sweep", fake)
    (tmp_path / "manifest.json").write_text("{}")
    assert main(["report", str(tmp_path), "--force"]) == 0
    assert calls == [(tmp_path, None, True)]
    assert json.loads(capsys.readouterr().out)["report"].endswith("report.md")
