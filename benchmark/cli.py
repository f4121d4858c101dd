"""``python -m benchmark <verb>``: one subcommand per step of the data flow.

Each verb lives in its own module under ``benchmark/commands/`` and registers itself with
:func:`command`; every module there is imported when the parser is built.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.offline import stay_offline
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


def int_between(low: int, high: int) -> Callable[[str], int]:
    """Argument type of a whole number in ``[low, high]``, checked at parse time (exit 2, one line):
    a negative seed or a size beyond any machine never reaches the code that would use it."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}")
        return value

    return parse


def comma_integers_between(low: int, high: int) -> Callable[[str], tuple[int, ...]]:
    """Argument type of ``--seeds 0,1,2``-style options whose items lie in ``[low, high]``."""
    item = int_between(low, high)

    def parse(text: str) -> tuple[int, ...]:
        try:
            return tuple(item(value) for value in comma_list(text))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated whole numbers from {low} to {high}, got {text!r}") from None

    return parse


def positive_number(text: str) -> float:
    """Argument type of a finite number > 0 (seconds, images per second): not 0, negative, nan or inf."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def importable_modules(text: str) -> tuple[str, ...]:
    """Argument type of ``--plugins a,b``: modules that exist on the Python path (a typo is a usage error,
    not a traceback after the board is opened)."""
    import importlib.util

    names = comma_list(text)
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a missing parent package, an empty or relative name
            found = False
        if not found:
            raise argparse.ArgumentTypeError(f"no module named {name!r} on the Python path (sys.path, PYTHONPATH)")
    return names


def device_name(text: str) -> str:
    """Argument type of ``--device``: auto, cpu, cuda or cuda:N (whether that GPU exists is checked
    once before a grid runs, by the runner, which knows the machine it runs on)."""
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]{1,4})?", text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def output_file(text: str) -> Path:
    """Argument type of a file to write: not an existing folder, and no file where a parent folder must be."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; name the file to write, e.g. {path / 'encoder.ckpt'}")
    blocking = next((parent for parent in path.parents if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {blocking} is a file, not a folder")
    return path


SEED_RANGE = (0, 2**32 - 1)  # what every generator seeded here (numpy's, torch's) accepts


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
    stay_offline()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else "").parse_args(argv)
    return args.run(args)
