"""The summary of a study (a sweep, or a published results directory) that every table, CSV and figure of
its report is rendered from: :class:`RunRecord` (one run), :class:`SettingSummary` (one setting and the
statistics over its finished seeds, ``stats.summarize``), :class:`StudySummary` (one ablation) and
:class:`SweepSummary` (the directory). ``seqvcr.experiments.aggregate.collect`` reads the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from seqvcr.errors import RunDirError
from seqvcr.reporting.stats import Stats, summarize

__all__ = ["RunRecord", "SettingSummary", "StudySummary", "SweepSummary", "curve_stats", "first_step_at",
           "intermediate_mean", "layer_means", "middle_positions", "probe_middle", "summarize_setting",
           "summarize_sweep"]


def layer_means(entropy: dict[str, Any]) -> list[float]:
    """Mean entropy per hidden state (L0..LN) of an entropy.json (``seqvcr.analysis.layer_entropy``)."""
    layers = entropy.get("layers")
    if not (isinstance(layers, list) and all(isinstance(d, dict) and "mean" in d for d in layers)):
        raise RunDirError("entropy.json: no per-layer means found (expected 'layers' with 'mean' per layer)")
    return [float(d["mean"]) for d in sorted(layers, key=lambda d: d.get("layer", 0))]


def middle_positions(width: int) -> list[int]:
    """The answer positions (0-based, least significant first) that stay near chance when a model fails:
    all but the two lowest and the two highest digits (3x3: positions 3 and 4 of 1..6)."""
    return list(range(2, width - 2))


def probe_middle(r2: Sequence[Sequence[float]]) -> list[float]:
    """Per layer, the mean probe R^2 over the middle answer positions (``middle_positions``)."""
    out = []
    for row in r2:
        mid = [row[k] for k in middle_positions(len(row))]
        out.append(sum(mid) / len(mid) if mid else float("nan"))
    return out


def first_step_at(curve: Sequence[tuple[int, float]], threshold: float) -> int | None:
    """The first step whose validation exact match reaches ``threshold`` (None: never)."""
    return next((step for step, value in curve if value >= threshold), None)


def intermediate_mean(means: Sequence[float]) -> float:
    """Average over layers 1..N-1 of L0..LN (NaN when the model has fewer than two layers)."""
    inner = list(means[1:-1])
    return sum(inner) / len(inner) if inner else float("nan")


@dataclass
class RunRecord:
    """The numbers of one run, as read from its directory (``study`` / ``setting``: where the manifest
    lists it first)."""

    id: str
    seed: int
    status: str
    study: str = ""
    setting: str = ""
    exact_match: float | None = None
    position_accuracy: list[float] | None = None
    layer_entropy: list[float] | None = None
    entropy_intermediate: float | None = None
    eval_n: int | None = None
    steps: int | None = None
    train_time_s: float | None = None
    machine: str | None = None
    error: str | None = None
    #: (step, validation exact match) of the periodic evaluations, and (step, training LM loss)
    valid_curve: list[tuple[int, float]] = field(default_factory=list)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    #: the numeric fields of the last ``"kind": "train"`` record (``lm_loss``, ``seqvcr_variance``,
    #: ``seqvcr_covariance``, ...): where the loss terms stood at the end of training
    final_train: dict[str, float] = field(default_factory=dict)
    #: held-out R^2 of the running-sum probe (``seqvcr probe``), per layer L0..LN and answer position
    probe_r2: list[list[float]] | None = None


@dataclass
class SettingSummary:
    """One row of a study table: a setting, its runs and the statistics over its finished seeds."""

    study: str
    label: str
    value: Any
    factors: list[list[Any]]
    planned: int
    runs: list[RunRecord]
    exact_match: Stats
    entropy: Stats
    layer_entropy: list[Stats]
    position_accuracy: list[Stats]

    @property
    def done(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "done"]


@dataclass
class StudySummary:
    """One ablation: its name, the part it ablates and how, its factors' names, its settings."""

    name: str
    part: str
    action: str | None
    factors: list[str]
    settings: list[SettingSummary]

    @property
    def xlabel(self) -> str:
        """The ablated value's name (the first factor of a crossed study)."""
        return self.factors[0] if self.factors else self.name


@dataclass
class SweepSummary:
    """A sweep or a published study directory: the manifest's facts, every run, every study."""

    name: str
    description: str
    seeds: list[Any]
    metrics: list[str]
    base: str | None
    eval_data: str | None
    eval_limit: int | None
    entropy_normalize: bool
    entropy_sequences: Any
    runs: list[RunRecord]
    studies: list[StudySummary]


def _per_index(lists: list[list[float]]) -> list[Stats]:
    width = max((len(x) for x in lists), default=0)
    return [summarize([x[i] for x in lists if i < len(x)]) for i in range(width)]


def curve_stats(curves: list[list[tuple[int, float]]]) -> list[tuple[int, Stats]]:
    """Per step, the statistics over the runs that logged that step (steps in increasing order)."""
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for step, value in curve:
            by_step.setdefault(step, []).append(value)
    return [(step, summarize(by_step[step])) for step in sorted(by_step)]


def summarize_setting(study: str, setting: dict[str, Any], records: dict[str, RunRecord]) -> SettingSummary:
    """The statistics of a manifest setting (``label``, ``value``, ``factors``, ``runs``: seed -> id)."""
    runs = [records[rid] for rid in setting["runs"].values()]
    done = [r for r in runs if r.status == "done"]
    return SettingSummary(
        study=study,
        label=setting["label"],
        value=setting.get("value"),
        factors=setting.get("factors") or [],
        planned=len(runs),
        runs=runs,
        exact_match=summarize([r.exact_match for r in done if r.exact_match is not None]),
        entropy=summarize([r.entropy_intermediate for r in done if r.entropy_intermediate is not None]),
        layer_entropy=_per_index([r.layer_entropy for r in done if r.layer_entropy]),
        position_accuracy=_per_index([r.position_accuracy for r in done if r.position_accuracy]),
    )


def summarize_sweep(manifest: dict[str, Any], records: dict[str, RunRecord]) -> SweepSummary:
    """The summary of a manifest (``seqvcr.experiments.sweep``) whose runs were read into ``records``."""
    runs = [replace(records[r["id"]], study=r["study"], setting=r["setting"]) for r in manifest["runs"]]
    studies = [
        StudySummary(st["name"], st.get("part") or "", st.get("action"), list(st.get("factors") or []),
                     [summarize_setting(st["name"], s, records) for s in st["settings"]])
        for st in manifest["studies"]
    ]
    return SweepSummary(
        name=manifest["name"], description=manifest.get("description") or "",
        seeds=list(manifest.get("seeds", [])), metrics=list(manifest.get("metrics", [])),
        base=manifest.get("base"), eval_data=manifest.get("eval_data"), eval_limit=manifest.get("eval_limit"),
        entropy_normalize=bool(manifest.get("entropy_normalize", True)),
        entropy_sequences=manifest.get("entropy_sequences"),
        runs=runs, studies=studies,
    )
