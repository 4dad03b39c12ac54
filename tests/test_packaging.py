"""What a paper's reference code ships with, and docs that name what the code writes: the license, the
citation, the declared dependencies against the imports, the optional extras and their one-line errors,
plots that leave matplotlib's global state alone, run files written without numpy, and
docs/architecture.md against a real run directory."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import micro_overrides

from seqvcr import __version__

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "seqvcr"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
#: distribution name -> the module it provides (where they differ)
MODULE_OF = {"pyyaml": "yaml"}
OPTIONAL = {"transformers": "hf", "tensorboard": "tensorboard", "wandb": "wandb", "submitit": "slurm"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower()


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level modules imported by a file: at module level, and anywhere (functions included)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    everywhere: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module.split(".")[0]]
        everywhere.update(names)
    for node in tree.body:
        if isinstance(node, ast.Import):
            top.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top.add(node.module.split(".")[0])
    return top, everywhere


def _third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("seqvcr", "__future__")}


def test_license_and_version_metadata() -> None:
    assert PROJECT["license"] == "MIT"  # an SPDX expression, not the deprecated {text = ...} table
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text
    assert "version" in PROJECT["dynamic"] and PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "seqvcr.__version__"}
    assert int(PYPROJECT["build-system"]["requires"][0].split(">=")[1].split(".")[0]) >= 77  # SPDX license


def test_citation_cff_cites_the_paper_and_seqvcr() -> None:
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["license"] == "MIT"
    assert cff["version"] == __version__ and "seqvcr" in cff["title"] and cff["authors"]
    assert "cite" in cff["message"]
    paper = cff["preferred-citation"]
    assert paper["title"] == (
        "Seq-VCR: Preventing Collapse in Intermediate Transformer Representations for Enhanced Reasoning")
    assert [a["family-names"] for a in paper["authors"]] == [
        "Arefin", "Subbaraj", "Gontier", "LeCun", "Rish", "Shwartz-Ziv", "Pal"]
    assert paper["year"] == 2025 and "ICLR" in paper["conference"]["name"]
    assert "2411.02344" in paper["url"] and paper["identifiers"][0]["value"] == "arXiv:2411.02344"


def test_declared_dependencies_are_what_the_code_imports() -> None:
    core = {MODULE_OF.get(_name(s), _name(s)) for s in PROJECT["dependencies"]}
    extras = {k: {MODULE_OF.get(_name(s), _name(s)) for s in v}
              for k, v in PROJECT["optional-dependencies"].items()}
    top_level: set[str] = set()
    anywhere: set[str] = set()
    for path in SRC.rglob("*.py"):
        top, every = _imports(path)
        top_level |= _third_party(top)
        anywhere |= _third_party(every)
    assert anywhere <= core | set(OPTIONAL), anywhere - core - set(OPTIONAL)  # nothing undeclared
    assert core <= anywhere, core - anywhere  # no declared dependency the code never imports
    assert "numpy" not in core
    assert top_level <= core, top_level - core  # optional ones only inside the functions that need them
    for module, extra in OPTIONAL.items():
        assert module in extras[extra], (module, extra)
    assert "ruff" in extras["dev"] and "ruff" not in extras["test"]
    # the test extra brings every optional dependency the tests exercise, so none is skipped
    assert {"pytest", "numpy"} <= extras["test"] and "seqvcr" in extras["test"]
    test_spec = next(s for s in PROJECT["optional-dependencies"]["test"] if s.startswith("seqvcr["))
    assert set(test_spec[len("seqvcr["):-1].split(",")) == {"hf", "tensorboard", "wandb"}


def test_sweep_does_not_import_fcntl_at_module_level() -> None:
    top, every = _imports(SRC / "experiments" / "sweep.py")
    assert "fcntl" not in top and "fcntl" in every


@pytest.mark.parametrize("target, extra", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_a_missing_optional_dependency_names_its_extra(
    target: str,
    extra: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import importlib.util

    from seqvcr import config as C
    from seqvcr.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == target else real(n, *a))
    path = tmp_path / "c.yaml"
    overrides = micro_overrides("vanilla", 2) + [f"train.log_to=[jsonl, {target}]"]
    C.save_yaml(C.load_config(None, overrides), path)
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"pip install 'seqvcr[{extra}]'" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_example_names_the_hf_extra_without_transformers() -> None:
    code = ("import sys, runpy; sys.modules['transformers'] = None\n"
            f"runpy.run_path({str(ROOT / 'examples' / 'hf_plugin_llama.py')!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "hf_plugin_llama.py needs the transformers package, which is not installed: pip install 'seqvcr[hf]'")


# ---------------------------------------------------------------------------------------------- matplotlib


@pytest.mark.slow
def test_plots_leave_matplotlib_global_state_alone(tmp_path: Path) -> None:
    """A notebook's backend and rcParams stay as they were; pyplot is never imported."""
    for path in SRC.rglob("*.py"):  # no pyplot import, no matplotlib.use(...) anywhere in seqvcr
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert all(a.name != "matplotlib.pyplot" for a in node.names), path
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module != "matplotlib.pyplot", path
                assert not (node.module == "matplotlib" and any(a.name == "pyplot" for a in node.names)), path
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = getattr(node.func.value, "id", "")
                assert not (node.func.attr == "use" and target == "matplotlib"), path
    code = f"""
import sys, matplotlib
matplotlib.use("svg")
before = dict(matplotlib.rcParams)
from seqvcr.reporting import run_figures as plots
from seqvcr.experiments import aggregate
layers = [{{"layer": i, "mean": 1.0 + i, "ci95_half": 0.1, "mean_normalized": 0.5, "dataset": 2.0,
           "values": [1.0 + i, 1.2 + i]}} for i in range(3)]
ent = {{"layers": layers, "n": 2, "normalized": False}}
s = [plots.Series("a", "vanilla", ent), plots.Series("b", "seqvcr", ent)]
plots.plot_entropy_per_layer(s, {str(tmp_path / 'a.png')!r})
plots.plot_entropy_hist(s, {str(tmp_path / 'b.png')!r})
plots.plot_position_accuracy([plots.Series("a", "vanilla", [0.5, 0.7])], {str(tmp_path / 'c.png')!r})
plots.plot_loss_curves([plots.Series("a", "vanilla", [{{"kind": "train", "step": 1, "lm_loss": 2.0}}])],
                       {str(tmp_path / 'd.png')!r})
plots.plot_entropy_vs_step([plots.Series("a", "vanilla", [(5, ent), (10, ent)])], {str(tmp_path / 'e.png')!r})
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
assert dict(matplotlib.rcParams) == before
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    for name in "abcde":
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_run_files_need_no_numpy(tmp_path: Path) -> None:
    """numpy is no dependency: model and checkpoint files are written and read without it."""
    code = f"""
