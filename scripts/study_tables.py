"""The tables and figures of docs/results.md, made from committed study directories.

    python scripts/study_tables.py results/cpu_table1                  # Markdown tables on stdout
    python scripts/study_tables.py results/seed000_lambda --lambda-plot results/seed000_lambda/lambda.png
    python scripts/study_tables.py results/seed000_projdim --value-plot results/seed000_projdim/proj_dim.png
    python scripts/study_tables.py results/cpu_table1 --runs --rank-test "Seq-VCR|Seq-VCR + Pause (2)" \
        "Vanilla|Pause (2)"

Reads only what ``seqvcr report STUDY`` reads (the manifest and each run's eval.json, entropy.json and
metrics.jsonl, through ``seqvcr.experiments.aggregate.collect``), so every number printed is the mean
over the committed runs' files. Per study it prints, one row per setting (the seed's layout): exact
match as mean ± 95% CI over seeds (Student's t), the mean entropy of the intermediate layers, the
entropy of every layer, and the accuracy of the hardest answer positions (the two with the lowest mean
accuracy over the study's settings).

``--lambda-plot`` draws exact match and intermediate-layer entropy against lambda2/lambda1 on a log axis,
one marker per scale of the pair (x0.5, x1, x2 of the family's middle pair); ``--value-plot`` draws
both against the ablated value (a projection dimension: log2 axis). ``--runs`` adds one row per finished
run (its exact match, accuracy per position and entropy per layer), so a mean can be read with its seeds.
``--correlation`` adds Spearman's rank correlation between exact match and intermediate-layer entropy,
over the finished runs and over the settings' means (does entropy track accuracy?). A study of lambda
pairs also gets a grid of exact match by the pair's ratio lambda2/lambda1 (rows) and its scale (columns),
so the spread along a row (scale) can be read against the spread down a column (ratio).
``--terms`` adds, per setting, where the training loss terms stood at the end of training (the last
training record of each run's ``metrics.jsonl``: LM loss, the Seq-VCR variance hinge and covariance
term before their coefficients, the weighted Seq-VCR loss) and the training time, as the mean over the
finished runs with their range: the mechanism behind a row, and what a run costs.
``--rank-test A B`` compares the exact match of the runs of settings A (``|``-separated labels) with
those of settings B by an exact one-sided permutation test of the Mann-Whitney statistic U (the number
of (a, b) pairs with a > b, ties counted one half): p is the fraction of all ways to split the pooled
runs into groups of the same sizes whose U is at least the observed one. It makes no assumption about
the distribution over seeds, which matters with 3 seeds and accuracies near 0.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from seqvcr.errors import SeqVCRError
from seqvcr.experiments.aggregate import SettingSummary, collect
from seqvcr.reporting.figures import new_figure, save_figure
from seqvcr.reporting.stats import Stats, exact_rank_test, spearman_test
from seqvcr.reporting.tables import fmt, markdown_table


def _ci(st: Stats, digits: int = 3) -> str:
    """mean ± half-width of the 95% CI (the half-width alone is enough to read a table)."""
    if st.n == 0:
        return "-"
    if st.n == 1 or math.isnan(st.ci_high):
        return f"{st.mean:.{digits}f}"
    return f"{st.mean:.{digits}f} ± {st.ci_high - st.mean:.{digits}f}"


def hardest_positions(study: list[SettingSummary], k: int = 2) -> list[int]:
    """The ``k`` answer positions (0-based) with the lowest accuracy averaged over the settings."""
    width = max((len(s.position_accuracy) for s in study), default=0)
    means = []
    for p in range(width):
        vals = [s.position_accuracy[p].mean for s in study if p < len(s.position_accuracy) and s.done]
        means.append(sum(vals) / len(vals) if vals else math.inf)
    return sorted(sorted(range(width), key=lambda p: means[p])[:k])


def study_table(study: list[SettingSummary]) -> str:
    """One row per setting: seeds, exact match (mean ± 95% CI), intermediate entropy, entropy per layer,
    accuracy of the hardest positions (mean ± 95% CI), all over the finished seeds."""
    layers = max((len(s.layer_entropy) for s in study), default=0)
    hard = hardest_positions(study)
    header = ["setting", "seeds", "exact match (95% CI)", "entropy L1..L(N-1)"]
    header += [f"entropy L{k}" for k in range(layers)]
    header += [f"accuracy, position {p + 1}" for p in hard]
    rows: list[list[Any]] = []
    for s in study:
        row = [s.label, f"{len(s.done)}/{s.planned}", _ci(s.exact_match), _ci(s.entropy)]
        row += [fmt(s.layer_entropy[k].mean) if k < len(s.layer_entropy) else "-" for k in range(layers)]
        row += [_ci(s.position_accuracy[p], 2) if p < len(s.position_accuracy) else "-" for p in hard]
        rows.append(row)
    return markdown_table(header, rows)


def position_table(study: list[SettingSummary]) -> str:
    """Accuracy per answer position (1 = least significant digit), mean over seeds."""
    width = max((len(s.position_accuracy) for s in study), default=0)
    rows = [[s.label] + [fmt(st.mean, 2) for st in s.position_accuracy]
            + ["-"] * (width - len(s.position_accuracy)) for s in study]
    return markdown_table(["setting"] + [f"position {p + 1}" for p in range(width)], rows)


def run_table(study: list[SettingSummary]) -> str:
    """One row per finished run: setting, seed, exact match, accuracy per position, entropy per layer."""
    done = [(s, r) for s in study for r in s.done]
    width = max((len(r.position_accuracy or []) for _, r in done), default=0)
    layers = max((len(r.layer_entropy or []) for _, r in done), default=0)
    header = ["setting", "seed", "exact match"] + [f"pos {p + 1}" for p in range(width)]
    header += [f"entropy L{k}" for k in range(layers)]
    rows: list[list[Any]] = []
    for s, r in done:
        pos = list(r.position_accuracy or [])
        ent = list(r.layer_entropy or [])
        row = [s.label, r.seed, fmt(r.exact_match)] + [fmt(v, 2) for v in pos] + ["-"] * (width - len(pos))
        rows.append(row + [fmt(v) for v in ent] + ["-"] * (layers - len(ent)))
    return markdown_table(header, rows)


#: (column header, field of the last training record) of the ``--terms`` table
TERMS = [("LM loss", "lm_loss"), ("variance hinge", "seqvcr_variance"),
         ("covariance term", "seqvcr_covariance"), ("Seq-VCR loss (weighted)", "seqvcr_loss")]


def _mean_range(vals: list[float], digits: int) -> str:
    """``mean (min-max)`` of the values, the value alone for one, ``-`` for none."""
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})"


def terms_table(study: list[SettingSummary]) -> str:
    """One row per setting: the loss terms of the last training record and the training time in
    minutes, each as the mean over the finished runs with its range."""
    header = ["setting", "seeds"] + [f"{name}, end" for name, _ in TERMS] + ["training time, min"]
    rows: list[list[Any]] = []
    for s in study:
        row: list[Any] = [s.label, f"{len(s.done)}/{s.planned}"]
        for _, key in TERMS:
            row.append(_mean_range([r.final_train[key] for r in s.done if key in r.final_train], 3))
        row.append(_mean_range([r.train_time_s / 60 for r in s.done if r.train_time_s is not None], 1))
        rows.append(row)
    return markdown_table(header, rows)


def _group(study: list[SettingSummary], spec: str) -> tuple[list[str], list[float]]:
    """The labels named in ``spec`` (``|``-separated) and the exact match of their finished runs."""
    labels = [x.strip() for x in spec.split("|") if x.strip()]
    by_label = {s.label: s for s in study}
    unknown = [x for x in labels if x not in by_label]
    if unknown:
        raise SeqVCRError(f"rank test: no setting {unknown[0]!r}; settings: {', '.join(by_label)}")
    return labels, [r.exact_match for x in labels for r in by_label[x].done if r.exact_match is not None]


def rank_test_text(study: list[SettingSummary], spec_a: str, spec_b: str) -> str:
    """The rank test of group A over group B, as one Markdown paragraph."""
    la, a = _group(study, spec_a)
    lb, b = _group(study, spec_b)
    try:
        u, p, splits = exact_rank_test(a, b)
    except ValueError as err:
        raise SeqVCRError(str(err)) from None
    return (f"Rank test, exact match of {' + '.join(la)} ({len(a)} runs) over {' + '.join(lb)} ({len(b)} "
            f"runs): U = {u:g} of {len(a) * len(b)} pairs; exact one-sided p = {p:.4g} ({splits} splits); "
            f"lowest of A {min(a):.3f}, highest of B {max(b):.3f}.")


def correlation_text(study: list[SettingSummary]) -> str:
    """Spearman's rho of exact match against intermediate entropy: over runs and over setting means."""
    runs = [(r.exact_match, r.entropy_intermediate) for s in study for r in s.done
            if r.exact_match is not None and r.entropy_intermediate is not None]
    means = [(s.exact_match.mean, s.entropy.mean) for s in study if s.exact_match.n and s.entropy.n]
    parts = []
    for what, pairs in (("runs", runs), ("settings (means over seeds)", means)):
        try:
            rho, p = spearman_test([a for a, _ in pairs], [b for _, b in pairs])
            parts.append(f"over {len(pairs)} {what}: rho = {rho:+.2f} (two-sided p = {p:.2g})")
        except ValueError as err:
            parts.append(f"over {len(pairs)} {what}: not defined ({str(err).removeprefix('spearman: ')})")
    return "Spearman rank correlation of exact match with entropy L1..L(N-1), " + "; ".join(parts) + "."


