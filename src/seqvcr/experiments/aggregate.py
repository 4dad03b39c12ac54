"""Aggregated reports of a sweep: one row per setting, one column per metric, over seeds.

``report_sweep(SWEEP_DIR)`` reads only the sweep directory (manifest.json, and per run result.json,
eval.json, entropy.json, error.txt), so a copied sweep directory reports the same anywhere. It writes
to ``SWEEP_DIR/report`` (or ``out``):

* ``report.md``: per study, the seed's table layout -- one row per replacement, one column per metric --
  then entropy per layer and accuracy per answer position, the plots, and the runs that are missing,
  crashed or skipped;
* ``summary.csv`` (one row per setting), ``layer_entropy.csv``, ``position_accuracy.csv`` and
  ``learning_curves.csv`` (long format), ``runs.csv`` (one row per run, the raw numbers);
* per study, PNG plots of exact match and of mean intermediate-layer entropy against the ablated value,
  of entropy per layer, of accuracy per answer position, and the learning curves: the periodic
  validation exact match and the training LM loss of ``metrics.jsonl`` against the step (mean over
  seeds), where a phase transition shows.

Statistics over the seeds of a setting (only finished runs count; ``n`` says how many):
mean, sample standard deviation (n - 1 in the denominator) and a 95% confidence interval for the mean,
``mean +- t(0.975, n - 1) * std / sqrt(n)`` with Student's t quantile (``seqvcr.reporting.stats``:
12.71 for 2 seeds, 4.30 for 3, 2.78 for 5). With one seed there is no spread: std and CI are left empty.
"Entropy" is the paper's matrix entropy (Eq. 2) of each layer, averaged over the evaluated sequences by
``seqvcr.analysis.layer_entropy``; the summary column averages layers 1..N-1 (the intermediate layers,
excluding the embeddings L0 and the last layer LN) of a run, then over seeds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqvcr.atomic import write_text_atomic
from seqvcr.errors import RunDirError
from seqvcr.experiments import sweep as S
from seqvcr.reporting.figures import new_figure, save_figure
from seqvcr.reporting.stats import Stats, summarize, t_quantile
from seqvcr.reporting.tables import fmt, fmt_interval, fmt_pm, markdown_table, write_csv
from seqvcr.runs import METRICS_FILE, RESULT_FILE

REPORT_MARK = "<!-- seqvcr sweep report -->"


# ---------------------------------------------------------------------------------------------- reading


def layer_means(entropy: dict[str, Any]) -> list[float]:
    """Mean entropy per hidden state (L0..LN) from an entropy.json written by the analysis module."""
    layers = entropy.get("layers")
    if isinstance(layers, list) and layers and isinstance(layers[0], dict):
        ordered = sorted(layers, key=lambda d: d.get("layer", 0))
        return [float(d["mean"]) for d in ordered]
    if isinstance(layers, dict):
        items = sorted(layers.items(), key=lambda kv: int(str(kv[0]).lstrip("L")))
        return [float(v["mean"] if isinstance(v, dict) else v) for _, v in items]
    for key in ("mean", "means", "layer_mean", "per_layer"):
        value = entropy.get(key)
        if isinstance(value, list):
            return [float(v["mean"] if isinstance(v, dict) else v) for v in value]
    raise RunDirError("entropy.json: no per-layer means found (expected 'layers' with 'mean' per layer)")


def intermediate_mean(means: Sequence[float]) -> float:
    """Average over layers 1..N-1 of L0..LN (NaN when the model has fewer than two layers)."""
    inner = list(means[1:-1])
    return sum(inner) / len(inner) if inner else float("nan")


@dataclass
class RunRecord:
    """The numbers of one run, as read from its directory."""

    id: str
    seed: int
    status: str
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


def read_curves(
    metrics_file: Path,
) -> tuple[list[tuple[int, float]], list[tuple[int, float]], dict[str, float]]:
    """The learning curves of a run's ``metrics.jsonl``: validation exact match and training LM loss,
    and the numeric fields of its last training record (the loss terms at the end of training).

    Unreadable lines (a torn last line) are skipped: the curves are a view, not the record.
    """
    valid: list[tuple[int, float]] = []
    loss: list[tuple[int, float]] = []
    final: dict[str, float] = {}
    if not metrics_file.is_file():
        return valid, loss, final
    for line in metrics_file.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "eval" and rec.get("split") == "valid" and "exact_match" in rec:
            valid.append((int(rec["step"]), float(rec["exact_match"])))
        elif rec.get("kind") == "train" and "lm_loss" in rec:
            loss.append((int(rec["step"]), float(rec["lm_loss"])))
            final = {k: float(v) for k, v in rec.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return valid, loss, final


def read_run(sweep: Path, run: dict[str, Any]) -> RunRecord:
    rd = S.run_path(sweep, run)
    status = S.run_status(sweep, run["id"], rd)
    rec = RunRecord(run["id"], int(run["seed"]), status)
    if status == "skipped":
        rec.error = run.get("skip") or (S.read_json(rd / S.SPEC) or {}).get("skip")
    if (rd / S.ERROR).is_file() and status != "done":
        rec.error = (rd / S.ERROR).read_text().splitlines()[0] if (rd / S.ERROR).stat().st_size else "error"
    if status != "done":
        return rec
    result = S.read_json(rd / RESULT_FILE) or {}
    rec.steps = result.get("steps")
    rec.train_time_s = result.get("train_time_s")
    rec.machine = result.get("machine_description")
    ev = S.read_json(rd / S.EVAL)
    if ev:
        rec.exact_match = ev.get("exact_match")
        rec.position_accuracy = ev.get("position_accuracy")
        rec.eval_n = ev.get("n")
    ent = S.read_json(rd / S.ENTROPY)
    if ent:
        rec.layer_entropy = layer_means(ent)
        rec.entropy_intermediate = intermediate_mean(rec.layer_entropy)
    rec.valid_curve, rec.loss_curve, rec.final_train = read_curves(rd / METRICS_FILE)
    return rec


@dataclass
class SettingSummary:
    """One row of a study table."""

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


def collect(sweep_dir: str | Path) -> tuple[dict[str, Any], dict[str, RunRecord], list[list[SettingSummary]]]:
    """Manifest, the record of every run, and the summaries per study (in plan order)."""
    sweep = Path(sweep_dir)
    manifest = S.load_manifest(sweep)
    records = {r["id"]: read_run(sweep, r) for r in manifest["runs"]}
    studies = [
        [summarize_setting(st["name"], s, records) for s in st["settings"]] for st in manifest["studies"]
    ]
    return manifest, records, studies


# ---------------------------------------------------------------------------------------------- formatting


def _pm(st: Stats, digits: int = 3) -> str:
    """``mean ± std`` over seeds (the mean alone for one seed, ``--`` for none)."""
    if st.n == 0:
        return "--"
    return fmt(st.mean, digits) if st.n == 1 else fmt_pm(st.mean, st.std, digits)


def _ci(st: Stats, digits: int = 3, bounds: tuple[float, float] | None = None) -> str:
    """The 95% CI; ``bounds`` clips it to the metric's range (accuracy: [0, 1]) for display."""
    if st.n < 2:
        return "--"
    lo, hi = st.ci_low, st.ci_high
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return fmt_interval(lo, hi, digits)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table whose cells may hold ``|`` (setting labels of crossed studies): escaped."""
    return markdown_table(header, [[c.replace("|", "\\|") for c in row] for row in rows])


def _seeds_cell(s: SettingSummary) -> str:
    done = len(s.done)
    skipped = sum(r.status == "skipped" for r in s.runs)
    if skipped == s.planned:
        return "skipped"
    return f"{done}/{s.planned}"


def _slug(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return keep.strip("_") or "study"


# ---------------------------------------------------------------------------------------------- plots


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _x_positions(values: list[Any]) -> tuple[list[float], list[str], bool]:
    """Numeric x when every value is a number (log scale when they span >= 8x), else categories."""
    uniq: list[Any] = []
    for v in values:
        if v not in uniq:
            uniq.append(v)
    if _numeric(uniq) and len(uniq) > 1:
        xs = [float(v) for v in values]
        log = min(xs) > 0 and max(xs) / min(xs) >= 8
        return xs, [f"{v:g}" for v in uniq], log
    index = {v: i for i, v in enumerate(uniq)}
    return [float(index[v]) for v in values], [str(v) for v in uniq], False


def _groups(study: list[SettingSummary]) -> list[tuple[str, list[tuple[Any, SettingSummary]]]]:
    """Series to draw: crossed studies get one series per combination of the other factors."""
    groups: dict[str, list[tuple[Any, SettingSummary]]] = {}
    for s in study:
        if len(s.factors) > 1:
            key = " | ".join(str(f[1]) for f in s.factors[1:])
            x = s.factors[0][2] if s.factors[0][2] is not None else s.factors[0][1]
            if not isinstance(x, (int, float)) or isinstance(x, bool):
                x = s.factors[0][1]
        else:
            key = ""
            x = s.value if s.value is not None else s.label
            if not isinstance(x, (int, float, str)) or isinstance(x, bool):
                x = s.label
        groups.setdefault(key, []).append((x, s))
    return list(groups.items())


def _plot_vs_value(study: list[SettingSummary], which: str, ylabel: str, title: str, path: Path,
                   xlabel: str) -> bool:
    """Mean +- std over seeds (error bars) against the ablated value; each seed as a faint dot.

    The std, not the 95% CI, is drawn: with 2-3 seeds the t-interval is 4-13 std wide and would hide
    the data; the CI is in the tables."""
    import matplotlib

    groups = _groups(study)
    all_x = [x for _, items in groups for x, _ in items]
    xs_all, ticks, log = _x_positions(all_x)
    numeric = _numeric(all_x) and len(set(all_x)) > 1
    pos = dict(zip(map(repr, all_x), xs_all))
    any_point = False
    fig = new_figure((7.0, 4.2))
    ax = fig.subplots()
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    n_groups = len(groups)
    for gi, (name, items) in enumerate(groups):
        color = colors[gi % len(colors)]
        offset = 0.0 if numeric or n_groups == 1 else (gi - (n_groups - 1) / 2) * 0.08
        xs, means, lo, hi = [], [], [], []
        for x, s in items:
            st: Stats = s.exact_match if which == "exact_match" else s.entropy
            if st.n == 0:
                continue
            px = pos[repr(x)] * (1.0 if numeric else 1.0) + offset
            xs.append(px)
            means.append(st.mean)
            lo.append(st.std if st.n > 1 else 0.0)
            hi.append(st.std if st.n > 1 else 0.0)
            ax.scatter([px] * len(st.values), st.values, s=14, color=color, alpha=0.35, zorder=2,
                       linewidths=0)
            any_point = True
        if not xs:
            continue
        ax.errorbar(xs, means, yerr=[lo, hi], color=color, marker="o", ms=5, capsize=3, lw=1.5,
                    label=name or None, zorder=3)
    if not any_point:
        return False
    if numeric:
        if log:
            ax.set_xscale("log", base=2 if all(float(v).is_integer() for v in all_x) else 10)
        uniq = sorted({float(v) for v in all_x})
        ax.set_xticks(uniq)
        ax.set_xticklabels([f"{v:g}" for v in uniq])
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(ticks)))
        long = max(len(t) for t in ticks) > 12 or len(ticks) > 6
        ax.set_xticklabels(ticks, rotation=30 if long else 0, ha="right" if long else "center", fontsize=8)
        ax.set_xlim(-0.5, len(ticks) - 0.5)
    if which == "exact_match":  # from 0; up to 1 unless every value is small (then zoom in)
        top = max(max(s.exact_match.values, default=0.0) for _, items in groups for _, s in items)
        top = min(1.0, max(0.05, 1.15 * top + 0.01))
        ax.set_ylim(-0.03 * top, top * 1.03)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + "\n(mean ± std over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if n_groups > 1:
        ax.legend(fontsize=8, title=None, loc="best")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    return True


def _plot_lines(study: list[SettingSummary], which: str, xlabel: str, ylabel: str, title: str,
                path: Path) -> bool:
    """One line per setting: entropy per layer, or accuracy per answer position (mean +- std).

    Crossed studies get one panel per level of the other factors (e.g. one per task kind, whose layer
    counts or answer lengths may differ), the lines coloured by the first factor's level.
    """
    import matplotlib

    firsts: list[str] = []
    panels: list[str] = []
    series = []
    for s in study:
        sts = s.layer_entropy if which == "layer" else s.position_accuracy
        first = str(s.factors[0][1]) if s.factors else s.label
        rest = " | ".join(str(f[1]) for f in s.factors[1:])
        firsts += [first] if first not in firsts else []
        if sts and any(st.n for st in sts):
            panels += [rest] if rest not in panels else []
            series.append((first, rest, sts))
    if not series:
        return False
    n_panels = len(panels)
    fig = new_figure((2.2 + 3.6 * n_panels, 4.4))
    axes = fig.subplots(1, n_panels, sharey=True, squeeze=False)
    cmap = matplotlib.colormaps["tab10" if len(firsts) <= 10 else "viridis"]
    shade = len(firsts) <= 6
    handles: dict[str, Any] = {}
    for pi, panel in enumerate(panels):
        ax = axes[0][pi]
        width = 0
        for first, rest, sts in series:
            if rest != panel:
                continue
            i = firsts.index(first)
            color = cmap(i % 10) if len(firsts) <= 10 else cmap(i / max(1, len(firsts) - 1))
            xs = [k for k, st in enumerate(sts) if st.n]
            ys = [sts[k].mean for k in xs]
            (line,) = ax.plot(xs, ys, marker="o", ms=3.5, lw=1.4, color=color)
            handles.setdefault(first, line)
            if shade and all(sts[k].n > 1 for k in xs):  # +- 1 std over seeds
                ax.fill_between(xs, [sts[k].mean - sts[k].std for k in xs],
                                [sts[k].mean + sts[k].std for k in xs], color=color, alpha=0.12, lw=0)
            width = max(width, len(sts))
        ax.set_xticks(range(width))
        if which == "layer":
            ax.set_xticklabels([f"L{k}" for k in range(width)], fontsize=8)
        else:  # answer positions count from 1, as in the run report (multiplication: least significant)
            ax.set_xticklabels([str(k + 1) for k in range(width)], fontsize=8)
            ax.set_ylim(-0.03, 1.03)
        ax.set_xlim((-0.5, 0.5) if width <= 1 else (-0.3, width - 0.7))
        ax.set_xlabel(xlabel)
        if panel:
            ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=10)
    fig.legend([handles[f] for f in firsts if f in handles], [f for f in firsts if f in handles],
               fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=120, bbox_inches="tight")
    return True


def _plot_curves(study: list[SettingSummary], title: str, path: Path) -> bool:
    """Learning curves: validation exact match (left) and training LM loss (right, log scale) against
    the step, one line per setting (mean over its finished seeds, a band of +- 1 std)."""
    import matplotlib

    series = [
        (s.label, curve_stats([r.valid_curve for r in s.done]), curve_stats([r.loss_curve for r in s.done]))
        for s in study
    ]
    series = [x for x in series if x[1] or x[2]]
    if not series:
        return False
    fig = new_figure((11.0, 4.2))
    ax_em, ax_lm = fig.subplots(1, 2)
    cmap = matplotlib.colormaps["tab10" if len(series) <= 10 else "viridis"]
    for i, (label, em, lm) in enumerate(series):
        color = cmap(i % 10) if len(series) <= 10 else cmap(i / max(1, len(series) - 1))
        for ax, pts in ((ax_em, em), (ax_lm, lm)):
            if not pts:
                continue
            xs = [step for step, _ in pts]
            ax.plot(xs, [st.mean for _, st in pts], lw=1.3, color=color, label=label)
            if all(st.n > 1 for _, st in pts):
                ax.fill_between(xs, [st.mean - st.std for _, st in pts], [st.mean + st.std for _, st in pts],
                                color=color, alpha=0.12, lw=0)
    ax_em.set_ylim(-0.03, 1.03)
    ax_em.set_ylabel("validation exact match (periodic probe)")
    ax_lm.set_yscale("log")
    ax_lm.set_ylabel("training LM loss (per logged interval)")
    for ax in (ax_em, ax_lm):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title + "\n(mean ± std over seeds)", fontsize=10)
    handles, labels = ax_em.get_legend_handles_labels()
    if not handles:
        handles, labels = ax_lm.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=120, bbox_inches="tight")
    return True


# ---------------------------------------------------------------------------------------------- report


def _prepare_out(sweep: Path, out: str | Path | None, force: bool) -> Path:
    dest = Path(out) if out is not None else sweep / "report"
    if dest.exists() and any(dest.iterdir()) and not force:
        md = dest / "report.md"
        ours = md.is_file() and REPORT_MARK in md.read_text()[:400]
        if not ours:
            raise RunDirError(
                f"{dest}: exists and does not hold a sweep report; use --force or another --out"
            )
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.png"):
        old.unlink()
    return dest


def _wrap(text: str, width: int = 70) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) if text else ""


def report_sweep(sweep_dir: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """Write the aggregated report of a sweep (see the module docstring); returns report.md's path.

    The default destination is SWEEP_DIR/report; a report written there before is replaced. A folder
    that holds something else is refused unless ``force``.
    """
    sweep = Path(sweep_dir)
    manifest, records, studies = collect(sweep)
    dest = _prepare_out(sweep, out, force)
    md = [REPORT_MARK, f"# Sweep report: {manifest['name']}", ""] + _overview(sweep, manifest, records)
    for st_meta, study in zip(manifest["studies"], studies):
        md += _study_section(st_meta, study, manifest, dest)
    _write_csvs(dest, manifest, records, studies)
    write_text_atomic(dest / "report.md", "\n".join(md).rstrip() + "\n")
    return dest / "report.md"


def _overview(sweep: Path, manifest: dict[str, Any], records: dict[str, RunRecord]) -> list[str]:
    """The lines under the report's title: the sweep, its runs, and how the statistics are made."""
    counts: dict[str, int] = {}
    for r in records.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    machines = sorted({r.machine for r in records.values() if r.machine})
    md: list[str] = []
    if manifest.get("description"):
        md += [manifest["description"], ""]
    md += [
        f"- sweep directory: `{sweep.name}` ({len(records)} runs: "
        + ", ".join(f"{counts[k]} {k}" for k in S.STATUSES if k in counts) + ")",
        f"- seeds: {', '.join(map(str, manifest.get('seeds', [])))}; metrics: "
        f"{', '.join(manifest.get('metrics', []))}",
        f"- base config: `{manifest.get('base') or '(inline)'}`; eval data: "
        + (f"`{manifest['eval_data']}`" if manifest.get("eval_data") else "each setting's task.test_file, "
           "else its held-out validation set")
        + (f" (first {manifest['eval_limit']} examples)" if manifest.get("eval_limit") else ""),
    ]
    if machines:
        md.append(f"- measured on: {'; '.join(machines)}")
    md += [
        "- statistics over seeds: mean ± sample std; 95% CI = mean ± t(0.975, n-1)·std/√n (Student's t; "
        "shown clipped to [0, 1] for exact match and normalised entropy, unclipped in summary.csv); "
        "one seed gives no CI; plots show mean ± std",
        "- entropy: matrix entropy (Eq. 2, von Neumann) of each sequence's token representations per layer, "
        + ("divided by log(min(T, d)) (values in [0, 1], comparable across sequence lengths), "
           if manifest.get("entropy_normalize", True) else "in nats, ")
        + f"mean over {manifest.get('entropy_sequences')} sequences; the summary column averages the "
        "intermediate layers L1..L(N-1)",
        "",
    ]
    return md