import sys; sys.modules["numpy"] = None
import warnings; warnings.simplefilter("ignore")
import torch
from seqvcr.model import GPT, GPTConfig
from seqvcr.checkpoints import save_checkpoint, read_checkpoint, rng_state, save_model, read_safetensors
m = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
opt = torch.optim.AdamW(m.parameters())
m(torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8))).loss.backward(); opt.step()
for dtype in (torch.float32, torch.bfloat16):
    save_model({str(tmp_path / 'm.safetensors')!r}, m.to(dtype), None, 3)
    t, info = read_safetensors({str(tmp_path / 'm.safetensors')!r}, "model")
    assert all(torch.equal(t["model." + k], v) for k, v in m.state_dict().items() if "model." + k in t)
m = m.float()
save_checkpoint({str(tmp_path / 'c.safetensors')!r}, m, None, opt, step=1, train_time=1.0,
                rng_states=[rng_state()], config={{}})
ck = read_checkpoint({str(tmp_path / 'c.safetensors')!r})
ck.load_optimizer(opt)
assert ck.step == 1
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# ---------------------------------------------------------------------------------------------- docs


def _run_dir_section() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    return text[text.index("### run directory"):]


@pytest.mark.slow
def test_architecture_names_what_a_run_directory_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from seqvcr import config as C
    from seqvcr import training
    from seqvcr.cli import main
    from seqvcr.tasks import make_task, write_examples

    (tmp_path / "wandb_home").mkdir()  # W&B's own files (settings, cache) go here, not to ~ or the cwd
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    cfg = C.load_config(None, micro_overrides("seqvcr_pause", 10) + [
        "train.log_to=[jsonl, tensorboard, wandb]", "train.snapshot_steps=[5]"])
    training.train(cfg, run, progress=False)
    task = make_task("mult", digits=2)
    write_examples(task, tmp_path / "test.txt", task.generate(20, seed=1))
    for argv in (["eval", str(run), "--data", str(tmp_path / "test.txt")],
                 ["entropy", str(run), "--data", str(tmp_path / "test.txt"), "--n", "10"],
                 ["eval", str(run), "--data", str(tmp_path / "test.txt"), "--step", "5"]):
        assert main([*argv, "--quiet"]) == 0
    capsys.readouterr()
    doc = _run_dir_section()
    for entry in sorted(run.iterdir()):
        assert entry.name in doc, f"docs/architecture.md does not name {entry.name}"
    for entry in sorted((run / "snapshots").iterdir()):  # step_000005.safetensors, step_000005/
        named = re.sub(r"\d{6}", "000500", entry.name) + ("/" if entry.is_dir() else "")
        assert f"snapshots/{named}" in doc, f"docs/architecture.md does not name snapshots/{entry.name}"
    assert "token_accuracy" not in doc and "scheduler" not in doc
    # the keys of each kind of metrics record are the documented ones
    documented = {kind: set(keys.split(", ")) for kind, keys in
                  re.findall(r'\{"kind":"(\w+)", ([^}]*)\}', re.sub(r"\s+", " ", doc))}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for kind in ("train", "eval"):
        keys = set().union(*(r.keys() for r in records if r["kind"] == kind)) - {"kind"}
        assert keys == documented[kind], (kind, keys ^ documented[kind])
