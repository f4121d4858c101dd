"""Verb ``compare``: one entry against another on every column the selection names, paired.

Where ``submit`` tests a new entry against every reference, ``compare`` answers one question for
two named entries: is A better than B here? It prints each column's mean and spread over the runs
(draws x seeds), the difference, and the paired test on the same test images (corrected over the
columns shown), and lists the columns of the selection that cannot be compared: a column one
entry has no runs on, or whose runs do not pair (different test images or labels, different
draws and seeds). ``--expect-better`` turns the answer into an exit status for scripts (the
demo's check that MGCA pretraining learns something): it passes only when *every* column the
selection names on the board is paired, A's mean is better (in the direction of the column's
metric), and the paired test's adjusted p is below ``--alpha``. It is a regression check for a
fixed setting, not an unbiased experiment when that setting was tuned by looking at it (the
demo's: README, DEVIATIONS.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from benchmark.commands import command
from benchmark.commands.arguments import UsageError, add_column_tests, column_name, column_verdict, entry_key

if TYPE_CHECKING:
    from benchmark.board.aggregate import CellAggregate
    from benchmark.scoring import MetricSpec


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("entry", help="backbone name or entry key (name@sha12) of A")
    parser.add_argument("against", help="backbone name or entry key of B")
    add_column_tests(parser, "exit 1 unless every column selected is paired, with A's mean above B's and adjusted p < alpha")


def _spread(cell: CellAggregate, spec: MetricSpec) -> str:
    std = "" if cell.std is None else f" ± {spec.shown(cell.std):.1f}"
    return f"{spec.shown(cell.mean):6.1f}{std:<7} (n={cell.n})"


@command("compare", "compare two entries of a board column by column (means over runs, paired tests)", _configure)
def _compare(args: argparse.Namespace) -> int:
    from benchmark.board.compare import ComparisonError, compare_cells, correct, grid_columns
    from benchmark.board.render import BoardView
    from benchmark.board.store import Board, BoardError, default_board

    try:
        board = Board(args.board or default_board(demo=args.demo))
        view = BoardView.load(board, args.mode)
        columns = grid_columns(board.protocol, view.modes, args.tasks, args.datasets, args.fractions)
    except BoardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        keys = {label: entry_key(view.entries, wanted, label, board.root) for label, wanted in (("A", args.entry), ("B", args.against))}
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    cells = {label: {cell.column: cell for cell in view.cells if cell.entry == key} for label, key in keys.items()}
    pairs, unusable = [], []  # unusable: (column, why it cannot be compared)
    for column in columns:
        a, b = cells["A"].get(column), cells["B"].get(column)
        if a is None or b is None:
            lacking = [label for label, cell in (("A", a), ("B", b)) if cell is None]
            unusable.append((column, f"missing: {' and '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no runs"))
            continue
        try:
            pairs.append((a, b, compare_cells(board, view.records, a, b)))
        except ComparisonError as error:
            unusable.append((column, f"not paired: {error}"))
            continue
        runs_a, runs_b = ({(run.draw, run.seed) for run in cell.runs} for cell in (a, b))
        if runs_a != runs_b:
            unusable.append((column, f"not paired: runs (draw, seed) differ, A {sorted(runs_a)}, B {sorted(runs_b)}"))
    if not pairs:
        print(f"error: {args.entry} and {args.against} share no column on {board.root} with the selection given",
              file=sys.stderr)
        return 2
    comparisons = correct(board, pairs, args.correction)
    correction = args.correction or board.protocol.comparison.correction
    alpha = args.alpha or board.protocol.comparison.alpha
    print(f"A = {keys['A']}, B = {keys['B']} on {board.root.name}: means ± sd over runs (draws x seeds), "
          f"shown as each metric declares (x100 for a fraction); paired tests on the same test images, "
          f"{correction} correction over {len(comparisons)} columns")
    print(f"{'column':<32} {'metric':<10} {'A':<24} {'B':<24} {'A - B':>7} {'test':<16} {'p adj':>8}")
    failures = []
    for (a, b, _), c in zip(pairs, comparisons):
        column, spec = column_name(a.column), board.protocol.metric(a.task, a.dataset)
        print(f"{column:<32} {a.metric:<10} {_spread(a, spec):<24} {_spread(b, spec):<24} "
              f"{spec.shown(a.mean - b.mean):>+7.2f} {c.result.test:<16} {c.p_adjusted:>8.3g}")
        if spec.ranking(a.mean) <= spec.ranking(b.mean):
            failures.append(f"{column}: A's mean is not better than B's")
        elif not c.p_adjusted < alpha:
            failures.append(f"{column}: adjusted p {c.p_adjusted:.3g} is not below alpha {alpha:g}")
    return column_verdict(failures, unusable, len(columns), args.expect_better, "A is not better than B",
                          f"A is better than B on all {len(columns)} columns selected (better mean, paired test adjusted "
                          f"p < {alpha:g})")

