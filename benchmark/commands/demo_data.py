"""Verb ``demo-data``: small synthetic datasets in the official download layouts."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmark.commands import command


def _configure(parser: argparse.ArgumentParser) -> None:
    from benchmark.data.demo import DEMO_WRITERS

    parser.add_argument("--out", type=Path, required=True, help="DIR; each dataset goes to DIR/<dataset>, ready for `prepare --raw`")
    parser.add_argument("--datasets", nargs="+", choices=DEMO_WRITERS.names(), metavar="DATASET",
                        help=f"subset to write (default: all of {', '.join(DEMO_WRITERS.names())})")
    parser.add_argument("--images", type=int, default=300, help="images per dataset, all official files together (default 300)")
    parser.add_argument("--size", type=int, default=256, help="image height in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing demo data (folders holding the demo marker only)")
    parser.add_argument("--refresh", action="store_true",
                        help="keep demo data written with these same options, replace demo data written with others")


@command("demo-data", "write small synthetic datasets in the official layouts (for tests and trying the pipeline)", _configure)
def _demo_data(args: argparse.Namespace) -> int:
    from benchmark.data.demo import generate
    from benchmark.data.prepared import DataError

    start = time.perf_counter()
    try:
        summary = generate(args.out, args.datasets, images=args.images, size=args.size, seed=args.seed, overwrite=args.overwrite,
                           scorable=True, refresh=args.refresh)
    except DataError as error:  # bad options or an existing folder: the message says which and how to fix it
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, counts in summary.items():
        print(f"{name}: {args.out / name} {counts or 'is up to date'}")
    if any(summary.values()):
        print(f"demo data written in {time.perf_counter() - start:.1f} s (seed {args.seed}, size {args.size})")
    return 0
