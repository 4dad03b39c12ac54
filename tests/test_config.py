from __future__ import annotations

from pathlib import Path

import pytest

from seqvcr import config as C
from seqvcr.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_resolve_to_preset_and_task_coefficients() -> None:
    cfg = C.resolve(C.load_config(None, ["task.name=arith", "method.name=seqvcr"]))
    assert (cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd) == (4, 4, 256)
    assert (cfg.seqvcr.lambda1, cfg.seqvcr.lambda2) == (0.1, 0.5)
    cfg = C.resolve(C.load_config(None, ["task.name=mult", "model.preset=gpt2-small"]))
    assert (cfg.seqvcr.lambda1, cfg.seqvcr.lambda2) == (1.0, 0.004)
    assert cfg.model.n_layer == 12 and cfg.model.n_embd == 768


@pytest.mark.parametrize(
    ("method", "cot", "pauses", "seqvcr"),
    [
        ("vanilla", False, 0, False),
        ("cot", True, 0, False),
        ("pause", False, 3, False),
        ("seqvcr", False, 0, True),
        ("seqvcr_pause", False, 3, True),
    ],
)
def test_method_presets(method: str, cot: bool, pauses: int, seqvcr: bool) -> None:
    cfg = C.load_config(None, [f"method.name={method}", "method.pauses=3"])
    assert (cfg.method.cot, cfg.method.num_pauses, cfg.method.seqvcr) == (cot, pauses, seqvcr)


