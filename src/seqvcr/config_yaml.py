"""A config's YAML side, knowing nothing of the schema: files read strictly (a key given twice is an
error), the line of a key in its file, dotted ``section.key`` paths and ``section.key=value`` overrides,
and a dataclass built from a mapping, each value checked against its field's type hint.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from seqvcr.errors import ConfigError

__all__ = ["apply_overrides", "build_dataclass", "get_by_path", "load_yaml", "set_by_path", "yaml_key_line"]


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check (and gently coerce: int -> float) a YAML value against a field's type hint."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _type_ok(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return False, value
        try:  # a str too: YAML 1.1 reads "1e-3" (no dot) as a string
            return True, float(value)
        except ValueError:
            return False, value
    if tp is str:
        return isinstance(value, str), value
    if origin is list:  # list[int], list[str]: every item of the item type
        (item_tp,) = typing.get_args(tp)
        checked = [_type_ok(item, item_tp) for item in value] if isinstance(value, list) else []
        if not isinstance(value, list) or not all(ok for ok, _ in checked):
            return False, value
        return True, [v for _, v in checked]
    return True, value


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def build_dataclass(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a dict, rejecting unknown keys and ill-typed values."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        close = difflib.get_close_matches(str(unknown[0]), names, n=1)
        hint = f"did you mean {(f'{prefix}.{close[0]}' if prefix else close[0])!r}? " if close else ""
        err = ConfigError(f"unknown config key {where!r}; {hint}allowed: {', '.join(names)}")
        err.key = where  # type: ignore[attr-defined]  # load_config adds the YAML file:line of the key
        raise err
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in data:
            continue
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if data[name] is None:  # `task:` with nothing under it would silently mean every default
                raise ConfigError(
                    f"config section {key!r} is empty (null); give its keys, or leave the section out "
                    "to take every default"
                )
            kwargs[name] = build_dataclass(tp, data[name], key)
            continue
        ok, value = _type_ok(data[name], tp)
        if not ok:
            raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {data[name]!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key {key!r}: expected a finite number, got {data[name]!r}")
        kwargs[name] = value
    return cls(**kwargs)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (plain YAML keeps the last
    one silently: ``name: mult`` then ``name: arith`` would train arithmetic)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad YAML or a duplicate key is a ConfigError naming file:line."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, expected a YAML file")
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    try:
        data = yaml.load(p.read_text(), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{line}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config sections at the top level")
    return data


def set_by_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for key 'a.b', creating sections as needed."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {key!r}: {part!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def get_by_path(data: dict[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"config has no key {key!r}")
        node = node[part]
    return node


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars) to a config dict."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. optim.lr=1e-3")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        set_by_path(out, key.strip(), value)
    return out


def yaml_key_line(path: str | Path, key: str) -> int | None:
    """The 1-based line of the dotted ``key`` (``optim.lr``) in a YAML file, or None when the file does
    not hold it (the key came from an override). Read from the YAML node tree (``yaml.compose``), which
    keeps each key's position."""
    try:
        node: Any = yaml.compose(Path(path).read_text(), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            return None
        match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part),
                     None)
        if match is None:
            return None
        line, node = match[0].start_mark.line + 1, match[1]
    return line