def _study_section(
    st_meta: dict[str, Any], study: list[SettingSummary], manifest: dict[str, Any], dest: Path
) -> list[str]:
    """One study: its table over seeds, the means per layer and per answer position, its plots (written
    into ``dest``) and the runs that are not in the table."""
    metrics = manifest.get("metrics", [])
    normalized = bool(manifest.get("entropy_normalize", True))
    name = st_meta["name"]
    md = [f"## {name}", ""]
    if st_meta.get("part"):
        md += [f"Ablated part: {st_meta['part']} (action: {st_meta.get('action')})", ""]
    header = ["setting", "seeds"]
    if "exact_match" in metrics:
        header += ["exact match (mean ± std)", "95% CI"]
    if "matrix_entropy" in metrics:
        header += ["entropy L1..L(N-1) (mean ± std)", "95% CI"]
    rows = []
    for s in study:
        row = [s.label, _seeds_cell(s)]
        if "exact_match" in metrics:
            row += [_pm(s.exact_match), _ci(s.exact_match, bounds=(0.0, 1.0))]
        if "matrix_entropy" in metrics:
            row += [_pm(s.entropy), _ci(s.entropy, bounds=(0.0, 1.0) if normalized else None)]
        rows.append(row)
    md += [_md_table(header, rows), ""]

    if "matrix_entropy" in metrics and any(s.layer_entropy for s in study):
        width = max(len(s.layer_entropy) for s in study)
        md += [f"Entropy per layer (mean over seeds; L0 = embeddings, L{width - 1} = last layer):", ""]
        md += [_means_table(study, "layer", "L", 3), ""]
    if "position_accuracy" in metrics and any(s.position_accuracy for s in study):
        md += ["Accuracy per answer position (mean over seeds; position 1 = the first answer token "
               "of the file's order, for multiplication the least significant digit):", ""]
        md += [_means_table(study, "position", "p", 2), ""]

    for file, alt in _study_plots(st_meta, study, metrics, dest):
        md += [f"![{alt}]({file})", ""]

    notes = []
    for s in study:
        for r in s.runs:
            if r.status != "done":
                why = f": {r.error}" if r.error else ""
                notes.append(f"- {s.label}, seed {r.seed} (`runs/{r.id}`): {r.status}{why}")
    if notes:
        md += ["Runs not in the table:", ""] + sorted(set(notes)) + [""]
    return md


