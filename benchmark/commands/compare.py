"""Verb ``compare``: one entry against another on every column both have, run by run and paired.

Where ``submit`` tests a new entry against every reference, ``compare`` answers one question for
two named entries: is A better than B here? It prints each column's mean and spread over the runs
(draws x seeds), the difference, and the paired test on the same test images (corrected over the
columns shown). ``--expect-better`` turns the answer into an exit status, so that a script (the
demo's check that MGCA pretraining learns something) can rely on it.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from benchmark.cli import comma_integers, comma_list, command, task_choices

if TYPE_CHECKING:
    from benchmark.board.aggregate import CellAggregate


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("entry", help="backbone name or entry key (name@sha12) of A")
    parser.add_argument("against", help="backbone name or entry key of B")
    parser.add_argument("--board", default=None, help="board name or folder (default: the default real-data board)")
    parser.add_argument("--demo", action="store_true", help="the default demo board (instead of naming it with --board)")
    parser.add_argument("--tasks", type=comma_list, default=None, help="comma list (default: every task both have)")
    parser.add_argument("--datasets", type=comma_list, default=None, help="comma list (default: every dataset both have)")
    parser.add_argument("--fractions", type=comma_integers, default=None, help="label percentages, e.g. 1,100 (default: all)")
    parser.add_argument("--mode", type=task_choices, default=None,
                        help="which runs: MODE or TASK=MODE,... (default: each task's default mode on the board)")
    parser.add_argument("--correction", choices=["holm", "bh", "none"], default=None,
                        help="multiple-comparison correction over the columns shown (default: the board's)")
    parser.add_argument("--expect-better", action="store_true",
                        help="exit 1 unless A's mean is above B's on every column shown")


def _spread(cell: CellAggregate) -> str:
    std = "" if cell.std is None else f" ± {100 * cell.std:.1f}"
    return f"{100 * cell.mean:6.1f}{std:<7} (n={cell.n})"


@command("compare", "compare two entries of a board column by column (means over runs, paired tests)", _configure)
def _compare(args: argparse.Namespace) -> int:
    from benchmark.board.compare import ComparisonError, compare_cells, correct
    from benchmark.board.render import BoardView
    from benchmark.board.store import Board, BoardError, default_board

    try:
        board = Board(args.board or default_board(demo=args.demo))
        view = BoardView.load(board, args.mode)
    except BoardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    keys = {}
    for label, wanted in (("A", args.entry), ("B", args.against)):
        matches = [key for key, entry in view.entries.items() if wanted in (key, entry.name)]
        if len(matches) != 1:
            known = ", ".join(sorted(entry.name for entry in view.entries.values())) or "none"
            problem = "matches several entries; give the entry key" if matches else "is not on this board"
            print(f"error: {label} {wanted!r} {problem} (entries of {board.root}: {known})", file=sys.stderr)
            return 2
        keys[label] = matches[0]

    def selected(cell: CellAggregate) -> bool:
        return ((args.tasks is None or cell.task in args.tasks) and (args.datasets is None or cell.dataset in args.datasets)
                and (args.fractions is None or cell.fraction in args.fractions))

    cells_b = {cell.column: cell for cell in view.cells if cell.entry == keys["B"]}
    pairs, not_paired = [], []
    for cell in sorted((c for c in view.cells if c.entry == keys["A"] and selected(c)), key=lambda c: c.column):
        if cell.column not in cells_b:
            continue
        try:
            pairs.append((cell, cells_b[cell.column], compare_cells(board, view.records, cell, cells_b[cell.column])))
        except ComparisonError as error:
            not_paired.append(f"{cell.task}/{cell.dataset} {cell.fraction}%: {error}")
    if not pairs:
        print(f"error: {args.entry} and {args.against} share no column on {board.root} with the selection given",
              file=sys.stderr)
        return 2
    comparisons = correct(board, pairs, args.correction)
    correction = args.correction or board.protocol.comparison.correction
    print(f"A = {keys['A']}, B = {keys['B']} on {board.root.name}: means ± sd over runs (draws x seeds), "
          f"x100; paired tests on the same test images, {correction} correction over {len(comparisons)} columns")
    print(f"{'column':<32} {'metric':<10} {'A':<24} {'B':<24} {'A - B':>7} {'test':<16} {'p adj':>8}")
    worse = []
    for (a, b, _), c in zip(pairs, comparisons):
        column = f"{a.task}/{a.dataset} {a.fraction}%"
        print(f"{column:<32} {a.metric:<10} {_spread(a):<24} {_spread(b):<24} {100 * (a.mean - b.mean):>+7.2f} "
              f"{c.result.test:<16} {c.p_adjusted:>8.3g}")
        if a.mean <= b.mean:
            worse.append(column)
    for line in not_paired:
        print(f"not paired: {line}")
    if args.expect_better and worse:
        print(f"A is not better than B on {len(worse)} of {len(pairs)} columns: {', '.join(worse)}")
        return 1
    if args.expect_better:
        print(f"A is better than B on all {len(pairs)} columns (means over runs)")
    return 0
