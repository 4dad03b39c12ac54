"""The ``seqvcr`` command: data, train, eval, entropy, report, demo, sweep, bench, export-hf.

Plain argparse (what every sub-command shares is in ``seqvcr.commands``). This module defines ``data``,
``train`` and ``eval`` and registers the commands of the other layers (``build_parser``); ``train`` takes
its ``section.key=value`` overrides anywhere on the line, as Hydra and lingua do (``parse_args``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from seqvcr import __version__, commands
from seqvcr.atomic import check_output_path
from seqvcr.commands import HelpFormatter, Parser
from seqvcr.errors import ConfigError, RunDirError

__all__ = ["HelpFormatter", "Parser", "build_parser", "is_override", "main", "parse_args"]


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = commands.add_command(sub, "data", _cmd_data,
                             "generate a task's train/valid/test files in the task's line format")
    from seqvcr.config import TaskConfig
    from seqvcr.tasks import TASKS, option_help, option_owners, option_type, task_options

    p.add_argument("task", help=" | ".join(TASKS))
    for key, owners in option_owners().items():  # each task's own options, defaults and help
        task = owners[0]
        default = task_options(task)[key]
        text = f"{', '.join(owners)}: {option_help(task, key)}"
        kind = option_type(task, key)
        if kind is bool:
            p.add_argument(f"--{key.replace('_', '-')}", action="store_true", default=None, help=text)
        else:
            shown = "" if default is None else f" (default: {default})"
            p.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None, help=text + shown)
    p.add_argument("--train", type=int, default=10000, help="number of training examples")
    p.add_argument("--valid", type=int, default=0, help="number of validation examples (0: none)")
    p.add_argument("--test", type=int, default=0, help="number of test examples (0: none)")
    p.add_argument("--seed", type=int, default=TaskConfig().data_seed,
                   help="seed of the training set (valid: seed + 1, test: seed + 2)")
    p.add_argument("--exclude", nargs="*", default=[], metavar="FILE",
                   help="files whose problems training must not contain")
    p.add_argument("--no-cot", action="store_true", help="write the direct-answer format")
    commands.add_out(p)
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def _cmd_data(args: argparse.Namespace) -> int:
    from seqvcr.datafiles import resolve_data_path
    from seqvcr.tasks import make_task, option_owners, read_examples, task_options, write_examples

    own = task_options(args.task)  # ConfigError for an unknown task
    for key in option_owners():
        if key not in own and getattr(args, key) is not None:
            raise ConfigError(f"--{key.replace('_', '-')} is not an option of task {args.task}; its options: "
                              + ", ".join(f"--{k.replace('_', '-')}" for k in own))
    task = make_task(args.task, **{k: getattr(args, k) for k in own if getattr(args, k) is not None})
    out = Path(args.out)
    wanted = {"test": args.test, "valid": args.valid, "train": args.train}
    for split, n in wanted.items():
        commands.check_at_least(f"--{split}", n, 0, what="a number of examples")
    if not any(wanted.values()):
        raise ConfigError("nothing to write: --train, --valid and --test are all 0")
    check_output_path(out, "--out", directory=True)
    if not args.force:
        for split, n in wanted.items():
            if n > 0 and (out / f"{split}.txt").exists():
                raise RunDirError(f"{out / f'{split}.txt'} already exists; use --force to overwrite it")
    excluded = {task.key(ex) for f in args.exclude for ex in read_examples(task, resolve_data_path(f))}
    summary: dict[str, Any] = {"task": task.describe(), "out": str(out)}
    generated: dict[str, list[Any]] = {}
    for split, n in wanted.items():  # everything first: a failure overwrites nothing
        if n <= 0:
            continue
        # Feng et al.: only the training set mixes in fewer operators (--under); test and validation
        # sets have exactly the requested number
        source = task if split == "train" else task.for_evaluation()
        seed = args.seed + {"train": 0, "valid": 1, "test": 2}[split]
        generated[split] = source.generate(n, seed=seed, exclude=frozenset(excluded))
        excluded |= {task.key(ex) for ex in generated[split]}
    out.mkdir(parents=True, exist_ok=True)
    for split, examples in generated.items():
        write_examples(task, out / f"{split}.txt", examples, cot=not args.no_cot)
        summary[split] = len(examples)
        print(f"wrote {len(examples)} examples to {out / f'{split}.txt'}", file=sys.stderr)
    return commands.print_json(summary)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = commands.add_command(sub, "train", _cmd_train,
                             "train one run from a YAML config (overrides as section.key=value)")
    p.add_argument("config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. optim.lr=1e-3 method.name=seqvcr_pause (also after the "
                   "options)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (YAML, every default filled in) and exit without training")
    commands.add_json(p)


def _cmd_train(args: argparse.Namespace) -> int:
    """Train one run from CONFIG with section.key=value overrides, which may come anywhere on the line
    (seqvcr train CONFIG --out DIR optim.lr=1e-3 works). An interrupted run resumes from its checkpoint
    with the same command; a finished one is only replaced with --force."""
    from seqvcr.config import load_config, resolve, to_yaml

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        resolved = resolve(cfg)
        sys.stdout.write(mark_unused(to_yaml(resolved), unused_keys(resolved)))
        return 0
    from seqvcr.training import train

    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    result = train(cfg, out, force=args.force, progress=not args.quiet, command=commands.command_line())
    if not result:  # not rank 0: the other ranks of a torchrun have nothing to say
        return 0
    valid = result["valid"]["exact_match"]
    obj = {"run_dir": str(out), "steps": result["steps"], "valid": valid}
    return commands.print_result(args, obj, _train_text(out, result["steps"], valid, cfg.task.test_file))


#: What a finished run directory holds, in the order the training summary lists it.
_RUN_FILES = (
    ("model.safetensors", "the final weights"),
    ("config.yaml", "the resolved config"),
    ("metrics.jsonl", "training and validation curves"),
    ("result.json", "the run's result (written last)"),
    ("snapshots", "weights at train.snapshot_steps"),
    ("tensorboard", "TensorBoard event files"),
    ("wandb", "the Weights & Biases run"),
)


def _train_text(out: Path, steps: int, valid: float | None, test_file: str | None) -> str:
    """What ``seqvcr train`` prints when it is done: where the results went and what to run next."""
    score = f", validation exact match {valid:.4f}" if isinstance(valid, (int, float)) else ""
    lines = [f"trained {out}: {steps} steps{score}"]
    present = [(name, what) for name, what in _RUN_FILES if (out / name).exists()]
    width = max((len(str(out / n)) for n, _ in present), default=0)
    lines += [f"  {str(out / n):<{width}}  {what}" for n, what in present]
    data = "" if test_file else " --data FILE"
    lines.append(f"next: seqvcr eval {out}{data}  (exact match and accuracy per answer position)")
    return "\n".join(lines)


def unused_keys(cfg: Any) -> dict[str, str]:
    """Keys of a resolved config that the run will not read, each with the reason (``section.*``: a whole
    section), for ``--print-config`` to mark; config.yaml keeps every key, so that it re-runs as it is."""
    from seqvcr.config import METHODS

    method = cfg.method.name
    _cot, pauses, seqvcr = METHODS[method]
    out: dict[str, str] = {}
    if not pauses:
        out["method.pauses"] = f"method {method} has no pause tokens"
    if not seqvcr:
        out["seqvcr.*"] = f"method {method} has no Seq-VCR term"
    options = getattr(cfg.task, "task_options", None)
    if callable(options):
        used = set(options())
        from seqvcr.tasks import option_owners

        for key in option_owners():
            if hasattr(cfg.task, key) and key not in used:
                out[f"task.{key}"] = f"not an option of task {cfg.task.name}"
    if "wandb" not in cfg.train.log_to:
        out["train.wandb_project"] = out["train.wandb_mode"] = "train.log_to has no wandb"
    if cfg.optim.max_steps is not None:
        out["optim.epochs"] = "optim.max_steps sets the length"
    return out


def mark_unused(text: str, unused: dict[str, str]) -> str:
    """The YAML ``text`` of a config with a ``# unused: reason`` comment on each key of ``unused`` (see
    :func:`unused_keys`); the text still loads as the same config."""
    lines, section = [], ""
    for line in text.splitlines():
        top = line[:1].isalpha() and line.endswith(":")
        if top:
            section = line[:-1]
        key = line.strip().split(":", 1)[0] if line.startswith("  ") and not line.startswith("  -") else ""
        why = unused.get(f"{section}.*") if top else None
        if key:
            why = unused.get(f"{section}.{key}") or (unused.get(f"{section}.*") and "see the section")
        lines.append(f"{line}  # unused: {why}" if why else line)
    return "\n".join(lines) + "\n"


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = commands.add_command(sub, "eval", _cmd_eval,
                             "exact match and accuracy per answer position of a trained run on a file")
    commands.add_run_dir(p)
    p.add_argument("--data", default=None,
                   help="a data file in the task's line format (or ref:mult/NxN/test.txt); default: the "
                   "run's task.test_file")
    p.add_argument("--predictions", default=None, help="also write one JSON object per example to this file")
    p.add_argument("--batch-size", type=int, default=256,
                   help="prompts decoded at once (changes the speed, never a score)")
    p.add_argument("--limit", type=int, default=0, help="only the first N examples (0: all)")
    commands.add_step(p, "score")
    commands.add_device(p)
    p.add_argument("--no-save", action="store_true", help="do not keep the result in the run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    commands.add_json(p)


def _cmd_eval(args: argparse.Namespace) -> int:
    """Greedy-decode every problem of --data with a trained run and score it: exact match (an answer
    counts only when <eos> closes it) and accuracy per answer position, plus examples/s. Without --data,
    the run's task.test_file. Prints a summary (--json: the summary as JSON) and keeps it, with one
    prediction per example, in RUN_DIR/eval/<data>-<hash>.json (RUN_DIR/snapshots/step_N/eval/ with
    --step), where seqvcr report finds it instead of decoding again."""
    from seqvcr.analysis.cli import data_or_test_file
    from seqvcr.evaluation import evaluate_file

    summary = evaluate_file(args.run_dir, data_or_test_file(args), predictions=args.predictions,
                            batch_size=args.batch_size, limit=args.limit, device=args.device, step=args.step,
                            progress=not args.quiet, save=not args.no_save)
    return commands.print_result(args, summary, eval_text(summary))


def eval_text(summary: dict[str, Any]) -> str:
    """The readable form of ``seqvcr eval``'s summary: what was scored on what, Hugging Face's
    ``***** eval metrics *****`` block, then where the result was kept."""
    acc = summary["position_accuracy"]
    rows = [
        ("exact_match", f"{summary['exact_match']:.4f}"),
        *((f"accuracy_position_{k}", f"{a:.4f}") for k, a in enumerate(acc, start=1)),
        ("examples_per_s", f"{summary['examples_per_s']:.1f}"),
    ]
    lines = [
        f"{summary['run_dir']} (step {summary['step']}, {summary['method']}, {summary['task']}) on "
        f"{summary['data']}, {summary['n']} examples",
        commands.metrics_block("eval metrics", rows),
    ]
    if acc:
        lines.append("answer positions in the data file's order")
    if summary.get("saved"):
        lines.append(f"saved: {summary['saved']} (--json prints it all)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="seqvcr", description="Seq-VCR: train and measure transformers on multi-step "
                    "arithmetic (Arefin et al. 2025).")
    parser.add_argument("--version", action="version", version=f"seqvcr {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data(sub)
    _add_train(sub)
    _add_eval(sub)
    for name in ("seqvcr.analysis.cli", "seqvcr.experiments.cli", "seqvcr.bench.cli", "seqvcr.hf_cli"):
        try:
            module = __import__(name, fromlist=["register"])
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(sub)
    return parser


def is_override(arg: str) -> bool:
    """Whether a command-line word is a ``section.key=value`` config override (not an option)."""
    return not arg.startswith("-") and "=" in arg and arg.split("=", 1)[0].strip() != ""


def parse_args(
    argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    """Parse a ``seqvcr`` command line. argparse leaves ``train``'s overrides after its first option over
    as unknown words: they are appended in the order given; any other unknown word is a usage error."""
    parser = parser or build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) == "train" and all(is_override(a) for a in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:  # with the usage of the sub-command on the line
        subs = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        subs.get(getattr(args, "command", None), parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """``seqvcr ...``: parse the line and run the command (exit status 2 and one line for a bad input)."""
    return commands.run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
