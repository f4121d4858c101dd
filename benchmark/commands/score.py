"""Verb ``score``: official metrics of a saved prediction file, with bootstrap intervals.

``python -m benchmark score <task> --predictions PRED --targets TARGETS [--dataset NAME]``
prints JSON; each task's file formats are documented in its scorer module
``benchmark/scoring/<task>.py``. The runner stores exactly these numbers in the run record.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.commands import command, print_json
from benchmark.commands.arguments import SEED_RANGE, int_between
from benchmark.limits import MAX_RESAMPLES
from benchmark.scoring.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a level between 0 and 1 (e.g. 0.95), got {text!r}")
    return value


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="task whose files are scored: classification, detection, segmentation")
    parser.add_argument("--predictions", type=Path, required=True, help="prediction file (format: the task's scorer module)")
    parser.add_argument("--targets", type=Path, required=True, help="targets of the same test images")
    parser.add_argument("--dataset", default=None,
                        help="dataset whose metrics apply (classification: chexpert, rsna or covidx)")
    parser.add_argument("--n-resamples", type=int_between(1, MAX_RESAMPLES), default=DEFAULT_RESAMPLES,
                        help=f"bootstrap resamples, at most {MAX_RESAMPLES} (default {DEFAULT_RESAMPLES})")
    parser.add_argument("--seed", type=int_between(*SEED_RANGE), default=DEFAULT_SEED, help=f"bootstrap seed (default {DEFAULT_SEED})")
    parser.add_argument("--confidence", type=_level, default=DEFAULT_CONFIDENCE, help=f"interval level (default {DEFAULT_CONFIDENCE})")


@command("score", "score a saved prediction file against its targets (official metrics, bootstrap CI)", _configure)
def _score(args: argparse.Namespace) -> int:
    from benchmark.data.prepared import DataError
    from benchmark.registry import RegistryError
    from benchmark.scoring import scorer
    from benchmark.scoring.bootstrap import BootstrapOptions
    from tasks.registry import TASKS, all_tasks

    options = BootstrapOptions(n_resamples=args.n_resamples, seed=args.seed, confidence=args.confidence)
    try:
        all_tasks()
        name = TASKS.get(args.task).scorer if args.task in TASKS else args.task
        report = scorer(name).score_files(args.predictions, args.targets, args.dataset, options)
    except (DataError, RegistryError) as error:  # a bad file or name: the message says which and how to fix it
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_json(report.to_dict())
    return 0
