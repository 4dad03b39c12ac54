"""Tables as Markdown (for report.md) and CSV (for other tools): the numbers behind every figure.

* :func:`accuracy_table` -- exact match in the layout of the paper's Table 1: one row per
  configuration (With CoT, Vanilla, Pause, Seq-VCR, Seq-VCR + Pause, in the paper's order), one column
  per task setting (``mult 4x4``, ...). Runs that share a cell (seeds) are averaged; the cell then says
  ``mean +- std (n)``.
* :func:`position_table` -- accuracy per answer position, one row per run.
* :func:`entropy_table` -- mean per-sequence entropy per layer (+- the 95% CI half-width), one row per run.
* :func:`entropy_steps_table` -- mean per-sequence entropy per layer at each snapshot step, one row per
  (run, step).
* :func:`throughput_table` -- decoding throughput and T_norm = examples/s of a run divided by that of the
  no-CoT (vanilla) run of the same task (App. E).

The tables are :class:`seqvcr.reporting.tables.Table` objects (raw values; Markdown formats them,
CSV keeps full precision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqvcr.reporting.stats import summarize
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
    """Table 1 layout. ``entries``: dicts with ``method``, ``pauses``, ``task`` (column) and ``exact_match``.

    Rows follow the paper's order (unknown configurations after them, alphabetically); columns follow
    the order in which task settings first appear. CSV: one column per task (mean) plus ``n``.
    """
    columns: list[str] = []
    cells: dict[tuple[str, str], list[float]] = {}
    row_keys: dict[str, str] = {}
    for e in entries:
        task = str(e["task"])
        if task not in columns:
            columns.append(task)
        label = method_label(e["method"], int(e.get("pauses", 2)))
        row_keys.setdefault(label, e["method"])
        cells.setdefault((label, task), []).append(float(e["exact_match"]))

    def order(label: str) -> tuple[int, str]:
        m = row_keys[label]
        return (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), label)

    labels = sorted(row_keys, key=order)
    header = ["configuration", *columns]
    rows: list[list[Any]] = []
    md: list[list[str]] = []
    for label in labels:
        raw: list[Any] = [label]
        txt: list[str] = [label]
        for col in columns:
            vals = cells.get((label, col))
            if not vals:
                raw.append(None)
                txt.append("-")
                continue
            st = summarize(vals)
            raw.append(st.mean)
            txt.append(fmt(st.mean) if st.n == 1 else f"{fmt_pm(st.mean, st.std, sign='+-')} ({st.n} runs)")
        rows.append(raw)
        md.append(txt)
    return Table(header, rows, md)


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
    header_md = ["run", *names]
    header_csv = ["run", *[c for n in names for c in (f"{n}_mean", f"{n}_ci95_half")]]
    rows: list[list[Any]] = []
    md: list[list[str]] = []
    for e in entries:
        layers = e["entropy"]["layers"]
        raw: list[Any] = [e["run"]]
        txt: list[str] = [e["run"]]
        for i in range(width):
            if i < len(layers):
                raw += [layers[i]["mean"], layers[i]["ci95_half"]]
                txt.append(fmt_pm(layers[i]["mean"], layers[i]["ci95_half"], sign="+-"))
            else:
                raw += [None, None]
                txt.append("-")
        rows.append(raw)
        md.append(txt)
    return Table(header_csv, rows, md, markdown_header=header_md)


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
