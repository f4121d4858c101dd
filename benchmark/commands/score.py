"""Verb ``score``: official metrics of a saved prediction file, with bootstrap intervals.

``python -m benchmark score classification --predictions PRED.csv --targets TARGETS.csv
--dataset chexpert`` prints JSON; the file formats are documented in
``benchmark/scoring/classification.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.cli import command, print_json
from benchmark.scoring.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="task whose files are scored, e.g. classification")
    parser.add_argument("--predictions", type=Path, required=True, help="prediction CSV (one row per test image)")
    parser.add_argument("--targets", type=Path, required=True, help="target CSV of the same test images")
    parser.add_argument("--dataset", required=True, help="dataset whose official metrics apply, e.g. chexpert, rsna, covidx")
    parser.add_argument("--n-resamples", type=int, default=DEFAULT_RESAMPLES, help=f"bootstrap resamples (default {DEFAULT_RESAMPLES})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"bootstrap seed (default {DEFAULT_SEED})")
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE, help=f"interval level (default {DEFAULT_CONFIDENCE})")


@command("score", "score a saved prediction file against its targets (official metrics, bootstrap CI)", _configure)
def _score(args: argparse.Namespace) -> int:
    from benchmark.data.prepared import DataError
    from benchmark.registry import RegistryError
    from benchmark.scoring import scorer
    from benchmark.scoring.bootstrap import BootstrapOptions

    options = BootstrapOptions(n_resamples=args.n_resamples, seed=args.seed, confidence=args.confidence)
    try:
        result = scorer(args.task)(args.predictions, args.targets, args.dataset, options)
    except (DataError, RegistryError) as error:  # a bad file or name: the message says which and how to fix it
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_json(result)
    return 0
