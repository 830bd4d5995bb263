"""Task families: problems, prompts, verification and mode keys.

``get_task("two_primes")`` builds a family by name; ``TASKS`` is the registry.  See
``base.Task`` for the contract every family implements.
"""

from __future__ import annotations

import inspect

from workbench.errors import ConfigError, UnknownNameError
from workbench.tasks.base import Problem, Task, Verdict, write_splits
from workbench.tasks.countdown import Countdown
from workbench.tasks.custom import Custom
from workbench.tasks.gsm8k import GSM8K
from workbench.tasks.math_problems import MathProblems
from workbench.tasks.two_primes import TwoPrimes

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (TwoPrimes, Countdown, GSM8K, MathProblems, Custom)}


def list_tasks() -> list[str]:
    return list(TASKS)


def task_params(name: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of a family (what ``get_task`` accepts)."""
    if name not in TASKS:
        raise UnknownNameError("task", name, list(TASKS))
    sig = inspect.signature(TASKS[name].__init__)
    return {k: p for k, p in sig.parameters.items() if k != "self" and p.kind is p.POSITIONAL_OR_KEYWORD}


def get_task(name: str, **params) -> Task:
    """Build the family ``name``; unknown or missing parameters are a ConfigError."""
    valid = task_params(name)
    shown = ", ".join(valid) or "none"
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"task {name!r} has no parameter(s) {', '.join(unknown)}; valid parameters: {shown}")
    missing = [k for k, p in valid.items() if p.default is p.empty and k not in params]
    if missing:
        raise ConfigError(f"task {name!r} needs parameter(s) {', '.join(missing)}; valid parameters: {shown}")
    return TASKS[name](**params)


__all__ = ["TASKS", "Problem", "Task", "Verdict", "get_task", "list_tasks", "task_params", "write_splits"]
