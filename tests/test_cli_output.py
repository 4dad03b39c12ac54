"""What the commands print and how they refuse: a readable summary per command (``--json`` for scripts),
``--data`` defaulting to the run's test file, argument errors in the sub-command's own usage, config key
typos with a suggestion and the YAML line, and ``--print-config`` marking the keys a method leaves
unused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import micro_overrides

from seqvcr import config as C
from seqvcr.cli import main, parse_args
from seqvcr.tasks import make_task, write_examples


def _run_cli(argv: list[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A micro run trained through ``seqvcr train`` (its config names a test file), and what it printed."""
    root = tmp_path_factory.mktemp("cli_output")
    task = make_task("mult", digits=2)
    test = root / "test.txt"
    write_examples(task, test, task.generate(30, seed=5))
    config = root / "micro.yaml"
    C.save_yaml(C.load_config(None, [*micro_overrides("seqvcr_pause", 10), f"task.test_file={test}"]), config)
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["train", str(config), "--out", str(root / "run"), "--quiet"]) == 0
    (root / "train_stdout.txt").write_text(buf.getvalue())
    return {"root": root, "run": root / "run", "test": test, "config": config}


# ---------------------------------------------------------------------------------------------- summaries


@pytest.mark.slow
def test_train_prints_where_the_results_went(trained: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = trained["run"]
    printed = (trained["root"] / "train_stdout.txt").read_text()
    assert printed.startswith(f"trained {run}: 10 steps, validation exact match ")
    for name in ("model.safetensors", "metrics.jsonl", "result.json", "config.yaml"):
        assert str(run / name) in printed
    assert f"next: seqvcr eval {run}  " in printed  # the config names a test file: no --data needed
    # --json: the one JSON line of before, for scripts
    code, out, err = _run_cli(["train", trained["config"], "--out", tmp_path / "r", "--quiet", "--json",
                               "optim.max_steps=2"], capsys)
    assert code == 0, err
    assert json.loads(out) == {"run_dir": str(tmp_path / "r"), "steps": 2,
                               "valid": json.loads((tmp_path / "r" / "result.json").read_text())["valid"][
                                   "exact_match"]}


@pytest.mark.slow
def test_eval_prints_a_metrics_block_and_defaults_to_the_test_file(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, test = trained["run"], trained["test"]
    code, out, err = _run_cli(["eval", run, "--quiet"], capsys)
    assert code == 0, err
    assert f"data: {test} (the run's task.test_file)" in err  # which file was scored
    lines = out.splitlines()
    assert lines[0] == f"{run} (step 10, seqvcr_pause, mult 2x2) on {test}, 30 examples"
    assert lines[1] == "***** eval metrics *****"
    rows = dict(line.strip().split(" = ", 1) for line in lines[2:] if " = " in line)
    rows = {k.strip(): v.strip() for k, v in rows.items()}
    saved = json.loads(next((run / "eval").glob("*.json")).read_text())
    assert rows["exact_match"] == f"{saved['exact_match']:.4f}"
    positions = [k for k in rows if k.startswith("accuracy_position_")]
    assert len(positions) == len(saved["position_accuracy"]) == 4  # 2x2 digits: 4 answer digits
    assert rows["accuracy_position_4"] == f"{saved['position_accuracy'][3]:.4f}"
    assert float(rows["examples_per_s"]) > 0
    assert any(line.startswith("saved: ") for line in lines)
    # every value row has its '=' in the same column (the metrics block layout)
    assert len({line.index(" = ") for line in lines[2:] if " = " in line}) == 1
    # --json: the saved summary
    code, out, _ = _run_cli(["eval", run, "--data", test, "--quiet", "--json", "--no-save"], capsys)
    assert code == 0 and json.loads(out)["exact_match"] == saved["exact_match"]


@pytest.mark.slow
def test_eval_and_entropy_without_data_or_test_file(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["task"]["test_file"] = None
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for command in ("eval", "entropy"):
        code, out, err = _run_cli([command, run, "--quiet"], capsys)
        assert code == 2 and out == ""
        assert err.strip() == (f"seqvcr {command}: error: no --data given and {run / 'config.yaml'} names no "
                               "task.test_file; pass --data FILE")


@pytest.mark.slow
def test_entropy_prints_a_table_per_layer(trained: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_cli(["entropy", trained["run"], "--n", "12", "--out", tmp_path / "e", "--quiet"],
                              capsys)
    assert code == 0, err
    assert "the run's task.test_file" in err
    saved = json.loads((tmp_path / "e" / "entropy.json").read_text())
    lines = out.splitlines()
    assert lines[1].split() == ["layer", "mean", "std", "95%", "CI", "dataset-level"]
    table = {line.split()[0]: line.split()[1:] for line in lines[2:] if line.startswith("L")}
    assert list(table) == ["L0", "L1", "L2"]
    for layer in saved["layers"]:
        assert table[layer["name"]][0] == f"{layer['mean']:.4f}"
        assert table[layer["name"]][3] == f"{layer['dataset']:.4f}"
    assert lines[-1].startswith("saved: ") and str(tmp_path / "e" / "entropy.json") in lines[-1]
    code, out, _ = _run_cli(["entropy", trained["run"], "--n", "12", "--out", tmp_path / "e", "--quiet",
                             "--json"], capsys)
    assert code == 0
    assert [L["mean"] for L in json.loads(out)["layers"]] == [L["mean"] for L in saved["layers"]]


def test_demo_prints_where_the_results_went(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import seqvcr.experiments.demo as D

    out = tmp_path / "demo"
    result = {"out": str(out), "report": str(out / "report.md"), "scale": "cpu", "steps": 100,
              "machine": "a test machine", "seconds": {"total": 90.0},
              "runs": [{"method": "vanilla", "exact_match": 0.25}, {"method": "seqvcr", "exact_match": 0.5}]}
    monkeypatch.setattr(D, "run_demo", lambda *a, **k: result)
    code, printed, _ = _run_cli(["demo", "--out", out], capsys)
    assert code == 0
    first = "demo done in 1.5 min (cpu scale, 100 steps per configuration, on a test machine)"
    assert printed.splitlines()[0] == first
    assert "vanilla" in printed and "0.2500" in printed and "0.5000" in printed
    for where in (out / "report.md", out / "runs", out / "data", out / "demo.json"):
        assert str(where) in printed
    code, printed, _ = _run_cli(["demo", "--out", out, "--json"], capsys)
    assert code == 0 and json.loads(printed) == result


# ------------------------------------------------------------------------------------------ argument errors


@pytest.mark.parametrize("argv, usage", [
    (["eval", "run", "--outt", "x"], "usage: seqvcr eval "),
    (["entropy", "run", "--bogus"], "usage: seqvcr entropy "),
    (["train", "c.yaml", "--bogus"], "usage: seqvcr train "),
])
def test_unknown_flag_prints_the_subcommands_usage(argv: list[str], usage: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage) and "unrecognized arguments: " in err
    assert f"seqvcr {argv[0]}: error:" in err


@pytest.mark.parametrize("argv", [
    ["eval", "run", "--dat", "f.txt"],
    ["train", "c.yaml", "--print-conf"],
    ["report", "r", "--out", "o", "--no-through"],
])
def test_prefixes_of_flags_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {argv[-1] if argv[-1].startswith('--') else argv[-2]}" in err


def test_every_parser_refuses_prefixes() -> None:
    """The seqvcr parser and each sub-command's, and the scripts' parsers, take no abbreviated flags."""
    import argparse
    import re

    from seqvcr.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert parser.allow_abbrev is False and all(p.allow_abbrev is False for p in sub.choices.values())
    root = Path(__file__).resolve().parent.parent
    for path in [*(root / "src").rglob("*.py"), *(root / "scripts").glob("*.py")]:
        for no, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"ArgumentParser\(", line) and not line.lstrip().startswith("class "):
                assert "allow_abbrev=False" in line, f"{path}:{no}: a parser that accepts prefixes"


def test_config_key_typo_suggests_and_names_the_yaml_line(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("task:\n  name: mult\n  digits: 2\noptim:\n  batch_size: 8\n  lrr: 0.001\n")
    code, _, err = _run_cli(["train", path, "--print-config"], capsys)
    assert code == 2
    assert err.strip().startswith(f"seqvcr train: error: {path}:6: unknown config key 'optim.lrr'; "
                                  "did you mean 'optim.lr'? allowed: ")
    # a section name
    path.write_text("optimm:\n  lr: 0.001\n")
    code, _, err = _run_cli(["train", path, "--print-config"], capsys)
    assert f"{path}:1: unknown config key 'optimm'; did you mean 'optim'?" in err
    # from an override: no file line, still a suggestion
    path.write_text("task:\n  name: mult\n")
    code, _, err = _run_cli(["train", path, "--print-config", "model.n_layers=3"], capsys)
    assert code == 2 and f"{path}:" not in err
    assert "unknown config key 'model.n_layers'; did you mean 'model.n_layer'?" in err
    assert C.yaml_key_line(path, "task.name") == 2 and C.yaml_key_line(path, "task.digits") is None


def test_print_config_marks_what_the_method_leaves_unused(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("task:\n  name: mult\n  digits: 2\nmethod:\n  name: vanilla\n  pauses: 7\n")
    code, out, err = _run_cli(["train", path, "--print-config"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert "  pauses: 7  # unused: method vanilla has no pause tokens" in lines
    assert "seqvcr:  # unused: method vanilla has no Seq-VCR term" in lines
    assert "  operators: 4  # unused: not an option of task mult" in lines
    assert "  digits: 2" in lines  # used: no mark
    assert yaml.safe_load(out) == C.to_dict(C.resolve(C.load_config(path)))  # still the same config
    code, out, _ = _run_cli(["train", path, "--print-config", "method.name=seqvcr_pause"], capsys)
    assert "  pauses: 7" in out.splitlines() and "seqvcr:" in out.splitlines()


# ------------------------------------------------------------------------------------- a corrupt model file


@pytest.mark.slow
def test_a_corrupt_model_file_names_the_checkpoint_beside_it(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    model = run / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-100])  # truncated
    code, _, err = _run_cli(["eval", run, "--data", trained["test"], "--quiet"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"seqvcr eval: error: {model}: not a readable model: truncated or corrupt")
    assert err.strip().endswith("; checkpoint.safetensors beside it holds the weights of step 10: remove "
                                "model.safetensors to use them, or restore it from a copy")
    model.unlink()  # what the message says: the checkpoint's weights are scored
    code, out, err = _run_cli(["eval", run, "--quiet", "--json", "--no-save"], capsys)
    assert code == 0, err
    assert json.loads(out)["source"]["weights"] == "checkpoint.safetensors"
    # without a readable checkpoint beside it, the message says to restore or re-train
    shutil.copy(trained["run"] / "model.safetensors", model)
    model.write_bytes(b"garbage" * 100)
    (run / "checkpoint.safetensors").write_bytes(b"garbage" * 100)
    code, _, err = _run_cli(["eval", run, "--data", trained["test"], "--quiet"], capsys)
    assert code == 2 and err.strip().endswith("restore it from a copy, or re-train the run with --force")
