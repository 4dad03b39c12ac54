"""The files around the code: what ``scripts/bootstrap.sh`` installs, ``.ci/run`` against the README's test
command, ``.gitignore`` against what the documented commands write, and the Markdown tables of the docs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_docs_commands import ALL, markdown_files

from seqvcr.cli import parse_args

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------- bootstrap

FAKE_PYTHON = """#!/usr/bin/env bash
# stands in for .venv/bin/python: logs what bootstrap.sh asks of it
echo "$*" >> "$LOG"
if [ "$1" = "-c" ] && [ "$2" = "import torch" ]; then exit "${FAKE_TORCH_MISSING:-0}"; fi
if [ "$1" = "-c" ] && [[ "$2" == *find_spec* ]]; then exit 0; fi   # 0: a module is missing
exit 0
"""


def _bootstrap(tmp_path: Path, *args: str, torch_missing: bool = False,
               extras_env: str | None = None) -> tuple[int, list[str], str]:
    """Run a copy of scripts/bootstrap.sh against a fake .venv; returns its exit status, the pip install
    lines it ran and its stderr."""
    repo = tmp_path / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "bootstrap.sh", repo / "scripts" / "bootstrap.sh")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    fake = repo / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "log.txt"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("SEQVCR_EXTRAS", "TORCH_SPEC")}
    env.update(LOG=str(log), FAKE_TORCH_MISSING="1" if torch_missing else "0")
    if extras_env is not None:
        env["SEQVCR_EXTRAS"] = extras_env
    done = subprocess.run(["bash", str(repo / "scripts" / "bootstrap.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=60)
    installs = [line for line in log.read_text().splitlines() if line.startswith("-m pip install")]
    return done.returncode, installs, done.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bootstrap_installs_the_core_unless_asked_for_the_test_extra(tmp_path: Path) -> None:
    pip = "-m pip install --quiet --disable-pip-version-check"
    code, installs, err = _bootstrap(tmp_path)
    assert code == 0, err
    assert installs == [f"{pip} -e ."]  # the main job: no transformers, tensorboard or wandb
    code, installs, err = _bootstrap(tmp_path, "test")
    assert code == 0 and installs == [f"{pip} -e .[test]"], err
    code, installs, err = _bootstrap(tmp_path, extras_env="dev")  # SEQVCR_EXTRAS=dev: ruff too
    assert code == 0 and installs == [f"{pip} -e .[dev]"], err
    code, installs, err = _bootstrap(tmp_path, "test", extras_env="dev")  # the argument wins
    assert code == 0 and installs == [f"{pip} -e .[test]"], err
    # no torch in the environment: exactly torch==2.13.0 (anything else may pull GBs of CUDA wheels)
    code, installs, err = _bootstrap(tmp_path, torch_missing=True)
    assert code == 0 and installs == [f"{pip} torch==2.13.0", f"{pip} -e ."], err
    code, installs, err = _bootstrap(tmp_path, "everything")
    assert code == 2 and installs == []
    assert err.strip() == "bootstrap: unknown extras 'everything'; expected core, test or dev"


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert commands == ["bash scripts/bootstrap.sh && .venv/bin/seqvcr demo",
                        "bash scripts/bootstrap.sh test && .venv/bin/python -m pytest"]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci == [commands[1]]


# ---------------------------------------------------------------------------------------------- .gitignore


def _output_dir(argv: list[str]) -> str | None:
    """The directory a documented command writes to, relative to where it runs, or None (no output, a
    placeholder, or a path outside the work tree)."""
    if any(re.search(r"<[^>]+>|\.\.\.|\b[A-Z][A-Z_]{2,}\b", a) for a in argv):
        return None
    try:
        args = parse_args(argv)
    except SystemExit:
        return None
    command = args.command
    out = getattr(args, "out_dir", None) or getattr(args, "out", None)
    if command == "train" and not args.print_config:
        out = out or f"runs/{Path(args.config).stem}"
    elif command == "sweep" and not getattr(args, "dry_run", False):
        out = out or f"sweeps/{Path(args.plan).stem}"
    elif command == "eval":
        out = getattr(args, "predictions", None)
    elif command in ("train", "sweep"):
        out = None
    if not out or str(out).startswith(("/", "~", "$")):
        return None
    return str(out)


DOCUMENTED_OUTPUTS = sorted({o for _, argv in ALL if (o := _output_dir(argv)) is not None})


def _ignored(path: str) -> bool:
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, capture_output=True)
    return done.returncode == 0


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None,
                    reason="needs a git checkout")
def test_what_the_documented_commands_write_is_ignored() -> None:
    assert {"demo_out", "bench_out", "runs/tiny", "hf/tiny", "data/mult5", "reports/m4"} <= set(
        DOCUMENTED_OUTPUTS)
    for out in DOCUMENTED_OUTPUTS:
        assert out.startswith("results/") or _ignored(f"{out}/file.txt"), f"{out}: not in .gitignore"
    # every output directory that .gitignore lists is one the docs name, and only at the top level
    anchored = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()
                if re.fullmatch(r"/[a-z_]+/", line.strip())]
    tops = {out.split("/", 1)[0] for out in DOCUMENTED_OUTPUTS}
    assert anchored and {a.strip("/") for a in anchored} <= tops
    docs = "\n".join(p.read_text() for p in markdown_files())
    for a in anchored:
        assert f"{a.strip('/')}/" in docs, f"{a}: named by no doc"
    # committed and source directories stay visible
    for kept in ("results/x/eval.json", "plans/x.yaml", "configs/x.yaml", "src/seqvcr/data/x.py",
                 "tests/data/run/x.txt", "src/seqvcr/runs/x.py", "docs/reports/x.md"):
        assert not _ignored(kept), kept


# ---------------------------------------------------------------------------------------------- Markdown


def _tables(path: Path) -> list[list[tuple[int, str]]]:
    """The runs of consecutive ``|`` lines outside code blocks, each as (line number, text)."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    fence = False
    for no, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip().startswith("```"):
            fence = not fence
        if not fence and line.startswith("|"):
            current.append((no, line))
            continue
        if current:
            blocks.append(current)
            current = []
    return blocks + ([current] if current else [])


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.name)
def test_markdown_tables_render(path: Path) -> None:
    """Every table has its header separator as its second line (a table cut by a line of text renders its
    second half as plain text)."""
    tables = _tables(path)
    for table in tables:
        no, head = table[0]
        assert len(table) >= 2 and re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", table[1][1].strip()), (
            f"{path.name}:{no}: a table without its header separator line: {head[:60]}")
