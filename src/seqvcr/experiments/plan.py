"""Ablation plans: a YAML file that says what to vary, what to measure and over which seeds.

The format (docs/sweeps.md, "Plan format") mirrors the ablation plans the project started from (seed
000): a base configuration (``base`` file, inline ``config``), the ``ablations``, each with an action and
its replacements, ``cross``, the metrics, the seeds and how runs are measured. Everything is checked
before anything runs: ``load_plan`` raises one-line ``ConfigError``s. Each entry of ``ablations`` is read
and expanded into its settings by ``seqvcr.experiments.ablations``; the rest of the plan here.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqvcr import config as C
from seqvcr.datafiles import resolve_data_path
from seqvcr.errors import ConfigError, SeqVCRError
from seqvcr.experiments.ablations import (
    GPT2_PLACEHOLDER,
    Ablation,
    Setting,
    as_list,
    check_key,
    flatten,
    parse_ablation,
    resolve_setting,
    substitute,
)

__all__ = ["DEFAULT_ENTROPY_SEQUENCES", "GPT2_PLACEHOLDER", "METRICS", "METRIC_ALIASES", "PLAN_KEYS",
           "Ablation", "Plan", "Setting", "Study", "load_plan", "parse_plan", "resolve_setting"]

METRICS = ("exact_match", "matrix_entropy", "position_accuracy")
METRIC_ALIASES = {"entropy": "matrix_entropy", "representation_entropy": "matrix_entropy"}
DEFAULT_ENTROPY_SEQUENCES = 200

PLAN_KEYS = ("name", "description", "base", "config", "ablations", "cross", "metrics", "seeds", "eval_data",
             "eval_limit", "entropy_sequences", "entropy_normalize", "gpt2_dir", "scale")


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


def _find_file(ref: str, plan_path: Path | None, what: str) -> Path:
    """A path as given (absolute or relative to the cwd), else relative to the plan file's folders."""
    p = Path(ref).expanduser()
    if p.is_absolute() or p.is_file():
        if not p.is_file():
            raise ConfigError(f"{what}: {p}: file not found")
        return p
    if plan_path is not None:
        for folder in plan_path.resolve().parents:
            cand = folder / p
            if cand.is_file():
                return cand
    raise ConfigError(f"{what}: {ref}: file not found (looked in the current directory and the plan's "
                      "folders)")


def _cross(ablations: list[Ablation], base: dict[str, Any]) -> Study:
    settings: list[Setting] = []
    for combo in itertools.product(*(a.settings for a in ablations)):
        overrides: dict[str, Any] = {}
        for s in combo:
            for k, v in s.overrides.items():
                if k in overrides and overrides[k] != v:
                    raise ConfigError(f"cross: settings {' | '.join(x.label for x in combo)} both set {k} "
                                      "differently")
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
    for k, v in flatten(inline).items():
        check_key(k, "config")
        C.set_by_path(base, k, substitute(v, gdir))
    resolve_setting(base, {}, 0, where="base config")
    return base, base_file, gdir


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
    taken: set[str] = set()
    ablations = [parse_ablation(a, i, base, gdir, taken)
                 for i, a in enumerate(as_list(raw.get("ablations"), "ablations"))]
    cross = raw.get("cross", False)  # true: one study, the cartesian product of the ablations
    if not isinstance(cross, bool):
        raise ConfigError(f"cross: expected true or false, got {cross!r}")
    if cross and len(ablations) < 2:
        raise ConfigError("cross: true needs at least two ablations")
    studies = [_cross(ablations, base)] if cross else [Study(a.name, a.part, a.action, [a.name], a.settings)
                                                       for a in ablations]
    metrics = [METRIC_ALIASES.get(str(m), str(m))  # in order, without repeats (below)
               for m in as_list(raw.get("metrics", list(METRICS)), "metrics")]
    if unknown := [m for m in metrics if m not in METRICS]:
        raise ConfigError(f"metrics: {unknown[0]!r} is not one of {', '.join(METRICS)}")
    seeds = as_list(raw.get("seeds", [0]), "seeds")
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise ConfigError(f"seeds: expected non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: repeated seed in {seeds!r}")
    eval_data, eval_limit, n_seq, normalize = _plan_measurement(raw)
    return Plan(
        name=name, description=str(raw.get("description") or "").strip(), path=path, base=base,
        base_file=base_file, ablations=ablations, studies=studies, cross=cross,
        metrics=list(dict.fromkeys(metrics)), seeds=list(seeds), eval_data=eval_data, eval_limit=eval_limit,
        entropy_sequences=n_seq, entropy_normalize=normalize, gpt2_dir=gdir, raw=raw,
    )
