"""The run report's tables (:class:`seqvcr.reporting.tables.Table`: raw values; Markdown formats them, CSV
keeps full precision): exact match in the layout of the paper's Table 1, accuracy per answer position,
entropy per layer (also per snapshot step), and throughput with T_norm (App. E).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqvcr.reporting.stats import Stats, summarize
from seqvcr.reporting.tables import Table, fmt, fmt_pm

__all__ = ["METHOD_ORDER", "Table", "accuracy_table", "entropy_steps_table", "entropy_table", "method_label",
           "position_table", "throughput_table"]

METHOD_ORDER = ("cot", "vanilla", "pause", "seqvcr", "seqvcr_pause")


def method_label(method: str, pauses: int = 2) -> str:
    """The paper's name of a configuration (Table 1's row labels)."""
    labels = {
        "cot": "With CoT",
        "vanilla": "Vanilla (no CoT)",
        "pause": f"Pause ({pauses})",
        "seqvcr": "Seq-VCR",
        "seqvcr_pause": f"Seq-VCR + Pause ({pauses})",
    }
    return labels.get(method, method)


def accuracy_table(entries: Sequence[dict[str, Any]]) -> Table:
    """Table 1: a row per configuration (``method``, ``pauses``; the paper's order, others after them
    alphabetically), a column per ``task`` (in order of appearance), the mean ``exact_match`` of its
    runs (Markdown: ``mean +- std (n runs)`` over several)."""
    columns = list(dict.fromkeys(str(e["task"]) for e in entries))
    cells: dict[tuple[str, str], list[float]] = {}
    methods: dict[str, str] = {}
    for e in entries:
        label = method_label(e["method"], int(e.get("pauses", 2)))
        methods.setdefault(label, e["method"])
        cells.setdefault((label, str(e["task"])), []).append(float(e["exact_match"]))
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    labels = sorted(methods, key=lambda label: (rank.get(methods[label], len(METHOD_ORDER)), label))
    stats = {key: summarize(vals) for key, vals in cells.items()}
    rows = [[label, *[stats[(label, c)].mean if (label, c) in stats else None for c in columns]]
            for label in labels]
    md = [[label, *[_mean_cell(stats.get((label, c))) for c in columns]] for label in labels]
    return Table(["configuration", *columns], rows, md)


def _mean_cell(st: Stats | None) -> str:
    if st is None:
        return "-"
    return fmt(st.mean) if st.n == 1 else f"{fmt_pm(st.mean, st.std, sign='+-')} ({st.n} runs)"


def position_table(entries: Sequence[dict[str, Any]], baseline: Sequence[float] | None = None) -> Table:
    """Accuracy per answer position. ``entries``: dicts with ``run`` (label) and ``position_accuracy``."""
    width = max([len(e["position_accuracy"]) for e in entries] + [len(baseline or [])])
    header = ["run", *[f"pos {k + 1}" for k in range(width)]]
    rows: list[list[Any]] = []
    for e in entries:
        acc = list(e["position_accuracy"])
        rows.append([e["run"], *acc, *([None] * (width - len(acc)))])
    if baseline:
        rows.append(["majority-class baseline", *baseline, *([None] * (width - len(baseline)))])
    return Table(header, rows)


def entropy_table(entries: Sequence[dict[str, Any]]) -> Table:
    """Mean per-sequence entropy per layer. ``entries``: dicts with ``run`` and ``entropy`` (a result of
    ``compute_layer_entropy``). Markdown cells: ``mean +- ci95_half``; CSV: mean and CI half-width."""
    width = max(len(e["entropy"]["layers"]) for e in entries)
    names = [f"L{i}" for i in range(width)]
    rows: list[list[Any]] = []
    md: list[list[str]] = []
    for e in entries:
        layers = e["entropy"]["layers"]
        pad = width - len(layers)
        rows.append([e["run"], *[v for L in layers for v in (L["mean"], L["ci95_half"])], *[None] * 2 * pad])
        md.append([e["run"], *[fmt_pm(L["mean"], L["ci95_half"], sign="+-") for L in layers], *["-"] * pad])
    header = ["run", *[c for n in names for c in (f"{n}_mean", f"{n}_ci95_half")]]
    return Table(header, rows, md, markdown_header=["run", *names])


def entropy_steps_table(entries: Sequence[dict[str, Any]]) -> Table:
    """Mean per-sequence entropy per layer against the training step. ``entries``: dicts with ``run`` and
    ``steps``, a list of ``(step, result of compute_layer_entropy)`` pairs."""
    width = max((len(e["layers"]) for entry in entries for _, e in entry["steps"]), default=0)
    header = ["run", "step", *[f"L{i}" for i in range(width)]]
    rows: list[list[Any]] = []
    for entry in entries:
        for step, e in entry["steps"]:
            means = [L["mean"] for L in e["layers"]]
            rows.append([entry["run"], step, *means, *([None] * (width - len(means)))])
    return Table(header, rows)


def throughput_table(entries: Sequence[dict[str, Any]]) -> Table:
    """Decoding throughput and T_norm. ``entries``: dicts with ``run``, ``method``, ``task``,
    ``examples_per_s``. T_norm divides by the vanilla run of the same task (the mean when there are
    several); it is empty when the task has no vanilla run."""
    ref: dict[str, list[float]] = {}
    for e in entries:
        if e["method"] == "vanilla":
            ref.setdefault(str(e["task"]), []).append(float(e["examples_per_s"]))
    header = ["run", "configuration", "task", "examples_per_s", "T_norm"]
    rows: list[list[Any]] = []
    md: list[list[str]] = []
    for e in entries:
        base = ref.get(str(e["task"]))
        tnorm = float(e["examples_per_s"]) / (sum(base) / len(base)) if base else None
        label = method_label(e["method"], int(e.get("pauses", 2)))
        rows.append([e["run"], label, e["task"], float(e["examples_per_s"]), tnorm])
        md.append([e["run"], label, str(e["task"]), f"{float(e['examples_per_s']):,.0f}", fmt(tnorm, 2)])
    return Table(header, rows, md)
