"""CLI verbs, one module each, registered with :func:`command`; :func:`register_all` imports them all.

What the verbs share lives here (the registry, JSON output) and in :mod:`benchmark.commands.arguments`
(argument types, the grid options); a verb's module never imports another verb's module.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

from benchmark.registry import Registry


@dataclass(frozen=True)
class Command:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: Registry[Command] = Registry("command")


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None] = lambda parser: None):
    """Register ``run(args) -> exit code`` as the verb ``name``."""

    def decorator(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS.add(name, Command(help, configure, run))
        return run

    return decorator


def register_all() -> None:
    """Import every module of this package: each verb registers itself when its module is imported."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def print_json(value: object) -> None:
    """Valid JSON: NaN and infinities (undefined metrics; the output's warnings say why) become null."""
    json.dump(_finite(value), sys.stdout, indent=2, default=str, allow_nan=False)
    sys.stdout.write("\n")


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
