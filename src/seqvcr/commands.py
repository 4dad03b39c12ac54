"""What every ``seqvcr`` sub-command module shares: the parser, one way to add a command, the arguments
several commands take, the range check of a count, the JSON result line and the one-line error.

Each module that defines commands has a ``register(subparsers)`` calling :func:`add_command` once per
command. A handler takes the parsed arguments and returns the exit status; its docstring is also its
``--help`` description. A bad input raises a ``SeqVCRError`` (a filesystem refusal an ``OSError``), which
:func:`run` prints as one line naming the file, key or flag (exit status 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shlex
import sys
from collections.abc import Callable
from typing import Any

from seqvcr.errors import ConfigError, SeqVCRError

__all__ = ["RUN_DIR_HELP", "Handler", "HelpFormatter", "Parser", "add_command", "add_device", "add_json",
           "add_out", "add_run_dir", "add_step", "check_at_least", "command_line", "error_line",
           "metrics_block", "print_json", "print_result", "run", "text_table"]

Handler = Callable[[argparse.Namespace], int]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's ``ArgumentDefaultsHelpFormatter``, except for a default of None, False or [] or a help
    text that already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or action.default == [] or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows defaults (``HelpFormatter``); subcommand parsers inherit it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        # no prefixes: `--dat` for `--data` would silently mean something, and a later flag that
        # shares the prefix would change what an old command line does
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def add_command(
    sub: argparse._SubParsersAction, name: str, handler: Handler, help: str
) -> argparse.ArgumentParser:
    """Add the sub-command ``name`` run by ``handler``: ``help`` is its line in ``seqvcr --help``, the
    handler's docstring its description in ``seqvcr NAME --help``. Returns the command's parser."""
    p = sub.add_parser(name, help=help, description=inspect.getdoc(handler))
    p.set_defaults(func=handler)
    return p


RUN_DIR_HELP = "a run directory (config.yaml + model.safetensors or checkpoint.safetensors)"
DEVICE_HELP = "auto (CUDA if available) | cpu | cuda | cuda:N"


def add_run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help=RUN_DIR_HELP)


def add_step(p: argparse.ArgumentParser, verb: str) -> None:
    """``--step N``; ``verb`` says what the command does with the snapshot (score, measure)."""
    p.add_argument("--step", type=int, default=None,
                   help=f"{verb} the snapshot of this training step (train.snapshot_steps) instead of the "
                   "final weights")


def add_out(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--out DIR``: where the command writes (required when there is no ``default``)."""
    p.add_argument("--out", required=default is None, default=default, help="output directory")


def add_device(p: argparse.ArgumentParser, default: str = "auto", help: str = DEVICE_HELP) -> None:
    p.add_argument("--device", default=default, help=help)


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object on stdout (for scripts) instead of the summary")


def check_at_least(flag: str, value: int | None, low: int, hint: str = "", what: str = "an integer") -> None:
    """A count below its range is a ConfigError naming the flag, e.g. ``--n: expected an integer >= 1,
    got 0`` (``hint`` adds what the edge means: `` (0: every example)``); None (unset) passes."""
    if value is not None and value < low:
        raise ConfigError(f"{flag}: expected {what} >= {low}{hint}, got {value}")


def command_line() -> str:
    """The command being run, as a shell line (recorded in result.json and reports)."""
    return "seqvcr " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def print_json(obj: Any) -> int:
    """Print a command's result as one JSON line on stdout; returns 0, the exit status of success."""
    print(json.dumps(obj))
    return 0


def print_result(args: argparse.Namespace, obj: Any, text: str) -> int:
    """Print the readable ``text``, or with ``--json`` ``obj`` as one JSON line. Returns 0."""
    if getattr(args, "json", False):
        return print_json(obj)
    print(text.rstrip("\n"))
    return 0


def metrics_block(title: str, rows: list[tuple[str, str]]) -> str:
    """Rows of ``name = value`` under ``***** TITLE *****``, aligned as Hugging Face Trainer's
    ``log_metrics`` does."""
    kw = max((len(k) for k, _ in rows), default=0)
    vw = max((len(v) for _, v in rows), default=0)
    return "\n".join([f"***** {title} *****", *(f"  {k:<{kw}} = {v:>{vw}}" for k, v in rows)])


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned, two spaces apart."""
    cols = [header, *rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join(line(r).rstrip() for r in cols)


def error_line(command: str, err: SeqVCRError | OSError) -> str:
    """``seqvcr COMMAND: error: ...``, the one line a bad input gets (an OSError names its path, or both
    paths of a failed rename)."""
    what = str(err)
    if isinstance(err, OSError):
        what = err.strerror or str(err) or type(err).__name__
        if err.filename is not None:
            path = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else f"{err.filename}"
            what = f"{path}: {what}"
    return f"seqvcr {command}: error: {what}"


def run(args: argparse.Namespace) -> int:
    """Run the parsed command: its exit status, 2 with one line on stderr for a bad input, 130 when
    interrupted (Ctrl-C), 0 when stdout is closed early (``seqvcr sweep ... | head``)."""
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except (SeqVCRError, OSError) as err:  # OSError: a path below a file, a full disk, no permission
        print(error_line(args.command, err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seqvcr {args.command}: interrupted", file=sys.stderr)
        return 130
