"""The command line itself: overrides anywhere on a train line, --print-config, --version, and help
texts that tell the truth (every option explained, defaults shown, nothing argparse-internal)."""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import micro_overrides

from seqvcr import __version__
from seqvcr import config as C
from seqvcr.cli import HelpFormatter, build_parser, main, parse_args

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def micro_yaml(tmp_path: Path) -> Path:
    cfg = C.load_config(None, micro_overrides("seqvcr_pause", 5))
    path = tmp_path / "micro.yaml"
    C.save_yaml(cfg, path)
    return path


# ---------------------------------------------------------------------------------------------- train


def test_overrides_anywhere_on_the_train_line() -> None:
    args = parse_args(["train", "c.yaml", "a.b=1", "--out", "d", "c.d=2", "--force", "a.b=3"])
    assert args.config == "c.yaml" and args.out == "d" and args.force
    assert args.overrides == ["a.b=1", "c.d=2", "a.b=3"]  # in the order given: the last a.b wins
    assert parse_args(["train", "--out", "d", "c.yaml", "x.y=z"]).overrides == ["x.y=z"]


def test_unknown_words_are_still_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["train", "c.yaml", "--out", "d", "--bogus"], ["train", "c.yaml", "--out", "d", "stray"],
                 ["eval", "r", "--data", "f", "a.b=1"]):
        with pytest.raises(SystemExit) as exit_:
            parse_args(argv)
        assert exit_.value.code == 2
        assert "unrecognized arguments" in capsys.readouterr().err


def test_print_config_resolves_and_writes_nothing(
    micro_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", str(micro_yaml), "--out", str(out), "optim.lr=0.002", "--print-config",
            "method.name=pause"]
    assert main(argv) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = C.resolve(C.load_config(micro_yaml, ["optim.lr=0.002", "method.name=pause"]))
    assert printed == C.to_dict(expected)
    assert printed["optim"]["lr"] == 0.002 and printed["method"]["name"] == "pause"
    assert printed["seqvcr"]["lambda1"] == 1.0  # a derived default (the task's coefficient) is filled in
    assert not out.exists()


def test_print_config_reports_a_bad_override_in_one_line(
    micro_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(micro_yaml), "--print-config", "optim.lr=fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'optim.lr'" in err


@pytest.mark.slow
def test_overrides_after_out_train(micro_yaml: Path, tmp_path: Path) -> None:
    """The README's multi-GPU form, end to end: the override after --out is applied to the run."""
    out = tmp_path / "run"
    assert main(["train", str(micro_yaml), "--out", str(out), "--quiet", "optim.max_steps=3"]) == 0
    assert C.load_config(out / "config.yaml").optim.max_steps == 3


# ---------------------------------------------------------------------------------------------- version


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"seqvcr {__version__}"
    assert importlib.metadata.version("seqvcr") == __version__  # pyproject takes it from seqvcr.__version__


# ---------------------------------------------------------------------------------------------- help


def _parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"seqvcr": parser, **{f"seqvcr {name}": p for name, p in sub.choices.items()}}


def test_every_subcommand_is_listed_with_a_help_line() -> None:
    text = build_parser().format_help()
    assert "==SUPPRESS==" not in text
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    listed = {a.dest: a.help for a in sub._choices_actions}
    assert set(listed) == set(sub.choices)
    assert all(h and h != argparse.SUPPRESS for h in listed.values())


@pytest.mark.parametrize("name", list(_parsers()))
def test_help_tells_every_option_and_default(name: str) -> None:
    parser = _parsers()[name]
    assert isinstance(parser.formatter_class, type) and issubclass(parser.formatter_class, HelpFormatter)
    assert issubclass(HelpFormatter, argparse.ArgumentDefaultsHelpFormatter)
    text = parser.format_help()
    assert "==SUPPRESS==" not in text and "%%" not in text, name
    flat = re.sub(r"\s+", " ", text)
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        what = f"{name} {'/'.join(action.option_strings) or action.dest}"
        assert action.help and action.help != argparse.SUPPRESS, f"{what}: no help text"
        default = action.default
        if action.option_strings and default not in (None, False, []):
            assert f"(default: {default})" in flat or "default" in action.help, f"{what}: default not shown"


def test_help_texts_say_what_the_commands_write() -> None:
    demo = re.sub(r"\s+", " ", _parsers()["seqvcr demo"].format_help())
    assert "OUT/report.md" in demo and "OUT/report/report.md" not in demo
    assert "--scale" in demo and "gpu" in demo  # docs/demo.md cites --scale gpu: the help shows it
    entropy = re.sub(r"\s+", " ", _parsers()["seqvcr entropy"].format_help())
    assert "95% CI" in entropy


@pytest.mark.slow
def test_help_works_where_fcntl_is_missing() -> None:
    """``fcntl`` (POSIX) is imported where a sweep takes a lock, not when the command starts."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "from seqvcr.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    sys.exit(e.code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sweep" in done.stdout and "sweep-run" in done.stdout
