"""Ablation plans: a YAML file that says what to vary, what to measure and over which seeds.

The format mirrors the ablation plans the project started from (seed 000): a base configuration, one
or more ablated parts, each with an action and its list of replacements, the metrics and the seeds::

    name: projection_dim
    description: Dimension of the linear projection before the Seq-VCR loss (seed 000)
    base: configs/mult4x4_seqvcr_pause.yaml     # optional; relative to the cwd or the plan's folders
    config:                                     # optional inline overrides, merged over ``base``
      optim: {max_steps: 300}
    ablations:
      - part: Dimension of the linear projection layer applied before Seq-VCR regularization
        name: proj_dim                          # optional short name (default: derived)
        action: REPLACE                         # REPLACE | ADD | REMOVE
        key: seqvcr.proj_dim                    # one dotted key (replacements are scalars), or
        replacements: [512, 1024, 2048, 4096]   # mappings of dotted keys ({seqvcr.lambda1: 0.5, ...})
        labels: [...]                           # optional, one per replacement
    cross: false                                # true: the cartesian product of all ablations
    metrics: [exact_match, matrix_entropy, position_accuracy]
    seeds: [0, 1, 2]
    eval_data: ref:mult/4x4/test.txt            # optional (default: the setting's task.test_file, else
    eval_limit: 0                               #   its validation set); 0 = every example
    entropy_sequences: 200                      # sequences per run for the layer entropy
    entropy_normalize: true                     # divide by log(min(T, d)): values in [0, 1]
    gpt2_dir: null                              # substituted for "$gpt2_dir" in values, made absolute

``ADD`` / ``REMOVE`` act on a *component* of the method: ``pause`` (pause tokens), ``seqvcr`` (the
regulariser) or ``cot`` (chain of thought). The method that results is looked up in
``seqvcr.config.METHODS`` (e.g. ADD pause: vanilla -> pause, seqvcr -> seqvcr_pause). Their optional
``replacements`` are further overrides that go with the component (e.g. ``{method.pauses: 4}``); by
default the study also holds the unchanged base as a reference row (``include_base``).

Everything is checked before anything runs (``load_plan`` raises one-line ``ConfigError``s): unknown
plan keys, unknown config keys (against the config schema), bad values (types, choices, ranges, via
``seqvcr.config.from_dict`` / ``resolve``), keys the base does not have, keys that have no effect in the
base (e.g. ``seqvcr.*`` when the method has no Seq-VCR), components the base lacks (REMOVE) or already
has (ADD), and replacements that produce the same configuration twice.
"""

from __future__ import annotations

import copy
import difflib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqvcr import config as C
from seqvcr.datafiles import resolve_data_path
from seqvcr.errors import ConfigError, SeqVCRError

ACTIONS = ("REPLACE", "ADD", "REMOVE")
COMPONENTS = {"cot": 0, "pause": 1, "seqvcr": 2}  # index into the flags of seqvcr.config.METHODS
METRICS = ("exact_match", "matrix_entropy", "position_accuracy")
METRIC_ALIASES = {"entropy": "matrix_entropy", "representation_entropy": "matrix_entropy"}
GPT2_PLACEHOLDER = "$gpt2_dir"
DEFAULT_ENTROPY_SEQUENCES = 200

PLAN_KEYS = (
    "name",
    "description",
    "base",
    "config",
    "ablations",
    "cross",
    "metrics",
    "seeds",
    "eval_data",
    "eval_limit",
    "entropy_sequences",
    "entropy_normalize",
    "gpt2_dir",
    "scale",
)
ABLATION_KEYS = (
    "part",
    "name",
    "action",
    "key",
    "component",
    "replacements",
    "labels",
    "include_base",
)


@dataclass(frozen=True)
class Setting:
    """One row of a study: a label, the value plotted on the x axis, and the config overrides."""

    label: str
    value: Any  # a number or string for the x axis (the label when nothing simpler exists)
    overrides: dict[str, Any]  # dotted key -> value, applied over the base config
    factors: tuple[tuple[str, str, Any], ...] = ()  # (ablation name, label, value) per crossed factor


