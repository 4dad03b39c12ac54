"""The ablations of a plan: one entry of ``ablations`` checked and expanded into its settings.

An ablation REPLACEs one dotted config key (or several, by mappings), or ADDs or REMOVEs a component of
the base's method (``COMPONENTS``; the method that results is looked up in ``seqvcr.config.METHODS``).
Each setting it gives must build a valid config (``resolve_setting``), change something the method uses
and differ from the others. ``seqvcr.experiments.plan`` reads the rest of the plan (format: docs/sweeps.md).
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import Any

from seqvcr import config as C
from seqvcr.datafiles import resolve_data_path
from seqvcr.errors import ConfigError, SeqVCRError

__all__ = ["ABLATION_KEYS", "ACTIONS", "COMPONENTS", "GPT2_PLACEHOLDER", "Ablation", "Setting", "as_list",
           "check_key", "flatten", "parse_ablation", "resolve_setting", "substitute"]

ACTIONS = ("REPLACE", "ADD", "REMOVE")
COMPONENTS = {"cot": 0, "pause": 1, "seqvcr": 2}  # index into the flags of seqvcr.config.METHODS
GPT2_PLACEHOLDER = "$gpt2_dir"

ABLATION_KEYS = ("part", "name", "action", "key", "component", "replacements", "labels", "include_base")


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


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'seqvcr': {'lambda1': 1}} and {'seqvcr.lambda1': 1} both give {'seqvcr.lambda1': 1}."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise ConfigError(f"config key {key!r}: keys must be strings")
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and "." not in key and full in _SECTIONS:
            out.update(flatten(value, full))
        else:
            out[full] = value
    return out


_SECTIONS = tuple(C.to_dict(C.Config()))
_SCHEMA_KEYS = tuple(
    f"{section}.{name}" for section, values in C.to_dict(C.Config()).items() for name in values
)


def check_key(key: str, where: str) -> None:
    """A dotted key must name a value of the config schema (not a section, not a typo)."""
    if key in _SECTIONS:
        raise ConfigError(f"{where}: {key!r} is a config section; name one of its keys, e.g. {key}.<name>")
    if key not in _SCHEMA_KEYS:
        close = difflib.get_close_matches(key, _SCHEMA_KEYS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: the base config has no key {key!r}{hint}")


def substitute(value: Any, gpt2_dir: str | None) -> Any:
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


def _method_with(name: str, component: str, present: bool, where: str) -> str:
    """The method equal to ``name`` with ``component`` switched on (present) or off."""
    flags = list(C.METHODS[name])
    idx = COMPONENTS[component]
    if flags[idx] == present:
        has = "already has" if present else "does not have"
        verb = "ADD" if present else "REMOVE"
        raise ConfigError(f"{where}: cannot {verb} {component}: the base method {name!r} {has} it")
    flags[idx] = present
    for other, f in C.METHODS.items():
        if tuple(flags) == f:
            return other
    raise ConfigError(f"{where}: no method combines {component} with method {name!r}; "
                      f"methods: {', '.join(C.METHODS)}")


def _effect_check(cfg: C.Config, keys: list[str], where: str) -> None:
    """Refuse ablating a knob that the setting's method ignores (its runs would all be identical)."""
    for key in keys:
        if key.startswith("seqvcr.") and not cfg.method.seqvcr:
            raise ConfigError(f"{where}: {key} has no effect: method {cfg.method.name!r} does not use "
                              "Seq-VCR (pick a base with seqvcr or seqvcr_pause)")
        if key == "method.pauses" and cfg.method.num_pauses == 0:
            raise ConfigError(f"{where}: {key} has no effect: method {cfg.method.name!r} has no pause "
                              "tokens (pick a base with pause or seqvcr_pause)")


def as_list(value: Any, where: str) -> list[Any]:
    """``value``, which must be a non-empty list (a ``ConfigError`` at ``where`` if not)."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list, got {value!r}")
    return value


def _flat_overrides(
    mapping: dict[str, Any], gpt2_dir: str | None, where: str, action: str | None = None
) -> dict[str, Any]:
    """A replacement mapping as checked dotted-key overrides; ADD/REMOVE (``action``) refuse method.name."""
    flat = {k: substitute(v, gpt2_dir) for k, v in flatten(mapping).items()}
    for k in flat:
        check_key(k, where)
        if action is not None and k == "method.name":
            raise ConfigError(f"{where}: {action} sets method.name itself; use REPLACE to set it")
    return flat


def _replace_overrides(raw: dict[str, Any], gpt2_dir: str | None, where: str) -> list[dict[str, Any]]:
    """REPLACE: per replacement {key: value} when a ``key`` is named, else its mapping of dotted keys."""
    key = raw.get("key")
    if raw.get("component") is not None:
        raise ConfigError(f"{where}: 'component' goes with ADD/REMOVE; REPLACE names a 'key'")
    replacements = as_list(raw.get("replacements"), f"{where}.replacements")
    overrides_list: list[dict[str, Any]] = []
    if key is None:
        for r in replacements:
            if not isinstance(r, dict) or not r:
                raise ConfigError(f"{where}: without 'key', every replacement is a mapping of dotted config "
                                  f"keys (e.g. {{seqvcr.lambda1: 0.5, seqvcr.lambda2: 0.002}}), got {r!r}")
            overrides_list.append(_flat_overrides(r, gpt2_dir, where))
        return overrides_list
    if not isinstance(key, str):
        raise ConfigError(f"{where}.key: expected a dotted config key such as seqvcr.proj_dim")
    check_key(key, where)
    for r in replacements:
        if isinstance(r, (dict, list)):
            raise ConfigError(f"{where}: with key {key!r} every replacement is one value, got {r!r}")
        overrides_list.append({key: substitute(r, gpt2_dir)})
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
    extras = [{}] if extra is None else as_list(extra, f"{where}.replacements")
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


def parse_ablation(raw: Any, index: int, base: dict[str, Any], gpt2_dir: str | None,
                   taken: set[str]) -> Ablation:
    """Validate one entry of ``ablations``, split by action, and expand it into its settings."""
    where = f"ablations[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with part, action and replacements")
    if unknown := [k for k in raw if k not in ABLATION_KEYS]:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(ABLATION_KEYS)}")
    action = str(raw.get("action", "")).upper()
    if action not in ACTIONS:
        raise ConfigError(f"{where}: action {raw.get('action')!r} is not one of {', '.join(ACTIONS)}")
    base_cfg = resolve_setting(base, {}, 0, where=f"{where} (base)")
    if action == "REPLACE":
        overrides_list = _replace_overrides(raw, gpt2_dir, where)
        include_base = bool(raw.get("include_base", False))
    else:
        overrides_list = _component_overrides(raw, action, base_cfg.method.name, gpt2_dir, where)
        include_base = bool(raw.get("include_base", True))
    labels = raw.get("labels")
    if labels is not None:
        labels = as_list(labels, f"{where}.labels")
        if len(labels) != len(overrides_list):
            raise ConfigError(f"{where}: {len(labels)} labels for {len(overrides_list)} replacements")
        labels = [str(x) for x in labels]
    keys = sorted({k for o in overrides_list for k in o})
    name = _ablation_name(raw, action, keys, taken, where)
    settings = _ablation_settings(raw, action, overrides_list, labels, include_base, base_cfg.method.name)
    _check_settings(settings, base, action, where)
    return Ablation(name, str(raw.get("part") or ""), action, keys, raw.get("component"), settings)
