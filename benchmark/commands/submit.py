"""Verb ``submit``: evaluate a new checkpoint on the board's grid and test it against every entry."""

from __future__ import annotations

import argparse
import sys

from benchmark.commands import command
from benchmark.commands.arguments import UsageError, add_grid_arguments, comma_list, execute


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="weights file (.ckpt/.pth/.pt/.bin/.safetensors)")
    parser.add_argument("--arch", required=True, help="architecture (see `python -m benchmark backbones`)")
    parser.add_argument("--name", required=True, help="entry name on the board (letters, digits, . _ + -)")
    parser.add_argument("--prefix", default=None, help="key prefix of the encoder (default: detected)")
    parser.add_argument("--pretraining-data", type=comma_list, required=True,
                        help="datasets the weights saw, comma-separated (e.g. mimic-cxr,chestx-ray14); "
                             "overlaps with test sets are flagged; 'none' for none")
    parser.add_argument("--correction", choices=["holm", "bh", "none"], default=None,
                        help="multiple-comparison correction (default: the board's)")
    add_grid_arguments(parser)


@command("submit", "evaluate a new checkpoint on a board and compare it with every reference entry (paired tests)", _configure)
def _submit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.board.aggregate import aggregate
    from benchmark.board.compare import compare_entry
    from benchmark.board.render import BoardView, render_board
    from benchmark.records import RecordError, check_name
    from benchmark.grid import BackboneChoice

    try:
        check_name(args.name, "--name")
    except RecordError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    declared = tuple(name for name in args.pretraining_data if name.lower() != "none")
    choice = BackboneChoice(args.name, Path(args.checkpoint), args.arch, args.prefix, declared)
    if not choice.is_submission:
        print(f"error: {args.name!r} is a registered backbone name; choose another --name", file=sys.stderr)
        return 2
    try:
        board, code = execute(args, (choice,))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    entry = next(e for e in board.entries().values() if e.name == args.name)
    records = BoardView.load(board, args.mode).records
    skipped: list[str] = []
    comparisons = compare_entry(board, records, aggregate(records, board.protocol.metric), entry.key, args.correction, skipped)
    correction = args.correction or board.protocol.comparison.correction
    print(f"\n{entry.name} ({entry.key}) against every reference entry; paired tests on the same test images, "
          f"{correction} correction over {len(comparisons)} comparisons, alpha {board.protocol.comparison.alpha}")
    print(f"{'cell':<34} {'reference':<32} {'delta':>7} {'95% CI':>17} {'test':<16} {'p':>8} {'p adj':>8}  significant")
    for c in comparisons:
        shown = board.protocol.metric(c.task, c.dataset).shown
        print(f"{c.task + '/' + c.dataset + f' {c.fraction}%':<34} {c.b:<32} {shown(c.result.delta):>+7.2f} "
              f"[{shown(c.result.ci_low):>+6.2f},{shown(c.result.ci_high):>+6.2f}] {c.result.test:<16} "
              f"{c.result.p_value:>8.3g} {c.p_adjusted:>8.3g}  {'yes' if c.significant else 'no'}")
    for line in skipped:
        print(f"not compared: {line}")
    datasets = sorted({c.dataset for c in comparisons} | {r.identity.dataset for r in records if r.identity.entry_key == entry.key})
    for dataset in datasets:
        overlap = board.protocol.overlaps(declared, dataset)
        if overlap:
            print(f"FLAG {dataset}: pretraining data {overlap} shares images with the {dataset} test set")
    render_board(board, args.mode)
    print(f"board re-rendered: {board.root / 'rendered' / 'index.html'}")
    return code
