"""`seqvcr report STUDY --table curves / probe / correlation` on a committed study: every number against
one computed here from the run directories' own files (metrics.jsonl, probe.json, entropy.json,
test_eval.json), by string operations and plain Python."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from seqvcr.cli import main
from seqvcr.reporting.study import first_step_at, middle_positions, probe_middle

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "results" / "cpu_finetune"


def _rows(text: str, first_cell: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header starts with ``first_cell``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_cell} |"))
    body = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        body.append([c.strip() for c in line.strip("|").split("|")])
    return body


def _printed(capsys: pytest.CaptureFixture[str], table: str) -> str:
    capsys.readouterr()
    assert main(["report", str(STUDY), "--table", table]) == 0
    return capsys.readouterr().out


def test_helpers() -> None:
    assert middle_positions(6) == [2, 3] and middle_positions(8) == [2, 3, 4, 5] and middle_positions(4) == []
    assert probe_middle([[0, 0, 0.5, 0.7, 0, 0], [1, 1, 1, 1, 1, 1]]) == pytest.approx([0.6, 1.0])
    curve = [(1000, 0.1), (2000, 0.6), (3000, 0.4), (4000, 0.95)]
    assert [first_step_at(curve, t) for t in (0.5, 0.9, 0.99)] == [2000, 4000, None]


def test_the_probe_table_and_the_correlation_match_the_run_files(capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((STUDY / "manifest.json").read_text())
    dirs = {(r["setting"], int(r["seed"])): STUDY / r["dir"] for r in manifest["runs"]}
    rows = _rows(_printed(capsys, "probe"), "setting")
    assert len(rows) == 12
    by_run: dict[tuple[str, int], tuple[float, float, float]] = {}
    for row in rows:
        rd = dirs[(row[0], int(row[1]))]
        em = json.loads((rd / "test_eval.json").read_text())["exact_match"]
        assert float(row[2]) == pytest.approx(em, abs=5e-4)
        entropy = json.loads((rd / "entropy.json").read_text())["layers"]
        assert [float(c) for c in row[3:6]] == pytest.approx([L["mean"] for L in entropy], abs=5e-4)
        r2 = json.loads((rd / "probe.json").read_text())["r2"]  # layers x positions 1..6
        mid = [(r[2] + r[3]) / 2 for r in r2]  # positions 3 and 4
        assert [float(c) for c in row[6:9]] == pytest.approx(mid, abs=5e-3)
        by_run[(row[0], int(row[1]))] = (em, entropy[1]["mean"], mid[1])

    # Spearman's rho with the probe (one intermediate layer: L1), by ranking here (no ties in these runs)
    def ranks(xs: list[float]) -> list[int]:
        return [sorted(xs).index(x) for x in xs]

    ems, _, r2s = zip(*by_run.values())
    ra, rb = ranks(list(ems)), ranks(list(r2s))
    n = len(ra)
    rho = 1 - 6 * sum((a - b) ** 2 for a, b in zip(ra, rb)) / (n * (n * n - 1))
    text = _printed(capsys, "correlation")
    assert f"over 12 runs: rho = {rho:+.2f}" in text.split("With the probe")[1]


def test_the_curves_table_matches_metrics_jsonl(capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((STUDY / "manifest.json").read_text())
    dirs = {(r["setting"], int(r["seed"])): STUDY / r["dir"] for r in manifest["runs"]}
    rows = _rows(_printed(capsys, "curves"), "setting")
    assert len(rows) == 12
    for row in rows:
        rd = dirs[(row[0], int(row[1]))]
        recs = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines() if line.strip()]
        curve = [(r["step"], r["exact_match"]) for r in recs
                 if r.get("kind") == "eval" and r.get("split") == "valid"]
        for cell, t in zip(row[2:4], (0.5, 0.9)):
            hit = [s for s, v in curve if v >= t]
            assert cell == (f"{hit[0]:,}" if hit else "-")
        best = max(v for _, v in curve)
        assert row[4].startswith(f"{best:.3f} (")
        assert row[5] == f"{curve[-1][1]:.3f} ({curve[-1][0]:,})"
        assert not math.isnan(float(row[6]))


def _spearman(xs: list[float], ys: list[float]) -> float:
    """Pearson's r of the average ranks (ties share their mean rank)."""
    def ranks(v: list[float]) -> list[float]:
        order = sorted(v)
        return [sum(i for i, o in enumerate(order) if o == x) / order.count(x) for x in v]

    a, b = ranks(xs), ranks(ys)
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def test_several_studies_are_pooled_and_a_label_can_be_left_out(capsys: pytest.CaptureFixture[str]) -> None:
    """`seqvcr report A B --table correlation --exclude CoT`: each study, then the runs of both pooled,
    CoT's left out; the pooled rho against one computed here from the run files."""
    studies = [STUDY, ROOT / "results" / "cpu_table1"]
    ems, entropies, r2s = [], [], []
    for study in studies:
        manifest = json.loads((study / "manifest.json").read_text())
        for run in manifest["runs"]:
            if run["setting"] == "CoT":
                continue
            rd = study / run["dir"]
            ems.append(json.loads((rd / "eval.json").read_text())["exact_match"])
            entropies.append(json.loads((rd / "entropy.json").read_text())["layers"][1]["mean"])
            r2 = json.loads((rd / "probe.json").read_text())["r2"][1]
            r2s.append((r2[2] + r2[3]) / 2)
    capsys.readouterr()
    assert main(["report", *map(str, studies), "--table", "correlation", "--exclude", "CoT"]) == 0
    out = capsys.readouterr().out
    assert out.count("### ") == 3 and "### all: the 2 studies above, pooled" in out
    pooled = out.split("### all")[1]
    assert f"over {len(ems)} runs: rho = {_spearman(ems, entropies):+.2f}" in pooled
    assert f"over {len(ems)} runs: rho = {_spearman(ems, r2s):+.2f}" in pooled.split("With the probe")[1]
    assert len(ems) == 27


