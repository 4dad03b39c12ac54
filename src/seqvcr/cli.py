"""The ``seqvcr`` command: data, train, eval, entropy, report, demo, sweep, bench, export-hf,
convert-checkpoint.

Plain argparse. Every user error is a ``SeqVCRError`` and every filesystem error (a path below a file, a
full disk, no permission) an ``OSError``; both are printed as one line naming the file (exit status 2),
never as a traceback. ``seqvcr train`` takes its ``section.key=value`` overrides anywhere on the line
(before or after the options, as Hydra and lingua do): ``parse_args`` collects them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from seqvcr import __version__
from seqvcr.atomic import check_output_path
from seqvcr.errors import ConfigError, RunDirError, SeqVCRError


def _command_line() -> str:
    return "seqvcr " + " ".join(shlex.quote(a) for a in sys.argv[1:])


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's ``ArgumentDefaultsHelpFormatter`` (every option's help ends with its default), minus
    the noise: nothing is added for a default of None or False (an unset option or a flag) or to a help
    text that already says what its default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or action.default == [] or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows defaults (``HelpFormatter``); subcommand parsers inherit it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


# --------------------------------------------------------------------------- data
def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate a task's train/valid/test files in the task's line format")
    p.add_argument("task", help="mult | arith | lis")
    p.add_argument("--digits", type=int, default=4, help="mult: digits of the first operand")
    p.add_argument("--digits-b", type=int, default=None, help="mult: digits of the second operand")
    p.add_argument("--operators", type=int, default=4, help="arith: number of operators")
    p.add_argument("--modulus", type=int, default=11, help="arith: prime modulus")
    p.add_argument("--under", action="store_true",
                   help="arith: the training set mixes in fewer operators, 1:2:...:L (Feng et al.); "
                   "valid and test sets keep exactly --operators")
    p.add_argument("--length", type=int, default=50, help="lis: sequence length")
    p.add_argument("--train", type=int, default=10000, help="number of training examples")
    p.add_argument("--valid", type=int, default=0, help="number of validation examples (0: none)")
    p.add_argument("--test", type=int, default=0, help="number of test examples (0: none)")
    p.add_argument("--seed", type=int, default=1234,
                   help="seed of the training set (valid: seed + 1, test: seed + 2)")
    p.add_argument("--exclude", nargs="*", default=[], metavar="FILE",
                   help="files whose problems training must not contain")
    p.add_argument("--no-cot", action="store_true", help="write the direct-answer format")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=_cmd_data)


def _cmd_data(args: argparse.Namespace) -> int:
    from seqvcr.datafiles import resolve_data_path
    from seqvcr.tasks import make_task, read_examples, write_examples

    options: dict[str, Any]
    if args.task == "mult":
        options = {"digits": args.digits, "digits_b": args.digits_b}
    elif args.task == "arith":
        options = {"operators": args.operators, "modulus": args.modulus, "under": args.under}
    else:
        options = {"length": args.length}
    task = make_task(args.task, **options)
    out = Path(args.out)
    wanted = {"test": args.test, "valid": args.valid, "train": args.train}
    for split, n in wanted.items():
        if n < 0:
            raise ConfigError(f"--{split}: expected a number of examples >= 0, got {n}")
    if not any(wanted.values()):
        raise ConfigError("nothing to write: --train, --valid and --test are all 0")
    check_output_path(out, "--out", directory=True)
    if not args.force:
        for split, n in wanted.items():
            if n > 0 and (out / f"{split}.txt").exists():
                raise RunDirError(f"{out / f'{split}.txt'} already exists; use --force to overwrite it")
    excluded: set[str] = set()
    for f in args.exclude:
        excluded |= {task.key(ex) for ex in read_examples(task, resolve_data_path(f))}
    seeds = {"test": args.seed + 2, "valid": args.seed + 1, "train": args.seed}
    summary: dict[str, Any] = {"task": task.describe(), "out": str(out)}
    generated: dict[str, list[Any]] = {}
    for split in ("test", "valid", "train"):  # everything first: a failure overwrites nothing
        n = wanted[split]
        if n <= 0:
            continue
        # Feng et al.: only the training set mixes in fewer operators (--under); test and validation
        # sets have exactly the requested number
        source = task if split == "train" else task.for_evaluation()
        generated[split] = source.generate(n, seed=seeds[split], exclude=frozenset(excluded))
        excluded |= {task.key(ex) for ex in generated[split]}
    out.mkdir(parents=True, exist_ok=True)
    for split, examples in generated.items():
        write_examples(task, out / f"{split}.txt", examples, cot=not args.no_cot)
        summary[split] = len(examples)
        print(f"wrote {len(examples)} examples to {out / f'{split}.txt'}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


# --------------------------------------------------------------------------- train
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one run from a YAML config (overrides as section.key=value)",
        description="Train one run from CONFIG with section.key=value overrides, which may come anywhere "
        "on the line (seqvcr train CONFIG --out DIR optim.lr=1e-3 works). An interrupted run resumes "
        "from its checkpoint with the same command; a finished one is only replaced with --force.",
    )
    p.add_argument("config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. optim.lr=1e-3 method.name=seqvcr_pause (also after the "
                   "options)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (YAML, every default filled in) and exit without training")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from seqvcr.config import load_config, resolve, to_yaml

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(to_yaml(resolve(cfg)))
        return 0
    from seqvcr.training import train

    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    result = train(cfg, out, force=args.force, progress=not args.quiet, command=_command_line())
    if result:
        print(
            json.dumps(
                {"run_dir": str(out), "steps": result["steps"], "valid": result["valid"]["exact_match"]}
            )
        )
    return 0


# --------------------------------------------------------------------------- eval
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="exact match and accuracy per answer position of a trained run on a file",
        description="Greedy-decode every problem of --data with a trained run and score it: exact match "
        "(an answer counts only when <eos> closes it) and accuracy per answer position, plus examples/s. "
        "Prints the summary as JSON and keeps it, with one prediction per example, in "
        "RUN_DIR/eval/<data>-<hash>.json (RUN_DIR/snapshots/step_N/eval/ with --step), where seqvcr "
        "report finds it instead of decoding again.",
    )
    p.add_argument("run_dir",
                   help="a run directory (config.yaml + model.safetensors or checkpoint.safetensors)")
    p.add_argument("--data", required=True,
                   help="a data file in the task's line format (or ref:mult/NxN/test.txt)")
    p.add_argument("--predictions", default=None, help="also write one JSON object per example to this file")
    p.add_argument("--batch-size", type=int, default=256,
                   help="prompts decoded at once (changes the speed, never a score)")
    p.add_argument("--limit", type=int, default=0, help="only the first N examples (0: all)")
    p.add_argument("--step", type=int, default=None,
                   help="score the snapshot of this training step (train.snapshot_steps) instead of the "
                   "final weights")
    p.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda | cuda:N")
    p.add_argument("--no-save", action="store_true", help="do not keep the result in the run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from seqvcr.evaluation import evaluate_file

    summary = evaluate_file(
        args.run_dir,
        args.data,
        predictions=args.predictions,
        batch_size=args.batch_size,
        limit=args.limit,
        device=args.device,
        step=args.step,
        progress=not args.quiet,
        save=not args.no_save,
    )
    print(json.dumps(summary))
    return 0


# --------------------------------------------------------------------------- convert-checkpoint
def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-checkpoint",
        help="convert run directories from the earlier checkpoint.pt (pickle) to the safetensors files",
        description="Read RUN_DIR/checkpoint.pt, a checkpoint of seqvcr's earlier format, with "
        "torch.load(weights_only=True) (which refuses anything but tensors and plain values, so nothing in "
        "the file is run) and write the same weights, optimiser and RNG state as checkpoint.safetensors "
        "(resumable) and, for a finished run, model.safetensors; the new files are read back and compared "
        "with the old one before checkpoint.pt is removed. Other files are kept. A sweep directory "
        "converts all its runs. Directories already converted are left alone.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories, or sweep directories")
    p.add_argument("--keep", action="store_true", help="keep checkpoint.pt after converting it")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args: argparse.Namespace) -> int:
    from seqvcr.checkpoints import LEGACY_CHECKPOINT_FILE, convert_legacy

    targets: list[Path] = []
    for d in map(Path, args.run_dirs):
        if (d / "manifest.json").is_file() and (d / "runs").is_dir():  # a sweep: every run in it
            targets += sorted(r for r in (d / "runs").iterdir() if (r / LEGACY_CHECKPOINT_FILE).is_file())
        else:
            targets.append(d)
    failed = 0
    for rd in targets:
        try:
            print(json.dumps(convert_legacy(rd, keep=args.keep)), flush=True)
        except SeqVCRError as err:
            failed += 1
            print(f"seqvcr {args.command}: error: {err}", file=sys.stderr)
    return 2 if failed else 0


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="seqvcr",
        description="Seq-VCR: train and measure transformers on multi-step arithmetic (Arefin et al. 2025).",
    )
    parser.add_argument("--version", action="version", version=f"seqvcr {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_convert(sub)
    for name in ("seqvcr.analysis.cli", "seqvcr.experiments.cli", "seqvcr.bench", "seqvcr.hf_cli"):
        try:
            module = __import__(name, fromlist=["register"])
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(sub)
    return parser


def _os_error(err: OSError) -> str:
    """``path: reason`` for an OSError (both paths of a failed rename)."""
    reason = err.strerror or str(err) or type(err).__name__
    if err.filename is not None and err.filename2 is not None:
        return f"{err.filename} -> {err.filename2}: {reason}"
    if err.filename is not None:
        return f"{err.filename}: {reason}"
    return reason


def is_override(arg: str) -> bool:
    """Whether a command-line word is a ``section.key=value`` config override (not an option)."""
    return not arg.startswith("-") and "=" in arg and arg.split("=", 1)[0].strip() != ""


def parse_args(
    argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    """Parse a ``seqvcr`` command line; ``train``'s overrides may come anywhere on it.

    argparse takes the positional overrides of ``train`` only before its first option; the ones after
    an option are left over as unknown words, and are appended here in the order given (the last one
    of a key wins, as before). Any other unknown word is the usual usage error (exit status 2).
    """
    parser = parser or build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) == "train" and all(is_override(a) for a in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SeqVCRError as err:
        print(f"seqvcr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `seqvcr sweep ... | head`
        sys.stderr.close()
        return 0
    except OSError as err:  # the filesystem said no: a path below a file, a full disk, no permission
        print(f"seqvcr {args.command}: error: {_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seqvcr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
