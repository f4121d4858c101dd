"""``python -m benchmark <verb>``: one subcommand per step of the data flow.

Each verb lives in its own module under ``benchmark/commands/`` and registers itself with
:func:`benchmark.commands.command`; every module there is imported when the parser is built.
This module only parses the command line and dispatches to the verb.
"""

from __future__ import annotations

import argparse
import sys

from benchmark.commands import COMMANDS, register_all
from benchmark.offline import stay_offline


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser of every verb; with ``verb``, only that verb's options are configured (some
    configurations import heavy modules to list choices, which another verb never needs)."""
    register_all()
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