def test_an_unknown_label_to_exclude_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["report", str(STUDY), "--table", "correlation", "--exclude", "Cot"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().count("\n") == 0
    assert "--exclude: no setting 'Cot'; settings: " in err and "Vanilla" in err


def _exact_matches(study: Path, label: str) -> list[float]:
    """The exact match of every run of ``label`` in a committed study, read from its eval.json files."""
    manifest = json.loads((study / "manifest.json").read_text())
    return [json.loads((study / r["dir"] / "eval.json").read_text())["exact_match"]
            for r in manifest["runs"] if r["setting"] == label]


def test_the_rank_test_goes_with_studies_holding_both_groups(capsys: pytest.CaptureFixture[str]) -> None:
    """With several studies, `--rank-test A B` goes with each study holding A and B or, where none does,
    with the pooled settings (`directory: label`); U against pairs counted here; absent labels: one line."""
    table1 = ROOT / "results" / "cpu_table1"
    studies = [str(STUDY), str(table1)]

    def u(a: list[float], b: list[float]) -> float:
        return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)

    capsys.readouterr()
    assert main(["report", *studies, "--table", "study", "--rank-test", "Vanilla", "Seq-VCR"]) == 0
    sections = capsys.readouterr().out.split("### ")[1:]
    assert [s.count("Rank test") for s in sections] == [1, 1, 0]  # each study, not the pooled one
    for section, study in zip(sections, (STUDY, table1)):
        a, b = _exact_matches(study, "Vanilla"), _exact_matches(study, "Seq-VCR")
        assert f"U = {u(a, b):g} of {len(a) * len(b)} pairs" in section
    # groups from two studies: only the pooled settings hold both
    assert main(["report", *studies, "--table", "study", "--rank-test", "cpu_finetune: Vanilla",
                 "cpu_table1: Vanilla|cpu_table1: CoT"]) == 0
    sections = capsys.readouterr().out.split("### ")[1:]
    assert [s.count("Rank test") for s in sections] == [0, 0, 1]
    a = _exact_matches(STUDY, "Vanilla")
    b = _exact_matches(table1, "Vanilla") + _exact_matches(table1, "CoT")
    assert f"U = {u(a, b):g} of {len(a) * len(b)} pairs" in sections[2]
    # a label no study holds (CoT is only in cpu_table1): nothing printed, one line naming it
    assert main(["report", str(STUDY), "--rank-test", "Vanilla", "CoT"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().count("\n") == 0
    assert "--rank-test: no study has every setting of 'Vanilla' and 'CoT'" in err


@pytest.mark.parametrize(("p", "text"), [(0.1, "0.10"), (0.35, "0.35"), (0.0462, "0.046"), (0.01, "0.01"),
                                         (0.0022, "0.0022"), (7.2e-09, "7.2e-09"), (1.0, "1.00")])
def test_p_values_print_with_two_decimals_or_two_significant_digits(p: float, text: str) -> None:
    from seqvcr.reporting.tables import fmt_p

    assert fmt_p(p) == text


def test_the_study_report_holds_the_curves_and_probe_tables(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`seqvcr report STUDY` writes into report.md the per-run curves and probe tables and the
    correlation that `--table` prints (checked against the run files above), with the correlation's
    figure; without probe.json files the probe table goes."""
    study = tmp_path / "cpu_finetune"
    shutil.copytree(STUDY, study, ignore=shutil.ignore_patterns("model.safetensors", "report"))
    printed = {name: _rows(_printed(capsys, name), "setting") for name in ("curves", "probe")}
    assert main(["report", str(study), "--quiet"]) == 0
    report = (study / "report" / "report.md").read_text()
    section = report.split("## ")[1]  # the study's section (cpu_finetune has one study)
    assert "first validation probe at 0.5 and 0.9" in section and "running-sum probe" in section
    assert _rows(section.split("Learning curves:")[1], "setting") == printed["curves"]
    assert _rows(section.split("running-sum probe")[1], "setting") == printed["probe"]
    correlation = _printed(capsys, "correlation").split("\n\n")[1].strip()  # after the study's heading
    assert f"Does collapse predict failure? {correlation}" in section and "over 12 runs" in correlation
    assert "(configuration_collapse.png)" in section
    assert (study / "report" / "configuration_collapse.png").is_file()

    for probe in study.glob("*/probe.json"):
        probe.unlink()
    assert main(["report", str(study), "--quiet", "--force"]) == 0
    report = (study / "report" / "report.md").read_text()
    assert "first validation probe at 0.5" in report and "running-sum probe" not in report


def test_the_correlation_plot_draws_every_run_at_its_files_numbers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--correlation-plot`: one point per run at (entropy of L1, exact match) and (probe R^2 of L1 at
    positions 3-4, exact match), read here from the run files; the panel titles carry the printed rhos."""
    from seqvcr.experiments.aggregate import collect
    from seqvcr.reporting.study_figures import correlation_figure

    png = tmp_path / "corr.png"
    capsys.readouterr()
    assert main(["report", str(STUDY), "--table", "correlation", "--correlation-plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    manifest = json.loads((STUDY / "manifest.json").read_text())
    expected: dict[str, set[tuple[float, float]]] = {"entropy": set(), "probe": set()}
    for r in manifest["runs"]:
        rd = STUDY / r["dir"]
        em = json.loads((rd / "test_eval.json").read_text())["exact_match"]
        expected["entropy"].add((round(json.loads((rd / "entropy.json").read_text())["layers"][1]["mean"], 6),
                                 round(em, 6)))
        r2 = json.loads((rd / "probe.json").read_text())["r2"][1]
        expected["probe"].add((round((r2[2] + r2[3]) / 2, 6), round(em, 6)))
    fig = correlation_figure(collect(STUDY).studies[0].settings, "title")
    axes = fig.axes[:2]
    for ax, which in zip(axes, ("entropy", "probe")):
        drawn = {(round(float(x), 6), round(float(y), 6)) for c in ax.collections for x, y in c.get_offsets()}
        assert drawn == expected[which]
        assert ax.get_title().split(": ", 1)[1] in text  # "rho = ... (two-sided p = ...)", as printed
    assert len(fig.legends[0].get_texts()) == 4  # one entry per setting
