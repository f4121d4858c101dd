"""Verb ``chance``: one entry's results against chance, column by column.

A zero-shot or retrieval number says nothing until it beats a model that knows nothing about the
images. For each column the selection names (task, dataset, fraction, in the task's mode) this
prints the headline metric of the entry (mean over its runs), its chance level, the one-sided test
its metric declares (``benchmark/scoring/chance.py``: for accuracy a permutation test of the
labels against the predicted classes, chance sum_k p_pred(k) * p_true(k); Mann-Whitney U against
0.5 for a binary AUROC; exact tests against a random ranking for recall@K and precision@K), the
p-value and the p adjusted over the columns shown (Holm by default, the board's correction). A
column whose headline has no test is listed with the reason, and with the secondary metrics its
runs report that do have one (named, not tested: the column's number is its headline). With
several runs in a column (draws, seeds) its p is the largest of theirs: every run must beat chance.
``--expect-better`` turns this into an exit status: 0 only when every column selected has runs of
the entry, its metric declares a null, the value is above chance and the adjusted p is below
``--alpha``; the demo's check that the demo MGCA's text tower learned something
(``make demo-check``).
"""

from __future__ import annotations

import argparse
import sys

from benchmark.commands import command
from benchmark.commands.arguments import UsageError, add_column_tests, column_name, column_verdict, entry_key


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("entry", help="backbone name or entry key (name@sha12)")
    add_column_tests(parser, "exit 1 unless every column selected has runs whose metric declares a chance null, "
                             "with a value above chance and adjusted p < alpha")


@command("chance", "test an entry's results against chance column by column (one-sided exact or rank tests)", _configure)
def _chance(args: argparse.Namespace) -> int:
    from benchmark.board.compare import chance_of_cell, grid_columns, secondary_chance_metrics
    from benchmark.board.render import BoardView
    from benchmark.board.store import Board, BoardError, default_board
    from benchmark.scoring.chance import ChanceError, p_text
    from benchmark.scoring.compare import adjust

    try:
        board = Board(args.board or default_board(demo=args.demo))
        view = BoardView.load(board, args.mode)
        columns = grid_columns(board.protocol, view.modes, args.tasks, args.datasets, args.fractions)
        key = entry_key(view.entries, args.entry, "entry", board.root)
    except (BoardError, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    cells = {cell.column: cell for cell in view.cells if cell.entry == key}
    tested, untested = [], []  # untested: (column, why there is no test)
    for column in columns:
        cell = cells.get(column)
        if cell is None:
            untested.append((column, "missing: the entry has no runs"))
            continue
        try:
            tested.append((cell, chance_of_cell(board, view.records, cell)))
        except ChanceError as error:
            secondary = secondary_chance_metrics(board, view.records, cell)
            offer = (f"; its runs also report {', '.join(secondary)}, which {'has' if len(secondary) == 1 else 'have'} a "
                     f"chance test (not run: this verb tests the headline {cell.metric}, the number the board shows)"
                     if secondary else "")
            untested.append((column, f"no chance test of the headline {cell.metric}: {error}{offer}"))
    correction = args.correction or board.protocol.comparison.correction
    alpha = args.alpha or board.protocol.comparison.alpha
    adjusted = adjust([result.p_value for _, result in tested], correction)
    print(f"{key} on {board.root.name} against chance: mean over runs, shown as each metric declares (x100 for a "
          f"fraction); one-sided tests of each column's runs against a model whose outputs ignore the images "
          f"(largest p of its runs), {correction} correction over {len(tested)} columns")
    print(f"{'column':<32} {'metric':<16} {'value':>7} {'chance':>7} {'test':<24} {'p':>8} {'p adj':>8}  null")
    failures = []
    for (cell, result), p_adjusted in zip(tested, adjusted):
        spec, name = board.protocol.metric(cell.task, cell.dataset), column_name(cell.column)
        print(f"{name:<32} {cell.metric:<16} {spec.shown(result.value):>7.1f} {spec.shown(result.chance):>7.1f} "
              f"{result.test:<24} {p_text(result.p_value):>8} {p_text(float(p_adjusted)):>8}  "
              f"{result.detail} (n={result.runs} run{'s' if result.runs > 1 else ''})")
        if spec.ranking(result.value) <= spec.ranking(result.chance):
            failures.append(f"{name}: not above chance")
        elif not p_adjusted < alpha:
            failures.append(f"{name}: adjusted p {p_text(float(p_adjusted))} is not below alpha {alpha:g}")
    return column_verdict(failures, untested, len(columns), args.expect_better, f"{args.entry} does not beat chance",
                          f"{args.entry} beats chance on all {len(columns)} columns selected (adjusted p < {alpha:g})")

