"""Every ``seqvcr ...`` command in README.md and docs/*.md parses, and the ones that would train resolve.

The commands are taken from the Markdown itself: shell code blocks (continuation lines joined, comments
and prompts stripped, ``a && b`` split) and inline code spans that start with ``seqvcr``, including
``torchrun ... -m seqvcr train ...`` and ``.venv/bin/seqvcr``. Every file matching docs/*.md is read, so a
new page is checked as soon as it exists. For each command:

* it must parse with ``seqvcr.cli.parse_args`` (the same parser ``seqvcr`` runs);
* ``seqvcr train CONFIG ...`` additionally runs with ``--print-config`` (config, overrides and the
  derived defaults resolved, nothing trained or written) when CONFIG exists (a config under configs/
  must exist);
* ``seqvcr sweep PLAN ...`` additionally runs with ``--dry-run`` (the plan loaded and expanded, nothing
  written) when PLAN is an existing file (a plan under plans/ must exist).

Commands with placeholders (``RUN_DIR``, ``<config>``, ``...``) are parsed only.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from seqvcr.cli import main, parse_args

ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "text"}


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _argv_after_seqvcr(words: list[str]) -> list[str] | None:
    """The arguments of the ``seqvcr`` in a shell command (``seqvcr``, ``.venv/bin/seqvcr``,
    ``python -m seqvcr``, ``torchrun ... -m seqvcr``, ``timeout 50 seqvcr``, ``VAR=1 seqvcr``), or None
    when it runs no ``seqvcr`` command (``pip install seqvcr``)."""
    for i, w in enumerate(words):
        if w != "seqvcr" and not w.endswith("/seqvcr"):
            continue
        prefix = words[:i]
        launched = (
            not prefix
            or prefix[-1] == "-m"
            or prefix[0] in ("timeout", "nice", "time", "srun", "env", "exec")
            or all("=" in p for p in prefix)
        )
        rest = words[i + 1 :]
        if launched and rest and re.fullmatch(r"-{0,2}[a-z][a-z-]*", rest[0]):
            return rest
        return None
    return None


def _split_commands(line: str) -> list[list[str]]:
    """Shell words of each command on a line (``&&``, ``;`` and ``|`` separate commands)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: not a shell line (output in a console block)
        return []
    out: list[list[str]] = [[]]
    for w in words:
        if w in ("&&", ";", "|", "||", "&"):
            out.append([])
        else:
            out[-1].append(w)
    return [c for c in out if c]


def scan(path: Path) -> tuple[list[tuple[str, list[str]]], list[tuple[str, str]]]:
    """The seqvcr commands of a Markdown file as (``file:line``, argv), and its mentions of a command by
    name as (``file:line``, subcommand): an inline span that is only ``seqvcr <command>`` names the
    command rather than running it."""
    text = path.read_text()
    commands: list[tuple[str, list[str]]] = []
    mentions: list[tuple[str, str]] = []
    in_block, lang, pending, start = False, "", "", 0
    prose: list[tuple[int, str]] = []
    for no, line in enumerate(text.splitlines(), start=1):
        fence = re.match(r"^\s*```(\S*)", line)
        if fence:
            in_block, lang = (True, fence.group(1).lower()) if not in_block else (False, "")
            continue
        if not in_block:
            prose.append((no, line))
            continue
        if lang not in SHELL_LANGS:
            continue
        if not pending:
            start = no
            line = re.sub(r"^\s*\$ ", "", line)  # a console prompt
        if line.rstrip().endswith("\\"):  # a continued line
            pending += line.rstrip()[:-1] + " "
            continue
        full, pending = pending + line, ""
        for words in _split_commands(full):
            argv = _argv_after_seqvcr(words)
            if argv is not None:
                commands.append((f"{path.name}:{start}", argv))
    # inline code spans in prose (a span may continue on the next line)
    joined = "\n".join(line for _, line in prose)
    line_of = [no for no, line in prose for _ in range(len(line) + 1)]
    for m in re.finditer(r"`([^`]+)`", joined):
        span = m.group(1).replace("\n", " ").strip()
        if not span.startswith("seqvcr "):
            continue
        where = f"{path.name}:{line_of[m.start()]}"
        for words in _split_commands(span):
            argv = _argv_after_seqvcr(words)
            if argv is not None and len(argv) == 1 and not argv[0].startswith("-"):
                mentions.append((where, argv[0]))
            elif argv is not None:
                commands.append((where, argv))
    return commands, mentions


def commands_in(path: Path) -> list[tuple[str, list[str]]]:
    """(``file:line``, argv) of every seqvcr command in a Markdown file (see ``scan``)."""
    return scan(path)[0]


ALL = [(where, argv) for p in markdown_files() for where, argv in commands_in(p)]
MENTIONS = [m for p in markdown_files() for m in scan(p)[1]]


