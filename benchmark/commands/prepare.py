"""Verb ``prepare``: official download → prepared dataset."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from benchmark.commands import command
from benchmark.commands.arguments import int_between
from benchmark.limits import MAX_IMAGE_SIDE


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (a zero or negative size or worker count is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _configure(parser: argparse.ArgumentParser) -> None:
    from benchmark.data import datasets  # noqa: F401 - registers the datasets
    from benchmark.data.registry import DATASETS

    layouts = "; ".join(f"{name}: {info.raw_layout}" for name, info in DATASETS.items())
    parser.add_argument("dataset", help=f"one of {', '.join(DATASETS.names())}")
    parser.add_argument("--raw", type=Path, required=True, help=f"folder of the official download ({layouts})")
    parser.add_argument("--out", type=Path, required=True, help="DATA_DIR; the dataset goes to DATA_DIR/<dataset>")
    parser.add_argument("--image-size", type=int_between(1, MAX_IMAGE_SIDE), default=256,
                        help=f"side of the cached square images, at most {MAX_IMAGE_SIDE} (default 256)")
    parser.add_argument("--on-error", choices=["raise", "exclude"], default="raise",
                        help="unreadable images: stop (default) or exclude and list them in the manifest")
    parser.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: all cores)")
    parser.add_argument("--no-verify", action="store_true", help="do not compare the splits with the shipped ID lists")
    parser.add_argument("--refresh", action="store_true",
                        help="keep an existing preparation that is current (same preparation version, image size and "
                             "label files), replace one that is not (default: an existing preparation is an error)")


@command("prepare", "prepare a dataset from its official download (splits, labels, image cache)", _configure)
def _prepare(args: argparse.Namespace) -> int:
    from benchmark.data.preparation import stale_reason
    from benchmark.data.prepared import DataError
    from benchmark.data.registry import DATASETS, PrepareOptions
    from benchmark.registry import RegistryError

    try:
        info = DATASETS.get(args.dataset)
        out = args.out / info.name
        if args.refresh and (out / "manifest.json").is_file():
            reason = stale_reason(out, args.raw, args.image_size)
            if reason is None:
                print(f"{info.name}: {out} is up to date")
                return 0
            print(f"{info.name}: re-preparing {out} ({reason})")
            shutil.rmtree(out)
        manifest = info.prepare(PrepareOptions(
            raw=args.raw, out=out, image_size=args.image_size, on_error=args.on_error,
            workers=args.workers, verify_shipped=not args.no_verify,
        ))
    except (DataError, RegistryError) as error:  # bad input: the message names the file or name and the fix
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"prepared {info.name} in {args.out / info.name}: {summarise_counts(manifest.counts)}"
          + (f"; {len(manifest.excluded)} excluded (see manifest.json)" if manifest.excluded else ""))
    return 0


def summarise_counts(counts: dict[str, int]) -> str:
    """'40 images; classification 28/6/6 (1%: 0, 10%: 3)' from the manifest's flat counts."""
    parts = [f"{counts['images']} images"] if "images" in counts else []
    partitions = dict.fromkeys(key.split("/")[0] for key in counts if "/" in key)
    for partition in partitions:
        sizes = "/".join(str(counts.get(f"{partition}/{split}", 0)) for split in ("train", "val", "test"))
        fractions = ", ".join(
            f"{pct}%: {counts[f'{partition}/train_{pct}pct_draw0']}" for pct in (1, 10)
            if f"{partition}/train_{pct}pct_draw0" in counts
        )
        parts.append(f"{partition} train/val/test {sizes}" + (f" ({fractions})" if fractions else ""))
    return "; ".join(parts)