@dataclass
class Ablation:
    """One ablated part of the plan, validated and expanded into its settings."""

    name: str
    part: str
    action: str
    keys: list[str]
    component: str | None
    settings: list[Setting]


@dataclass
class Study:
    """What one report table shows: an ablation (or the cross of all of them) and its settings."""

    name: str
    part: str
    action: str
    factors: list[str]  # names of the ablations this study varies (more than one when crossed)
    settings: list[Setting]


@dataclass
class Plan:
    """A loaded, validated plan. ``base`` is the raw (unresolved) base config mapping."""

    name: str
    description: str
    path: Path | None
    base: dict[str, Any]
    base_file: str | None
    ablations: list[Ablation]
    studies: list[Study]
    cross: bool
    metrics: list[str]
    seeds: list[int]
    eval_data: str | None
    eval_limit: int
    entropy_sequences: int
    entropy_normalize: bool
    gpt2_dir: str | None
    raw: dict[str, Any] = field(default_factory=dict)

    def setting_config(self, setting: Setting, seed: int) -> C.Config:
        """The resolved config of one setting and seed."""
        return resolve_setting(self.base, setting.overrides, seed, where=f"{self.name}: {setting.label}")


# ---------------------------------------------------------------------------------------------- helpers


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'seqvcr': {'lambda1': 1}} and {'seqvcr.lambda1': 1} both give {'seqvcr.lambda1': 1}."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise ConfigError(f"config key {key!r}: keys must be strings")
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and "." not in key and full in _SECTIONS:
            out.update(_flatten(value, full))
        else:
            out[full] = value
    return out


_SECTIONS = tuple(C.to_dict(C.Config()))
_SCHEMA_KEYS = tuple(
    f"{section}.{name}" for section, values in C.to_dict(C.Config()).items() for name in values
)


