"""The five benchmarks as one suite: run the chosen ones, judge their targets, render bench.md.

Every benchmark is a module with ``TITLE``, ``run(settings) -> result``, ``markdown(result)`` (its
section of bench.md) and, if it has targets, ``targets(result, settings)`` (rows of the targets table);
a new benchmark is a module of this package added to :data:`MODULES`.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import torch

from seqvcr.bench import decoding, entropy_speed, loss, mfu, step
from seqvcr.bench.harness import CLOCKS, Settings
from seqvcr.errors import ConfigError
from seqvcr.reporting.tables import markdown_table
from seqvcr.runs import describe_machine, machine_info

__all__ = ["BENCHMARKS", "MODULES", "evaluate_targets", "parse_only", "render_markdown", "run_benchmarks"]

#: The benchmarks by id, in the order they run and are reported.
MODULES: dict[str, ModuleType] = {"a": loss, "b": step, "c": mfu, "d": decoding, "e": entropy_speed}
BENCHMARKS: dict[str, str] = {key: m.TITLE for key, m in MODULES.items()}


def parse_only(text: str) -> tuple[str, ...]:
    """'a,b,d' -> ('a', 'b', 'd') in canonical order; ConfigError for unknown ids."""
    wanted = [w.strip().lower() for w in text.split(",") if w.strip()]
    unknown = sorted(set(wanted) - set(BENCHMARKS))
    if unknown or not wanted:
        raise ConfigError(f"--only: unknown benchmark(s) {', '.join(unknown) or '(none)'}; allowed: "
                          f"{', '.join(BENCHMARKS)}")
    return tuple(k for k in BENCHMARKS if k in wanted)


def run_benchmarks(s: Settings, command: str) -> dict[str, Any]:
    """Run the selected benchmarks and return the report (the content of bench.json)."""
    if s.clock not in CLOCKS:
        raise ConfigError(f"--clock: {s.clock!r} is not one of {', '.join(CLOCKS)}")
    if s.clock == "cpu" and s.cuda:
        raise ConfigError("--clock cpu: CPU time does not measure GPU work; use --clock wall on a GPU")

    started = datetime.now(UTC).isoformat(timespec="seconds")
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    for key in s.only:
        s.log(f"({key}) {BENCHMARKS[key]}")
        tb = time.perf_counter()
        results[key] = MODULES[key].run(s)
        results[key]["bench_seconds"] = time.perf_counter() - tb  # wall time, for the record
        s.done()
    info = machine_info(s.device)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report: dict[str, Any] = {
        "schema": "seqvcr-bench/1",
        "command": command,
        "started": started,
        "seconds": time.perf_counter() - t0,
        "quick": s.quick,
        "full": s.full,
        "device": str(s.device),
        "gpu": info.get("gpu"),
        "machine": info,
        "machine_description": describe_machine(info),
        "load_average": [None if v is None else round(v, 2) for v in (load0, load1)],
        "settings": {"warmup": s.warmup, "repeats": s.repeats, "compile": s.compile, "only": list(s.only),
                     "clock": s.clock, "threads": torch.get_num_threads()},
        "results": results,
    }
    report["targets"] = evaluate_targets(results, s)
    return report


def evaluate_targets(results: dict[str, Any], s: Settings) -> list[dict[str, Any]]:
    """Each target with the measured ratio and pass / FAIL (or why it was not measured)."""
    out: list[dict[str, Any]] = []
    for key, module in MODULES.items():
        res = results.get(key)
        if res is not None and "error" not in res and hasattr(module, "targets"):
            out += module.targets(res, s)
    return out


_UNIT_FORMAT = {"x": "{:.1f}x", "ratio": "{:+.1%}", "fraction": "{:.1%}"}  # a measured number, by its unit


def _fmt_measured(t: dict[str, Any]) -> str:
    return "-" if t["measured"] is None else _UNIT_FORMAT.get(t["unit"], "{:.4g}").format(t["measured"])


_CLOCK_TEXT = {"wall": "wall-clock time", "cpu": "CPU time of the benchmark process (time.process_time)"}


def render_markdown(report: dict[str, Any]) -> str:
    """bench.md: machine, command, the targets table, then one section per benchmark."""
    r = report["results"]
    targets = [[f"{t['id']}: {t['target']}", t["setting"] or "-", _fmt_measured(t), t["required"],
                t["status"]] for t in report["targets"]]
    lines = [
        "# seqvcr bench",
        "",
        f"- Machine: {report['machine_description']}",
        f"- Device: {report['device']}"
        + ("" if report["gpu"] else " (no GPU available for this measurement)"),
        f"- Load average (1 min) at start / end: {report['load_average'][0]} / {report['load_average'][1]}",
        f"- Command: `{report['command']}`",
        f"- Timing: {_CLOCK_TEXT[report['settings']['clock']]}, {report['settings']['threads']} torch "
        "thread(s); medians of repeated runs after warm-up, compared implementations alternated",
        f"- Date: {report['started']}, {report['seconds']:.0f} s in all"
        + (" -- QUICK MODE: reduced sizes, not the targets' settings" if report["quick"] else ""),
        "",
        "## Targets (ratios measured in this run)",
        "",
        markdown_table(["target", "setting", "measured", "required", "result"], targets),
    ]
    for key, title in BENCHMARKS.items():
        if key not in r:
            continue
        res = r[key]
        lines += ["", f"## ({key}) {title}", ""]
        if "error" in res:
            lines.append(f"error: {res['error']}")
        elif "skipped" in res:
            lines.append(f"skipped: {res['skipped']}")
        else:
            lines += MODULES[key].markdown(res)
    return "\n".join(lines) + "\n"
