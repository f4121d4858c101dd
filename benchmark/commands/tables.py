"""Verb ``tables``: the paper's tables from a board, with published numbers, plots and the static page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.commands import command
from benchmark.commands.arguments import task_choices


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", default=None, help="board name or folder (default: the default real-data board)")
    parser.add_argument("--demo", action="store_true", help="the default demo board (instead of naming it with --board)")
    parser.add_argument("--format", action="append", choices=["md", "tex", "html"], default=None,
                        help="output format, repeatable (default: all three; html adds plots and the page)")
    parser.add_argument("--mode", type=task_choices, default=None,
                        help="which runs: MODE or TASK=MODE,... (default: each task's default mode on the board)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <board>/rendered)")
    parser.add_argument("--quiet", action="store_true", help="do not print the Markdown tables")


@command("tables", "render Tables 1-3 (md/tex/html), data-efficiency plots and the static page of a board", _configure)
def _tables(args: argparse.Namespace) -> int:
    from benchmark.board.render import FORMATS, render_board, to_markdown
    from benchmark.board.store import Board, BoardError, default_board

    try:
        result = render_board(Board(args.board or default_board(demo=args.demo)), args.mode, tuple(args.format or FORMATS), args.out)
    except BoardError as error:  # no such board, a malformed protocol, a mode it does not declare
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        for model in result.models:
            print(to_markdown(model))
    for path in result.files:
        print(f"wrote {path}")
    return 0
