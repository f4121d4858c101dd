"""Verb ``verify``: prove every record of a board against its manifest, its files and, with
``--rescore``, the metrics its files give (``benchmark/board/integrity.py``).

``python -m benchmark verify --board B [--rescore]`` prints one line per record and exits 1 when
anything does not match (the manifest, the files, the pinned ground truth: ``Board.verify_record``),
or a record the manifest lists is missing. Hashes are computed in full here (no size/mtime memo).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from benchmark.commands import command

TOLERANCE = 1e-9


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", default=None, help="board name or folder (default: the default real-data board)")
    parser.add_argument("--demo", action="store_true", help="the default demo board")
    parser.add_argument("--rescore", action="store_true",
                        help="also recompute every metric from the prediction and target files with the task's scorer")


def rescore_problems(board: object, record: object) -> list[str]:
    """Metrics of ``record`` that its files, scored again, do not reproduce."""
    from benchmark.scoring import scorer
    from benchmark.scoring.bootstrap import BootstrapOptions
    from tasks.registry import get_task

    settings = board.protocol.comparison
    options = BootstrapOptions(n_resamples=settings.bootstrap_resamples, seed=settings.bootstrap_seed)
    scored = scorer(get_task(record.identity.task).scorer).score_files(
        board.artifact_file(record.predictions), board.artifact_file(record.targets), record.identity.dataset, options)
    metrics = scored.metric_values()
    problems = [f"{name} missing from the rescored metrics" for name in sorted(set(record.metrics) - set(metrics))]
    for name, value in sorted(metrics.items()):
        stored = record.metrics.get(name)
        if stored is None:
            problems.append(f"{name} is not in the record")
            continue
        for field in ("value", "ci_low", "ci_high"):
            a, b = getattr(stored, field), getattr(value, field)
            if (a is None) != (b is None) or (a is not None and not math.isclose(a, b, rel_tol=0, abs_tol=TOLERANCE)):
                problems.append(f"{name}.{field}: record {a}, files give {b}")
    return problems


@command("verify", "check every record of a board against its manifest, files and (--rescore) metrics", _configure)
def _verify(args: argparse.Namespace) -> int:
    from benchmark.board.integrity import FileHashes, read_manifest, relative
    from benchmark.board.store import PINS_FILE, PROTOCOL_FILE, Board, BoardError, default_board
    from benchmark.data.prepared import DataError
    from benchmark.records import RecordError, RunRecord
    from tasks.registry import check_board

    try:
        board = Board(args.board or default_board(demo=args.demo))
        check_board(board.protocol)
    except BoardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    board.hashes = FileHashes(Path("/nonexistent/memo"), trust_memo=False)  # full hashes, nothing memoised
    manifest = read_manifest(board.root)
    paths = sorted((board.root / "results").glob("*/*.json"))
    bad = 0
    print(f"board {board.name}: {len(paths)} record(s), {len(manifest)} in the manifest"
          + (", rescoring every record" if args.rescore else ""))
    try:
        pins = board.target_pins()
    except BoardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    by_protocol = sum(key in board.protocol.target_pins for key in pins)
    print(f"ground truth pinned for {len(pins)} test split(s): {by_protocol} by {PROTOCOL_FILE}, "
          f"{len(pins) - by_protocol} by their first record ({PINS_FILE})")
    for path in paths:
        name = relative(path, board.root)
        try:
            record = RunRecord.read(path)
            problem = board.verify_record(record, path)
            problems = [problem] if problem else (rescore_problems(board, record) if args.rescore else [])
        except (RecordError, BoardError, DataError) as error:
            problems = [str(error)]
        bad += bool(problems)
        print(f"{'MISMATCH' if problems else 'ok':9} {name}" + "".join(f"\n          {item}" for item in problems))
    missing = sorted(set(manifest) - {relative(path, board.root) for path in paths})
    for name in missing:  # a deleted record hides a result: as wrong as an edited one
        print(f"{'MISSING':9} {name}: listed in the manifest, no such record")
    print(f"{len(paths) - bad} valid, {bad} mismatched, {len(missing)} missing")
    return 1 if bad or missing else 0