def _pair(s: SettingSummary) -> tuple[float, float]:
    """(lambda1, lambda2) of a setting of the lambda study, from its label ``lambda1=a, lambda2=b``."""
    text = s.label.replace(" ", "")
    parts = dict(item.split("=", 1) for item in text.split(",") if "=" in item)
    return float(parts["lambda1"]), float(parts["lambda2"])


def _is_lambda_study(study: list[SettingSummary]) -> bool:
    try:
        return bool(study) and all(l1 > 0 for l1, _ in map(_pair, study))
    except (KeyError, ValueError):
        return False


def _family_scale(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(ratio lambda2/lambda1, scale) of each pair: the scale is lambda1 over the middle lambda1 of the
    pairs that share its ratio (x0.5, x1, x2 for the seed's families)."""
    ratio = [round(l2 / l1, 12) for l1, l2 in pairs]
    out = []
    for (l1, _), r in zip(pairs, ratio):
        l1s = sorted(a for (a, _), q in zip(pairs, ratio) if q == r)
        out.append((r, round(l1 / l1s[len(l1s) // 2], 6)))
    return out


def lambda_grid(study: list[SettingSummary]) -> str:
    """Exact match (mean ± 95% CI) with one row per ratio lambda2/lambda1, one column per scale."""
    keys = _family_scale([_pair(s) for s in study])
    ratios = sorted({r for r, _ in keys})
    scales = sorted({c for _, c in keys})
    cell = {k: s for k, s in zip(keys, study)}

    def text(r: float, c: float) -> str:
        if (r, c) not in cell:
            return "-"
        l1, l2 = _pair(cell[(r, c)])
        return f"{_ci(cell[(r, c)].exact_match)} ({l1:g}, {l2:g})"

    rows = [[f"{r:g}"] + [text(r, c) for c in scales] for r in ratios]
    return markdown_table(["lambda2 / lambda1"] + [f"scale x{c:g}" for c in scales], rows)


def _errorbar(ax: Any, x: float, st: Stats, **kw: Any) -> None:
    if st.n == 0:
        return
    half = 0.0 if st.n < 2 or math.isnan(st.ci_high) else st.ci_high - st.mean
    ax.errorbar([x], [st.mean], yerr=[[half], [half]], capsize=3, **kw)


def lambda_plot(study: list[SettingSummary], path: Path) -> None:
    """Exact match and intermediate entropy against lambda2/lambda1 (log axis); marker = scale."""
    keys = _family_scale([_pair(s) for s in study])
    fig = new_figure((10.0, 4.0))
    axes = fig.subplots(1, 2)
    markers = {0.5: ("v", "tab:blue"), 1.0: ("o", "tab:orange"), 2.0: ("^", "tab:green")}
    seen: set[float] = set()
    for s, (r, scale) in zip(study, keys):
        marker, color = markers.get(round(scale, 6), ("s", "tab:gray"))
        jitter = 1.0 + 0.08 * (round(math.log2(scale)) if scale > 0 else 0)
        label = f"x{scale:g} of the family's middle pair" if scale not in seen else None
        seen.add(scale)
        for ax, st in zip(axes, (s.exact_match, s.entropy)):
            _errorbar(ax, r * jitter, st, fmt=marker, color=color, label=label, ms=6)
    for ax, ylabel in zip(axes, ("exact match (test), mean ± 95% CI", "entropy L1..L(N-1), mean ± 95% CI")):
        ax.set_xscale("log")
        ax.set_xlabel("lambda2 / lambda1")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Seq-VCR coefficients: ratio (x axis) and scale (marker)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def value_plot(study: list[SettingSummary], path: Path, xlabel: str) -> None:
    """Exact match and intermediate entropy against the (numeric) ablated value, log2 axis."""
    fig = new_figure((10.0, 4.0))
    axes = fig.subplots(1, 2)
    xs = [float(s.value) for s in study]
    for ax, which, ylabel in zip(axes, ("exact_match", "entropy"),
                                 ("exact match (test), mean ± 95% CI", "entropy L1..L(N-1), mean ± 95% CI")):
        for x, s in zip(xs, study):
            _errorbar(ax, x, getattr(s, which), fmt="o", color="tab:blue", ms=6)
        ax.plot(xs, [getattr(s, which).mean for s in study], color="tab:blue", alpha=0.4)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("study_dir", type=Path, help="a published study (or sweep) directory")
    p.add_argument("--lambda-plot", type=Path, default=None,
                   help="PNG: the metrics of the lambda pairs against lambda2/lambda1")
    p.add_argument("--value-plot", type=Path, default=None,
                   help="PNG: the metrics against the ablated value")
    p.add_argument("--runs", action="store_true", help="also one row per finished run")
    p.add_argument("--correlation", action="store_true",
                   help="Spearman correlation of exact match with intermediate entropy")
    p.add_argument("--terms", action="store_true",
                   help="the loss terms at the end of training and the training time, per setting")
    p.add_argument("--rank-test", nargs=2, metavar=("A", "B"), default=None,
                   help="exact permutation test of exact match, settings A over settings B "
                        "('|'-separated labels)")
    args = p.parse_args(argv)
    try:
        manifest, _, studies = collect(args.study_dir)
    except SeqVCRError as err:
        sys.exit(f"study_tables: {err}")
    for meta, study in zip(manifest["studies"], studies):
        rank = None
        if args.rank_test is not None:  # checked before anything is printed
            try:
                rank = rank_test_text(study, *args.rank_test)
            except SeqVCRError as err:
                sys.exit(f"study_tables: {err}")
        print(f"### {meta['name']}: {meta.get('part', '')}\n")
        print(study_table(study) + "\n")
        print("Accuracy per answer position (mean over seeds):\n")
        print(position_table(study) + "\n")
        if _is_lambda_study(study):
            print("Exact match by ratio and scale of the pair:\n")
            print(lambda_grid(study) + "\n")
        if args.correlation:
            print(correlation_text(study) + "\n")
        if args.terms:
            print("Loss terms at the end of training (last training record) and training time, "
                  "mean (range) over the finished runs:\n")
            print(terms_table(study) + "\n")
        if args.runs:
            print("Runs:\n")
            print(run_table(study) + "\n")
        if rank is not None:
            print(rank + "\n")
        if args.lambda_plot is not None:
            lambda_plot(study, args.lambda_plot)
        if args.value_plot is not None:
            value_plot(study, args.value_plot, meta["factors"][0] if meta.get("factors") else meta["name"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