def _placeholder(argv: list[str]) -> bool:
    return any(re.search(r"<[^>]+>|\.\.\.|\b[A-Z][A-Z_]{2,}\b", a) for a in argv)


def test_the_docs_have_commands() -> None:
    """The extraction finds the commands (a broken extractor would make the other tests vacuous)."""
    where = {w.split(":")[0] for w, _ in ALL}
    assert {"README.md", "scaling.md", "sweeps.md", "demo.md", "benchmarks.md"} <= where
    subcommands = {argv[0] for _, argv in ALL}
    assert {"data", "train", "eval", "entropy", "report", "demo", "sweep", "bench", "export-hf",
            "sweep-run"} <= subcommands
    # the multi-GPU line of the README and a continued torchrun line of docs/scaling.md are found
    assert any(argv[:2] == ["train", "configs/mult5x5_seqvcr_pause.yaml"] and "train.compile=true" in argv
               for w, argv in ALL if w.startswith("README.md"))
    assert any("optim.batch_size=256" in argv for w, argv in ALL if w.startswith("scaling.md"))


def test_extraction_of_a_page(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text with `seqvcr eval RUN --data\nf.txt` and `seqvcr <command>: error` and `pip install seqvcr`.\n"
        "```bash\n$ seqvcr train c.yaml --out d a.b=1   # a comment\n"
        "torchrun --nproc-per-node 2 \\\n  -m seqvcr train c.yaml x=1\n"
        "bash x.sh && .venv/bin/seqvcr demo\n```\n"
        "```python\nseqvcr train not.yaml\n```\n"
    )
    got = [argv for _, argv in commands_in(page)]
    assert ["train", "c.yaml", "--out", "d", "a.b=1"] in got
    assert ["train", "c.yaml", "x=1"] in got
    assert ["demo"] in got
    assert ["eval", "RUN", "--data", "f.txt"] in got
    assert len(got) == 4
    page.write_text("`seqvcr train` writes and `seqvcr sweep-run` runs")
    assert scan(page) == ([], [("page.md:1", "train"), ("page.md:1", "sweep-run")])


def test_documented_command_names_exist() -> None:
    """``seqvcr <command>`` named in the prose is a command of ``seqvcr``."""
    from seqvcr.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert MENTIONS
    for where, name in MENTIONS:
        assert name in sub.choices, f"{where}: `seqvcr {name}` is not a seqvcr command"


@pytest.mark.parametrize("where, argv", ALL, ids=[f"{w} {' '.join(a)[:60]}" for w, a in ALL])
def test_documented_command_parses(where: str, argv: list[str]) -> None:
    try:
        parse_args(argv)
    except SystemExit as exit_:  # --version and --help exit 0 once parsed
        if exit_.code != 0:
            pytest.fail(f"{where}: `seqvcr {' '.join(argv)}` does not parse (exit {exit_.code})")


def _named_file(argv: list[str], command: str) -> Path | None:
    """The config (``train``) or plan (``sweep``) file a command names, when it names a real one."""
    if len(argv) < 2 or argv[0] != command or _placeholder(argv):
        return None
    return ROOT / argv[1]


TRAIN = [(w, a) for w, a in ALL if (f := _named_file(a, "train")) is not None and f.is_file()]
SWEEP = [(w, a) for w, a in ALL if (f := _named_file(a, "sweep")) is not None and f.is_file()]


def test_documented_configs_and_plans_exist() -> None:
    """A config under configs/ or a plan under plans/ that the docs name is in the repository (the
    others, such as demo_out/configs/..., are made by another command first)."""
    for where, argv in ALL:
        for command, folder in (("train", "configs/"), ("sweep", "plans/")):
            f = _named_file(argv, command)
            if f is not None and argv[1].startswith(folder):
                assert f.is_file(), f"{where}: {argv[1]} does not exist"
    assert len(TRAIN) >= 5 and len(SWEEP) >= 5


@pytest.mark.parametrize("where, argv", TRAIN, ids=[f"{w} {' '.join(a)[:60]}" for w, a in TRAIN])
def test_documented_train_command_resolves(
    where: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    code = main([*argv, "--print-config"])
    out, err = capsys.readouterr()
    assert code == 0, f"{where}: `seqvcr {' '.join(argv)}` does not resolve: {err.strip()}"
    assert out.startswith("task:"), out[:200]


@pytest.mark.slow
@pytest.mark.parametrize("where, argv", SWEEP, ids=[f"{w} {' '.join(a)[:60]}" for w, a in SWEEP])
def test_documented_sweep_command_resolves(
    where: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    dry = argv if "--dry-run" in argv else [*argv, "--dry-run"]
    code = main(dry)
    out, err = capsys.readouterr()
    assert code == 0, f"{where}: `seqvcr {' '.join(argv)}` does not resolve: {err.strip()}"
    assert "runs ->" in out or "study" in out
