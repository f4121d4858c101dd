"""The tasks the runner can evaluate a backbone on, looked up by name.

A task lives in the package ``tasks/<name>/`` and registers a :class:`TaskInfo` there when it
is imported; :func:`get_task` imports that package on demand, so looking up one task never
imports another task's heavy dependencies (mmdet, mmseg).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import tasks
from benchmark.registry import Registry


@dataclass(frozen=True)
class TaskInfo:
    name: str
    title: str
    datasets: tuple[str, ...]  # prepared datasets it supports
    partition: str  # split partition it reads (benchmark/data/prepared.py)
    version: int  # bumped on any change that can move a number (changelog beside the task)
    modes: tuple[str, ...]  # accepted values of the adapter's ``mode``; the first is the default
    # run(backbone, dataset, fraction, draw, seed, mode, work_dir, cache_dir) -> result dict
    run: Callable[..., dict]


TASKS: Registry[TaskInfo] = Registry("task")


def task_packages() -> list[str]:
    return sorted(module.name for module in pkgutil.iter_modules(tasks.__path__) if module.ispkg)


def get_task(name: str) -> TaskInfo:
    """The registered task ``name`` (its package is imported first when it exists)."""
    if name in task_packages():
        importlib.import_module(f"tasks.{name}")
    return TASKS.get(name)


def all_tasks() -> list[TaskInfo]:
    """Every task, importing every task package."""
    for package in task_packages():
        importlib.import_module(f"tasks.{package}")
    return [info for _, info in TASKS.items()]
