"""Publish a finished sweep as a study directory that can be committed and re-scored.

    python scripts/publish_runs.py SWEEP_DIR results/STUDY [--study NAME] [--name LABEL=DIR_NAME ...]
                                   [--no-weights] [--force]

For every finished run of the sweep, ``results/STUDY/<name>_s<seed>/`` receives the files that describe
and reproduce it (config, spec, result, metrics, evaluation, entropy and, unless ``--no-weights``, the
final weights; never a checkpoint), and the sweep's manifest with each run's ``dir`` pointing at its new
directory, so that ``seqvcr report results/STUDY`` aggregates the study as it did the sweep. With
weights every run is re-scored and must agree with the sweep. What is copied and checked:
``seqvcr.experiments.publish``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seqvcr.errors import SeqVCRError
from seqvcr.experiments.publish import publish
from seqvcr.experiments.sweep import MANIFEST


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("sweep", type=Path, help="a sweep directory (with manifest.json)")
    p.add_argument("out", type=Path, help="the study directory to write, e.g. results/cpu_table1")
    p.add_argument("--name", action="append", default=[], metavar="LABEL=NAME",
                   help="directory name for a setting label (default: the label made file-safe)")
    p.add_argument("--no-weights", action="store_true", help="summaries only: no model.safetensors")
    p.add_argument("--force", action="store_true", help="replace an existing study directory")
    p.add_argument("--study", default=None, help="publish only this study of the sweep (default: all)")
    args = p.parse_args(argv)
    if not (args.sweep / MANIFEST).is_file():
        sys.exit(f"publish: {args.sweep}: not a sweep directory (no {MANIFEST})")
    names = {}
    for item in args.name:
        label, sep, name = item.rpartition("=")  # labels may hold "=", names do not
        if not sep or not name:
            sys.exit(f"publish: --name {item!r}: expected LABEL=NAME")
        names[label] = name
    try:
        runs = publish(args.sweep, args.out, names, not args.no_weights, args.force, study=args.study)
    except SeqVCRError as err:
        sys.exit(f"publish: {err}")
    print(json.dumps({"out": str(args.out), "runs": len(runs)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
