"""``--smoke``, the form of every benchmark that the test suite runs (``tests/test_benchmarks.py``).

A benchmark is only run by hand (``make perf``), so an API change can break it unnoticed. Its smoke
form runs the same code end to end with tiny arguments in seconds; its bars are printed but not
enforced, since timings at that size (and on a shared test machine) say nothing.
"""

from __future__ import annotations

import argparse
import sys


def add_smoke_option(parser: argparse.ArgumentParser, **tiny: object) -> None:
    """``--smoke`` sets the arguments named in ``tiny`` (by ``dest``) to its values."""
    listed = ", ".join(f"{dest}={value}" for dest, value in tiny.items())
    parser.add_argument("--smoke", action="store_const", const=tiny, default=None,
                        help=f"the test suite's run: {listed}; bars reported, not enforced (seconds)")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed arguments, with the smoke values in place when ``--smoke`` is given (``args.smoke`` a bool)."""
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(args.smoke)
    args.smoke = args.smoke is not None
    return args


def exit_status(missed: list[str], smoke: bool) -> int:
    """1 when a bar is missed (each printed), except in a smoke run."""
    for line in missed:
        print(f"BELOW THE BAR: {line}", file=sys.stderr)
    if missed and smoke:
        print("smoke run: bars not enforced", file=sys.stderr)
    return 1 if missed and not smoke else 0
