"""``python -m benchmark <verb>``: one subcommand per step of the data flow.

Each verb lives in its own module under ``benchmark/commands/`` and registers itself with
:func:`command`; every module there is imported when the parser is built.
"""

from __future__ import annotations

import argparse
import json
import math
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


def comma_list(text: str) -> tuple[str, ...]:
    """Argument type of ``--tasks a,b``-style options: the non-empty items, stripped of spaces (only: a
    newline or another control character stays, for the name checks to refuse)."""
    return tuple(item.strip(" ") for item in text.split(",") if item.strip(" "))


def comma_integers(text: str) -> tuple[int, ...]:
    """Argument type of ``--fractions 1,10``-style options."""
    try:
        return tuple(int(item) for item in comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def task_choices(text: str) -> dict[str | None, str]:
    """``paper`` (every task that declares it) or ``detection=paper,classification=cached``."""
    choices: dict[str | None, str] = {}
    for item in comma_list(text):
        task, _, value = item.rpartition("=")
        if not value or (task == "" and "=" in item):
            raise argparse.ArgumentTypeError(f"expected VALUE or TASK=VALUE items, got {item!r}")
        choices[task or None] = value
    return choices


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


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser of every verb; with ``verb``, only that verb's options are configured (some
    configurations import heavy modules to list choices, which another verb never needs)."""
    import benchmark.commands  # noqa: F401 - registers every verb

    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="Chest X-ray representation benchmark (MGCA protocol): prepare data, evaluate backbones, compare.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, cmd in COMMANDS.items():
        sub = verbs.add_parser(name, help=cmd.help, description=cmd.help)
        if verb is None or name == verb:
            cmd.configure(sub)
        sub.set_defaults(run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else "").parse_args(argv)
    args.argv = argv  # the command line as given (jobs of `run --executor` repeat it)
    return args.run(args)