def _means_table(study: list[SettingSummary], which: str, prefix: str, digits: int) -> str:
    """One row per setting, one column per layer (``which="layer"``) or answer position: the mean over
    seeds."""
    per = [s.layer_entropy if which == "layer" else s.position_accuracy for s in study]
    width = max(len(p) for p in per)
    rows = [[s.label] + [fmt(p[k].mean, digits, missing="") if k < len(p) else "" for k in range(width)]
            for s, p in zip(study, per)]
    first = 0 if which == "layer" else 1  # layers from L0 (the embeddings), answer positions from 1
    return _md_table(["setting"] + [f"{prefix}{k + first}" for k in range(width)], rows)


def _study_plots(
    st_meta: dict[str, Any], study: list[SettingSummary], metrics: list[str], dest: Path
) -> list[tuple[str, str]]:
    """Draw the study's plots into ``dest``; returns (file, alt text) of those that have data."""
    name = st_meta["name"]
    slug = _slug(name)
    xlabel = st_meta["factors"][0] if st_meta.get("factors") else name
    title = _wrap(st_meta.get("part") or name, 72)
    plots = []
    if "exact_match" in metrics and _plot_vs_value(
        study, "exact_match", "exact match", title, dest / f"{slug}_accuracy.png", xlabel
    ):
        plots.append((f"{slug}_accuracy.png", "exact match vs ablated value"))
    if "matrix_entropy" in metrics:
        if _plot_vs_value(study, "entropy", "entropy of layers L1..L(N-1)", title,
                          dest / f"{slug}_entropy.png", xlabel):
            plots.append((f"{slug}_entropy.png", "entropy vs ablated value"))
        if _plot_lines(study, "layer", "layer", "matrix entropy (mean ± std over seeds)", title,
                       dest / f"{slug}_layer_entropy.png"):
            plots.append((f"{slug}_layer_entropy.png", "entropy per layer"))
    if "position_accuracy" in metrics and _plot_lines(
        study, "position", "answer position", "accuracy (mean ± std over seeds)", title,
        dest / f"{slug}_position_accuracy.png"
    ):
        plots.append((f"{slug}_position_accuracy.png", "accuracy per answer position"))
    if _plot_curves(study, title, dest / f"{slug}_learning_curves.png"):
        plots.append((f"{slug}_learning_curves.png", "learning curves"))
    return plots


