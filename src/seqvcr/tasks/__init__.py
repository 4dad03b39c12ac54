"""The paper's tasks: multi-digit multiplication (Deng et al.), arithmetic expressions and LIS (Feng et al.).

``make_task(name, **options)`` builds a task from its config name and options; ``task.options()`` gives
the options back, so ``make_task(t.name, **t.options()) == t``.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from seqvcr.errors import ConfigError
from seqvcr.tasks.arithmetic import ArithmeticTask
from seqvcr.tasks.base import Example, Task, read_examples, write_examples
from seqvcr.tasks.lis import LISTask, lis_dp
from seqvcr.tasks.multiplication import MultiplicationTask

#: Every task by its config name (``task.name``); a new task is registered here.
_CLASSES: dict[str, type[Task]] = {
    "mult": MultiplicationTask,
    "arith": ArithmeticTask,
    "lis": LISTask,
}
TASKS: tuple[str, ...] = tuple(_CLASSES)


def task_options(name: str) -> dict[str, Any]:
    """The options of task ``name`` with their defaults (ConfigError for an unknown name)."""
    cls = _task_class(name)
    params = inspect.signature(cls.__init__).parameters
    return {k: p.default for k, p in params.items() if k != "self"}


def option_owners() -> dict[str, tuple[str, ...]]:
    """Every task option, in the order of :data:`TASKS` and of each constructor, with the tasks that
    take it."""
    owners: dict[str, tuple[str, ...]] = {}
    for name in TASKS:
        for key in task_options(name):
            owners[key] = (*owners.get(key, ()), name)
    return owners


def config_options() -> dict[str, tuple[Any, Any]]:
    """The config's task keys (``task.<option>``, ``config.TaskConfig``'s fields): each option but those of
    ``DATA_ONLY_OPTIONS``, with its type hint and default (tasks that share an option share them)."""
    return {key: (typing.get_type_hints(_CLASSES[owners[0]].__init__)[key], task_options(owners[0])[key])
            for key, owners in option_owners().items() if key not in _CLASSES[owners[0]].DATA_ONLY_OPTIONS}


def option_help(name: str, key: str) -> str:
    """What option ``key`` of task ``name`` means (the task's ``OPTION_HELP``)."""
    return _task_class(name).OPTION_HELP.get(key, key)


def option_type(name: str, key: str) -> type:
    """The type of option ``key`` of task ``name`` (``int`` for ``int | None``)."""
    hint = typing.get_type_hints(_task_class(name).__init__)[key]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def make_task(name: str, **options: Any) -> Task:
    """Build the task ``name`` (one of :data:`TASKS`) with the given constructor options; an unknown
    name or option, or a value out of range, is a ConfigError that lists what is allowed."""
    cls = _task_class(name)
    allowed = task_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for task {name!r}; allowed: {', '.join(allowed)}"
        )
    return cls(**options)


def _task_class(name: str) -> type[Task]:
    cls = _CLASSES.get(name)
    if cls is None:
        raise ConfigError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    return cls


__all__ = ["TASKS", "ArithmeticTask", "Example", "LISTask", "MultiplicationTask", "Task", "config_options",
           "lis_dp", "make_task", "option_help", "option_owners", "option_type", "read_examples",
           "task_options", "write_examples"]
