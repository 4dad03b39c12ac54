"""The layers of docs/architecture.md are the import graph of src/seqvcr: every import (lazy ones inside
functions included) goes to a lower layer, or to a module listed before it in its own layer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "seqvcr"


def layer_entries() -> list[str]:
    """The module entries of the layers table, bottom to top and, within a layer, in import order
    (``tasks/`` is a package, ``config`` a module)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## Layers"):text.index("## Where to add")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| layer")]
    assert rows, "docs/architecture.md: no layers table"
    entries: list[str] = []
    for row in reversed(rows):  # the table lists the top layer first
        entries += re.findall(r"`([^`]+)`", row.split("|")[2])
    return entries


def module_name(path: Path) -> str:
    """``analysis/cli`` for src/seqvcr/analysis/cli.py, ``tasks/`` for src/seqvcr/tasks/__init__.py."""
    rel = path.relative_to(SRC).with_suffix("").as_posix()
    return rel[: -len("__init__")] if rel.endswith("__init__") else rel


def entry_of(module: str, entries: list[str]) -> str:
    """The table entry a module belongs to: itself, else the package that holds it."""
    if module in entries:
        return module
    packages = [e for e in entries if e.endswith("/") and module.startswith(e)]
    assert packages, f"docs/architecture.md's layers do not name {module}"
    return max(packages, key=len)


def imported_modules(path: Path) -> set[str]:
    """The seqvcr modules a file imports, in the form of ``module_name`` (``from seqvcr import
    __version__`` left out: the package root is outside the layers)."""
    modules = {module_name(p) for p in SRC.rglob("*.py")}
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("seqvcr.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "seqvcr":
            base = node.module.removeprefix("seqvcr").lstrip(".").replace(".", "/")
            subs = [f"{base}/{a.name}".lstrip("/") for a in node.names if a.name != "__version__"]
            if all(s in modules for s in subs):  # from seqvcr.bench import loss, step
                out.update(subs)
                continue
            names = [node.module]
        else:
            continue
        for name in names:
            rel = name.removeprefix("seqvcr").lstrip(".").replace(".", "/")
            out.add(rel if rel in modules else f"{rel}/")
    return out


def test_every_import_goes_down_the_layers() -> None:
    entries = layer_entries()
    rank = {e: i for i, e in enumerate(entries)}
    assert len(rank) == len(entries), "a module is named twice in the layers table"
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        me = module_name(path)
        if me == "":  # the package root: the public names, outside the layers
            continue
        mine = entry_of(me, entries)
        for target in sorted(imported_modules(path)):
            theirs = entry_of(target, entries)
            if theirs != mine and rank[theirs] > rank[mine]:
                upward.append(f"{me} imports {target} ({theirs} is above {mine})")
    assert not upward, "imports that run up the layers of docs/architecture.md:\n" + "\n".join(upward)


def test_the_layers_table_names_every_module() -> None:
    entries = layer_entries()
    for path in sorted(SRC.rglob("*.py")):
        me = module_name(path)
        if me:
            entry_of(me, entries)  # fails with the module's name
    for e in entries:
        where = SRC / (e.rstrip("/") + ("/__init__.py" if e.endswith("/") else ".py"))
        assert where.is_file(), f"docs/architecture.md names {e}, which is not in src/seqvcr"