def test_overrides_parse_yaml_scalars() -> None:
    cfg = C.load_config(None, ["optim.lr=1e-3", "task.under=true", "model.init_from=null", "optim.epochs=2"])
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.task.under is True
    assert cfg.model.init_from is None and isinstance(cfg.optim.epochs, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'; did you mean 'optim.lr'? allowed: lr, weight_decay"),
        ("bogus.x=1", "unknown config key 'bogus'"),
        ("task.name=sorting", "'task.name': 'sorting' is not one of mult, arith, lis"),
        ("method.name=magic", "not one of vanilla, cot, pause, seqvcr, seqvcr_pause"),
        ("seqvcr.lambda1=-1", "'seqvcr.lambda1' must be >= 0"),
        ("seqvcr.proj_dim=0", "'seqvcr.proj_dim' must be > 0"),
        ("optim.batch_size=abc", "'optim.batch_size': expected int"),
        ("seqvcr.over=time", "not one of batch, batch_time"),
    ],
)
def test_bad_values_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        C.load_config(None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_seqvcr_batch_of_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 2 sequences"):
        C.load_config(None, ["method.name=seqvcr", "optim.batch_size=1"])
    C.load_config(None, ["method.name=vanilla", "optim.batch_size=1"])  # fine without Seq-VCR


def test_layer_out_of_range() -> None:
    with pytest.raises(
        ConfigError, match=r"'seqvcr.layer': 7 is out of range for a 4-layer model \(allowed -5..4"
    ):
        C.resolve(C.load_config(None, ["seqvcr.layer=7"]))
    assert C.resolve(C.load_config(None, ["seqvcr.layer=0"])).seqvcr.layer == 0


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("task:\n  name: mult\n optim: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        C.load_config(bad)
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        C.load_config(tmp_path / "missing.yaml")


def test_save_and_reload_roundtrip(tmp_path: Path) -> None:
    cfg = C.resolve(C.load_config(None, ["task.name=lis", "task.length=80", "method.name=seqvcr_pause"]))
    C.save_yaml(cfg, tmp_path / "c.yaml")
    again = C.resolve(C.load_config(tmp_path / "c.yaml"))
    assert C.to_dict(again) == C.to_dict(cfg)


def test_every_shipped_config_loads() -> None:
    files = sorted(CONFIG_DIR.glob("*.yaml"))
    assert len(files) == 43  # 2 x 5 mult + 2 from-scratch 5x5 (App. H) + 3 x 5 arith + 3 x 5 lis + tiny
    for f in files:
        C.resolve(C.load_config(f))


def test_shipped_configs_state_only_what_differs_from_the_defaults() -> None:
    """A config names its setting (task.name, the task's options, method.name); any other key it states
    changes its resolved config: what ``resolve`` fills (presets, the paper's coefficients, the schema's
    defaults) is stated once, where it is implemented (scripts/make_configs.py writes them so)."""
    import copy

    from seqvcr.tasks import config_options

    naming = {"task.name", "method.name", *(f"task.{key}" for key in config_options())}
    for f in sorted(CONFIG_DIR.glob("*.yaml")):
        data = C.load_yaml(f)
        resolved = C.to_dict(C.resolve(C.from_dict(data)))
        for section, keys in data.items():
            for key in set(keys) - {k.split(".")[1] for k in naming if k.startswith(f"{section}.")}:
                less = copy.deepcopy(data)
                del less[section][key]
                assert C.to_dict(C.resolve(C.from_dict(less))) != resolved, f"{f.name}: {section}.{key}"


def test_the_model_and_seqvcr_rules_are_those_of_the_library() -> None:
    """The config checks a model's shape, the Seq-VCR knobs and its batch with the rules that GPTConfig,
    SeqVCR and seq_vcr_loss apply (model.check_shape, objectives.check_knobs / check_batch)."""
    import torch

    from seqvcr.model import PRESETS, GPTConfig
    from seqvcr.objectives import SeqVCR, seq_vcr_loss

    for override, shape in (("model.n_head=5", {"n_head": 5}), ("model.n_head=0", {"n_head": 0}),
                            ("model.n_layer=0", {"n_layer": 0}), ("model.dropout=1.0", {"dropout": 1.0})):
        with pytest.raises(ConfigError) as from_config:
            C.resolve(C.load_config(None, ["model.preset=mingpt", override]))
        with pytest.raises(ConfigError) as from_model:
            GPTConfig(vocab_size=10, block_size=8, **{**PRESETS["mingpt"], **shape})
        assert str(from_config.value) == str(from_model.value), override
    for key, value, rule in (("eta", 0.0, "> 0"), ("proj_dim", 0, "> 0"), ("lambda2", -1.0, ">= 0")):
        with pytest.raises(ConfigError) as from_config:
            C.load_config(None, [f"seqvcr.{key}={value}"])
        with pytest.raises(ConfigError) as from_module:
            SeqVCR(8, **{key: value})
        assert str(from_config.value) == f"config key 'seqvcr.{key}' must be {rule}, got {value}"
        assert str(from_module.value) == f"{key}: must be {rule}, got {value}"
    with pytest.raises(ConfigError) as from_config:
        C.load_config(None, ["method.name=seqvcr", "optim.batch_size=1"])
    with pytest.raises(ConfigError) as from_loss:
        seq_vcr_loss(torch.randn(1, 3, 5))
    assert str(from_config.value).replace("optim.batch_size=", "") == str(from_loss.value)


def test_last_layer_has_one_spelling() -> None:
    a = C.resolve(C.load_config(None, ["seqvcr.layer=-1"]))
    b = C.resolve(C.load_config(None, ["seqvcr.layer=4"]))
    assert a.seqvcr.layer == 4 and C.to_dict(a) == C.to_dict(b)
    assert C.resolve(C.load_config(None, ["seqvcr.layer=-5"])).seqvcr.layer == 0


def test_init_from_takes_sizes_from_the_hf_directory(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "n_layer": 3, "n_head": 2, "n_embd": 16}')
    cfg = C.resolve(C.load_config(None, [f"model.init_from={tmp_path}", "model.preset=gpt2-small"]))
    assert (cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd) == (3, 2, 16)
    with pytest.raises(ConfigError, match="model.n_layer=5 but model.init_from has n_layer=3"):
        C.resolve(C.load_config(None, [f"model.init_from={tmp_path}", "model.n_layer=5"]))
    # a directory that is gone (a saved run's source) keeps the stated sizes
    gone = C.resolve(C.load_config(None, [f"model.init_from={tmp_path / 'gone'}", "model.n_layer=3"]))
    assert gone.model.n_layer == 3