#: The columns of the report's CSV files (NaN, as for a standard deviation over one seed, is empty).
SUMMARY_COLUMNS = ["study", "setting", "value", "seeds_planned", "seeds_done", "seeds", "exact_match_mean",
                   "exact_match_std", "exact_match_ci95_low", "exact_match_ci95_high", "entropy_mean",
                   "entropy_std", "entropy_ci95_low", "entropy_ci95_high", "notes"]
STATS_COLUMNS = ["n", "mean", "std", "ci95_low", "ci95_high"]
RUN_COLUMNS = ["id", "study", "setting", "seed", "status", "exact_match", "entropy_intermediate",
               "eval_examples", "steps", "train_time_s", "error"]


def _write_csvs(
    dest: Path, manifest: dict[str, Any], records: dict[str, RunRecord], studies: list[list[SettingSummary]]
) -> None:
    """summary.csv (a row per setting), layer_entropy.csv, position_accuracy.csv and learning_curves.csv
    (a row per setting and layer, position or logged step), runs.csv (a row per run)."""
    summary_rows: list[list[Any]] = []
    layer_rows: list[list[Any]] = []
    pos_rows: list[list[Any]] = []
    curve_rows: list[list[Any]] = []
    for st_meta, study in zip(manifest["studies"], studies):
        name = st_meta["name"]
        for s in study:
            em, ent = s.exact_match, s.entropy
            summary_rows.append([
                name, s.label, s.value if not isinstance(s.value, (dict, list)) else s.label,
                s.planned, len(s.done), ",".join(str(r.seed) for r in s.done),
                em.mean, em.std, em.ci_low, em.ci_high, ent.mean, ent.std, ent.ci_low, ent.ci_high,
                "; ".join(sorted({r.error for r in s.runs if r.error})),
            ])
            layer_rows += [[name, s.label, k, *_stats_cells(st)] for k, st in enumerate(s.layer_entropy)]
            pos_rows += [[name, s.label, k, *_stats_cells(st)] for k, st in enumerate(s.position_accuracy, 1)]
            for kind, curves in (("valid_exact_match", [r.valid_curve for r in s.done]),
                                 ("train_lm_loss", [r.loss_curve for r in s.done])):
                curve_rows += [[name, s.label, kind, step, *_stats_cells(st)]
                               for step, st in curve_stats(curves)]
    run_rows = []
    for r in manifest["runs"]:
        rec = records[r["id"]]
        run_rows.append([r["id"], r["study"], r["setting"], rec.seed, rec.status, rec.exact_match,
                         rec.entropy_intermediate, rec.eval_n, rec.steps, rec.train_time_s, rec.error])
    write_csv(dest / "summary.csv", SUMMARY_COLUMNS, summary_rows, blank_nan=True)
    write_csv(dest / "layer_entropy.csv", ["study", "setting", "layer", *STATS_COLUMNS], layer_rows,
              blank_nan=True)
    write_csv(dest / "position_accuracy.csv", ["study", "setting", "position", *STATS_COLUMNS], pos_rows,
              blank_nan=True)
    write_csv(dest / "learning_curves.csv", ["study", "setting", "curve", "step", *STATS_COLUMNS], curve_rows,
              blank_nan=True)
    write_csv(dest / "runs.csv", RUN_COLUMNS, run_rows, blank_nan=True)


def _stats_cells(st: Stats) -> list[Any]:
    return [st.n, st.mean, st.std, st.ci_low, st.ci_high]


__all__ = ["Stats", "collect", "report_sweep", "summarize", "t_quantile"]