def _check_key(key: str, where: str) -> None:
    """A dotted key must name a value of the config schema (not a section, not a typo)."""
    if key in _SECTIONS:
        raise ConfigError(f"{where}: {key!r} is a config section; name one of its keys, e.g. {key}.<name>")
    if key not in _SCHEMA_KEYS:
        close = difflib.get_close_matches(key, _SCHEMA_KEYS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: the base config has no key {key!r}{hint}")


def _substitute(value: Any, gpt2_dir: str | None) -> Any:
    """Replace the "$gpt2_dir" placeholder (left as is when no directory is given)."""
    if value == GPT2_PLACEHOLDER and gpt2_dir:
        return gpt2_dir
    return value


def resolve_setting(base: dict[str, Any], overrides: dict[str, Any], seed: int, where: str) -> C.Config:
    """Apply dotted-key overrides and the seed to the raw base config; validate and resolve."""
    data = copy.deepcopy(base)
    for key, value in overrides.items():
        C.set_by_path(data, key, value)
    C.set_by_path(data, "train.seed", seed)
    try:
        cfg = C.resolve(C.from_dict(data))
        for key in ("train_file", "valid_file", "test_file"):
            value = getattr(cfg.task, key)
            if value is not None and not resolve_data_path(value).is_file():
                raise ConfigError(f"task.{key}: {value}: file not found")
    except SeqVCRError as err:
        raise ConfigError(f"{where}: {err}") from None
    return cfg


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "none"
    return str(value)


def _short(key: str) -> str:
    return key.split(".")[-1]


def _label(overrides: dict[str, Any]) -> str:
    if not overrides:
        return "base"
    return ", ".join(f"{_short(k)}={_fmt_value(v)}" for k, v in overrides.items())


def _find_file(ref: str, plan_path: Path | None, what: str) -> Path:
    """A path as given (absolute or relative to the cwd), else relative to the plan file's folders."""
    p = Path(ref).expanduser()
    if p.is_absolute() or p.is_file():
        if not p.is_file():
            raise ConfigError(f"{what}: {p}: file not found")
        return p
    tried = [str(p)]
    if plan_path is not None:
        for folder in plan_path.resolve().parents:
            cand = folder / p
            tried.append(str(cand))
            if cand.is_file():
                return cand
    raise ConfigError(
        f"{what}: {ref}: file not found (looked in the current directory and the plan's folders)"
    )


def _method_flags(name: str) -> tuple[bool, bool, bool]:
    return C.METHODS[name]


def _method_with(name: str, component: str, present: bool, where: str) -> str:
    """The method equal to ``name`` with ``component`` switched on (present) or off."""
    flags = list(_method_flags(name))
    idx = COMPONENTS[component]
    if flags[idx] == present:
        has = "already has" if present else "does not have"
        verb = "ADD" if present else "REMOVE"
        raise ConfigError(f"{where}: cannot {verb} {component}: the base method {name!r} {has} it")
    flags[idx] = present
    for other, f in C.METHODS.items():
        if tuple(flags) == f:
            return other
    raise ConfigError(
        f"{where}: no method combines {component} with method {name!r}; methods: {', '.join(C.METHODS)}"
    )


def _effect_check(cfg: C.Config, keys: list[str], where: str) -> None:
    """Refuse ablating a knob that the setting's method ignores (its runs would all be identical)."""
    for key in keys:
        if key.startswith("seqvcr.") and not cfg.method.seqvcr:
            raise ConfigError(
                f"{where}: {key} has no effect: method {cfg.method.name!r} does not use Seq-VCR "
                "(pick a base with seqvcr or seqvcr_pause)"
            )
        if key == "method.pauses" and cfg.method.num_pauses == 0:
            raise ConfigError(
                f"{where}: {key} has no effect: method {cfg.method.name!r} has no pause tokens "
                "(pick a base with pause or seqvcr_pause)"
            )


# ---------------------------------------------------------------------------------------------- loading


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list, got {value!r}")
    return value


def _ablation_action(raw: Any, where: str) -> str:
    """Check the ablation's shape and keys; its action, upper-cased (REPLACE, ADD or REMOVE)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with part, action and replacements")
    unknown = [k for k in raw if k not in ABLATION_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(ABLATION_KEYS)}")
    action = str(raw.get("action", "")).upper()
    if action not in ACTIONS:
        raise ConfigError(f"{where}: action {raw.get('action')!r} is not one of {', '.join(ACTIONS)}")
    return action


def _flat_overrides(
    mapping: dict[str, Any], gpt2_dir: str | None, where: str, action: str | None = None
) -> dict[str, Any]:
    """A replacement mapping as checked dotted-key overrides; ADD/REMOVE (``action``) refuse method.name."""
    flat = {k: _substitute(v, gpt2_dir) for k, v in _flatten(mapping).items()}
    for k in flat:
        _check_key(k, where)
        if action is not None and k == "method.name":
            raise ConfigError(f"{where}: {action} sets method.name itself; use REPLACE to set it")
    return flat


def _replace_overrides(raw: dict[str, Any], gpt2_dir: str | None, where: str) -> list[dict[str, Any]]:
    """REPLACE: per replacement {key: value} when a ``key`` is named, else its mapping of dotted keys."""
    key = raw.get("key")
    if raw.get("component") is not None:
        raise ConfigError(f"{where}: 'component' goes with ADD/REMOVE; REPLACE names a 'key'")
    replacements = _as_list(raw.get("replacements"), f"{where}.replacements")
    overrides_list: list[dict[str, Any]] = []
    if key is None:
        for r in replacements:
            if not isinstance(r, dict) or not r:
                raise ConfigError(
                    f"{where}: without 'key', every replacement is a mapping of dotted config keys "
                    f"(e.g. {{seqvcr.lambda1: 0.5, seqvcr.lambda2: 0.002}}), got {r!r}"
                )
            overrides_list.append(_flat_overrides(r, gpt2_dir, where))
        return overrides_list
    if not isinstance(key, str):
        raise ConfigError(f"{where}.key: expected a dotted config key such as seqvcr.proj_dim")
    _check_key(key, where)
    for r in replacements:
        if isinstance(r, (dict, list)):
            raise ConfigError(f"{where}: with key {key!r} every replacement is one value, got {r!r}")
        overrides_list.append({key: _substitute(r, gpt2_dir)})
    return overrides_list


def _component_overrides(
    raw: dict[str, Any], action: str, base_method: str, gpt2_dir: str | None, where: str
) -> list[dict[str, Any]]:
    """ADD / REMOVE: per (optional) replacement, the method with the component switched, plus its extras."""
    component = raw.get("component")
    if raw.get("key") is not None:
        raise ConfigError(f"{where}: {action} acts on a 'component' ({', '.join(COMPONENTS)}), not a key")
    if component not in COMPONENTS:
        raise ConfigError(f"{where}: component {component!r} is not one of {', '.join(COMPONENTS)}")
    new_method = _method_with(base_method, component, action == "ADD", where)
    extra = raw.get("replacements")
    extras = [{}] if extra is None else _as_list(extra, f"{where}.replacements")
    overrides_list: list[dict[str, Any]] = []
    for r in extras:
        if not isinstance(r, dict):
            raise ConfigError(f"{where}: {action} replacements are mappings of extra overrides, got {r!r}")
        overrides_list.append({"method.name": new_method, **_flat_overrides(r, gpt2_dir, where, action)})
    return overrides_list


def _ablation_name(raw: dict[str, Any], action: str, keys: list[str], taken: set[str], where: str) -> str:
    """The ablation's name: given, else derived from its key(s) or component; unique (``taken``)."""
    key = raw.get("key")
    name = str(raw.get("name") or "")
    if not name:
        if action == "REPLACE":
            name = _short(key) if isinstance(key, str) else "+".join(_short(k) for k in keys)
        else:
            name = f"{action.lower()}_{raw.get('component')}"
    if name in taken:
        raise ConfigError(f"{where}: two ablations are named {name!r}; give one a distinct 'name'")
    taken.add(name)
    return name


def _ablation_settings(
    raw: dict[str, Any], action: str, overrides_list: list[dict[str, Any]], labels: list[str] | None,
    include_base: bool, base_method: str,
) -> list[Setting]:
    """One setting per override mapping (after the base, when included), with its label and x value."""
    key, component = raw.get("key"), raw.get("component")
    settings: list[Setting] = []
    if include_base:
        settings.append(Setting(f"base ({base_method})", "base", {}))
    for i, ov in enumerate(overrides_list):
        if labels is not None:
            label = labels[i]
        elif action == "REPLACE":
            label = _label(ov)
        else:
            rest = {k: v for k, v in ov.items() if k != "method.name"}
            label = f"{'+' if action == 'ADD' else '-'}{component} ({ov['method.name']})"
            if rest:
                label += ", " + _label(rest)
        if action == "REPLACE" and isinstance(key, str):
            value: Any = ov[key]
        elif action == "REPLACE" and len(ov) == 1:
            value = next(iter(ov.values()))
        else:
            value = label
        settings.append(Setting(label, value, ov))
    return settings


def _check_settings(settings: list[Setting], base: dict[str, Any], action: str, where: str) -> None:
    """Every setting must build, must change something the method uses, and must be distinct."""
    seen: dict[str, str] = {}
    for s in settings:
        cfg = resolve_setting(base, s.overrides, 0, where=f"{where} ({s.label})")
        if action == "REPLACE":
            _effect_check(cfg, list(s.overrides), f"{where} ({s.label})")
        canon = repr(sorted(C.to_dict(cfg).items()))
        if canon in seen:
            raise ConfigError(f"{where}: settings {seen[canon]!r} and {s.label!r} give the same config")
        seen[canon] = s.label
    labels_seen = [s.label for s in settings]
    if len(set(labels_seen)) != len(labels_seen):
        raise ConfigError(f"{where}: two settings share a label; give 'labels'")


def _parse_ablation(
    raw: Any, index: int, base: dict[str, Any], gpt2_dir: str | None, taken: set[str]
) -> Ablation:
    """Validate one entry of ``ablations``, split by action, and expand it into its settings."""
    where = f"ablations[{index}]"
    action = _ablation_action(raw, where)
    base_cfg = resolve_setting(base, {}, 0, where=f"{where} (base)")
    if action == "REPLACE":
        overrides_list = _replace_overrides(raw, gpt2_dir, where)
        include_base = bool(raw.get("include_base", False))
    else:
        overrides_list = _component_overrides(raw, action, base_cfg.method.name, gpt2_dir, where)
        include_base = bool(raw.get("include_base", True))
    labels = raw.get("labels")
    if labels is not None:
        labels = _as_list(labels, f"{where}.labels")
        if len(labels) != len(overrides_list):
            raise ConfigError(f"{where}: {len(labels)} labels for {len(overrides_list)} replacements")
        labels = [str(x) for x in labels]
    keys = sorted({k for o in overrides_list for k in o})
    name = _ablation_name(raw, action, keys, taken, where)
    settings = _ablation_settings(raw, action, overrides_list, labels, include_base, base_cfg.method.name)
    _check_settings(settings, base, action, where)
    return Ablation(name, str(raw.get("part") or ""), action, keys, raw.get("component"), settings)


def _cross(ablations: list[Ablation], base: dict[str, Any], plan_name: str) -> Study:
    settings: list[Setting] = []
    for combo in itertools.product(*(a.settings for a in ablations)):
        overrides: dict[str, Any] = {}
        for s in combo:
            for k, v in s.overrides.items():
                if k in overrides and overrides[k] != v:
                    raise ConfigError(
                        f"cross: settings {' | '.join(x.label for x in combo)} both set {k} differently"
                    )
                overrides[k] = v
        label = " | ".join(s.label for s in combo)
        factors = tuple((a.name, s.label, s.value) for a, s in zip(ablations, combo))
        settings.append(Setting(label, combo[0].value, overrides, factors))
        resolve_setting(base, overrides, 0, where=f"cross ({label})")
    parts = "; ".join(a.part or a.name for a in ablations)
    return Study(
        name=" x ".join(a.name for a in ablations),
        part=parts,
        action="+".join(sorted({a.action for a in ablations})),
        factors=[a.name for a in ablations],
        settings=settings,
    )


def load_plan(path: str | Path, *, gpt2_dir: str | None = None) -> Plan:
    """Read and validate a plan file (see the module docstring). ``gpt2_dir`` overrides the plan's."""
    p = Path(path)
    raw = C.load_yaml(p)  # one-line errors: missing file, invalid YAML (file:line), not a mapping
    if not raw:
        raise ConfigError(f"{p}: a plan is a mapping with name, base, ablations, metrics and seeds")
    try:
        return parse_plan(raw, path=p, gpt2_dir=gpt2_dir)
    except ConfigError as err:
        raise ConfigError(f"{p}: {err}") from None


def _plan_name(raw: dict[str, Any], path: Path | None) -> str:
    """Refuse unknown plan keys (with a close match as hint); the plan's name, usable as a folder."""
    unknown = [k for k in raw if k not in PLAN_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), PLAN_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown plan key {unknown[0]!r}{hint}; allowed: {', '.join(PLAN_KEYS)}")
    name = raw.get("name") or (path.stem if path else None)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ConfigError(f"name: expected a short name usable as a folder, got {name!r}")
    return name


def _plan_base(
    raw: dict[str, Any], path: Path | None, gpt2_dir: str | None
) -> tuple[dict[str, Any], str | None, str | None]:
    """The raw base config (``base`` + inline ``config``), its file as given and the absolute gpt2_dir."""
    base: dict[str, Any] = {}
    base_file = raw.get("base")
    if base_file is not None:
        if not isinstance(base_file, str):
            raise ConfigError(f"base: expected a config file path, got {base_file!r}")
        base = C.load_yaml(_find_file(base_file, path, "base"))
    inline = raw.get("config") or {}
    if not isinstance(inline, dict):
        raise ConfigError("config: expected a mapping of config overrides")
    gdir = gpt2_dir if gpt2_dir is not None else raw.get("gpt2_dir")
    if gdir is not None and not isinstance(gdir, str):
        raise ConfigError(f"gpt2_dir: expected a directory path or null, got {gdir!r}")
    if gdir:  # absolute, so the prepared runs find it from any directory (a queue, a cluster node)
        gdir = str(Path(gdir).resolve())
    for k, v in _flatten(inline).items():
        _check_key(k, "config")
        C.set_by_path(base, k, _substitute(v, gdir))
    resolve_setting(base, {}, 0, where="base config")
    return base, base_file, gdir


def _plan_studies(
    raw: dict[str, Any], ablations: list[Ablation], base: dict[str, Any], name: str
) -> tuple[bool, list[Study]]:
    """``cross`` and the studies: one per ablation, or their cartesian product as a single study."""
    cross = raw.get("cross", False)
    if not isinstance(cross, bool):
        raise ConfigError(f"cross: expected true or false, got {cross!r}")
    if cross and len(ablations) < 2:
        raise ConfigError("cross: true needs at least two ablations")
    if cross:
        return cross, [_cross(ablations, base, name)]
    return cross, [Study(a.name, a.part, a.action, [a.name], a.settings) for a in ablations]


def _plan_metrics(raw: dict[str, Any]) -> list[str]:
    """The metrics, aliases mapped to their names, in order, without repeats."""
    metrics: list[str] = []
    for m in _as_list(raw.get("metrics", list(METRICS)), "metrics"):
        m = METRIC_ALIASES.get(str(m), str(m))
        if m not in METRICS:
            raise ConfigError(f"metrics: {m!r} is not one of {', '.join(METRICS)}")
        if m not in metrics:
            metrics.append(m)
    return metrics


def _plan_seeds(raw: dict[str, Any]) -> list[int]:
    """The seeds: distinct non-negative integers (default: [0])."""
    seeds = _as_list(raw.get("seeds", [0]), "seeds")
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise ConfigError(f"seeds: expected non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: repeated seed in {seeds!r}")
    return list(seeds)


def _plan_measurement(raw: dict[str, Any]) -> tuple[str | None, int, int, bool]:
    """``eval_data`` (must exist), ``eval_limit``, ``entropy_sequences``, ``entropy_normalize``."""
    eval_data = raw.get("eval_data")
    if eval_data is not None:
        if not isinstance(eval_data, str):
            raise ConfigError(f"eval_data: expected a data file path, got {eval_data!r}")
        try:
            if not resolve_data_path(eval_data).is_file():
                raise ConfigError(f"eval_data: {eval_data}: file not found")
        except SeqVCRError as err:
            raise ConfigError(f"eval_data: {err}") from None
    eval_limit = raw.get("eval_limit", 0)
    if not isinstance(eval_limit, int) or isinstance(eval_limit, bool) or eval_limit < 0:
        raise ConfigError(f"eval_limit: expected an integer >= 0 (0 = all), got {eval_limit!r}")
    n_seq = raw.get("entropy_sequences", DEFAULT_ENTROPY_SEQUENCES)
    if not isinstance(n_seq, int) or isinstance(n_seq, bool) or n_seq < 1:
        raise ConfigError(f"entropy_sequences: expected an integer >= 1, got {n_seq!r}")
    normalize = raw.get("entropy_normalize", True)
    if not isinstance(normalize, bool):
        raise ConfigError(f"entropy_normalize: expected true or false, got {normalize!r}")
    return eval_data, eval_limit, n_seq, normalize


def parse_plan(raw: dict[str, Any], *, path: Path | None = None, gpt2_dir: str | None = None) -> Plan:
    """Validate a plan mapping (already read from YAML); errors are ``ConfigError``s."""
    name = _plan_name(raw, path)
    base, base_file, gdir = _plan_base(raw, path, gpt2_dir)
    ablations_raw = _as_list(raw.get("ablations"), "ablations")
    taken: set[str] = set()
    ablations = [_parse_ablation(a, i, base, gdir, taken) for i, a in enumerate(ablations_raw)]
    cross, studies = _plan_studies(raw, ablations, base, name)
    metrics = _plan_metrics(raw)
    seeds = _plan_seeds(raw)
    eval_data, eval_limit, n_seq, normalize = _plan_measurement(raw)
    description = raw.get("description") or ""
    return Plan(
        name=name, description=str(description).strip(), path=path, base=base, base_file=base_file,
        ablations=ablations, studies=studies, cross=cross, metrics=metrics, seeds=seeds,
        eval_data=eval_data, eval_limit=eval_limit, entropy_sequences=n_seq, entropy_normalize=normalize,
        gpt2_dir=gdir, raw=raw,
    )
