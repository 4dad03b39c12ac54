"""The mutation check's list (``scripts/mutation_check.py``) stays applicable: every original text still
occurs exactly once in ``src/seqvcr``, and the critical lines it must cover are on it."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "scripts" / "mutation_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_every_original_text_occurs_once_in_src() -> None:
    script = _script()
    assert script.check_originals(ROOT) == []


def test_the_critical_lines_are_on_the_list() -> None:
    ids = {m.id for m in _script().MUTATIONS}
    required = {
        # the mutations that once passed the whole suite
        "em-always-true", "em-prefix-match", "position-long-enough", "answer-first-cot-end",
        "loss-half-seqvcr", "plugin-ignores-mask",
        # covariance normaliser, hinge, 1/(T*d), LM-loss and Seq-VCR masks, confidence intervals
        "cov-biased-normaliser", "hinge-no-relu", "norm-cov-1-over-T", "norm-var-1-over-d",
        "lm-mask-prompt", "lm-mask-padding", "seqvcr-mask-final-eos", "mask-count-all-rows",
        "ci-normal-not-t", "ci-t-one-sided",
    }
    assert required <= ids


def test_a_stale_text_is_reported(tmp_path: Path) -> None:
    """A source whose critical line changed: the check names the mutation and the file."""
    script = _script()
    first = script.MUTATIONS[0]
    src = tmp_path / "src" / "seqvcr"
    for m in script.MUTATIONS:
        (src / m.file).parent.mkdir(parents=True, exist_ok=True)
        (src / m.file).write_text((ROOT / "src" / "seqvcr" / m.file).read_text())
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    assert script.check_originals(tmp_path) == []
    text = (src / first.file).read_text()
    (src / first.file).write_text(text.replace(first.original, first.original.replace("==", "!=")))
    problems = script.check_originals(tmp_path)
    assert problems and all(first.file in p and "occurs 0 times" in p for p in problems)
    assert any(p.startswith(f"{first.id}:") for p in problems)
