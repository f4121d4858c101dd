"""Decoding DICOMs vs reading the prepared image cache: why every epoch reads the cache.

    .venv/bin/python benchmarks/bench_cache.py                       # 300 synthetic 1024² DICOMs
    .venv/bin/python benchmarks/bench_cache.py --images 100
    .venv/bin/python benchmarks/bench_cache.py --prepared DATA/rsna --raw RAW/rsna   # a real one
    .venv/bin/python benchmarks/bench_cache.py --smoke                               # the test suite's run

Synthetic data are written in the RSNA release layout (JPEG-baseline 8-bit 1024 × 1024 DICOMs,
as the official files are) and prepared by the real ``rsna`` preparer. Decoding is timed in one
process (``read_dicom`` + the cache resize, what an epoch without a cache would pay per image);
the cache is read through :meth:`PreparedDataset.images` in shuffled batches. Exits 1 when the
cache is less than ``--min-ratio`` (20) times faster.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.datasets import rsna
from benchmark.data.dicom import read_dicom, write_dicom
from benchmark.data.imaging import RESIZERS
from benchmark.data.prepared import PreparedDataset
from benchmark.data.preparation import DEMO_MARKER
from benchmark.data.registry import PrepareOptions

from smoke import add_smoke_option, exit_status, parse_args


def synthetic_rsna(raw: Path, count: int, side: int) -> None:
    """``count`` patients in the official RSNA layout: smooth 8-bit images, a box on every fifth."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    base = 128 + 60 * np.sin(xx / 90.0) * np.cos(yy / 130.0)
    rows = []
    for index in range(count):
        patient = f"{index:05d}-bench"
        noise = rng.normal(0, 12, (side, side))
        write_dicom(raw / rsna.IMAGES_DIR / f"{patient}.dcm", np.clip(base + noise, 0, 255).astype(np.uint8), jpeg=True)
        box = [round(value * side / 1024) for value in (300, 300, 200, 250)]  # x, y, width, height at 1024 px
        rows.append([patient, *box, 1] if index % 5 == 0 else [patient, "", "", "", "", 0])
    pd.DataFrame(rows, columns=list(rsna.COLUMNS)).to_csv(raw / rsna.LABELS_FILE, index=False)
    (raw / DEMO_MARKER).write_text("benchmarks/bench_cache.py synthetic data\n")


def decode_rate(paths: list[Path], size: int, mode: str) -> float:
    """Images per second for decode + resize, one process."""
    start = time.perf_counter()
    for path in paths:
        RESIZERS[mode](read_dicom(path), size)
    return len(paths) / (time.perf_counter() - start)


def cache_rate(prepared: PreparedDataset, batch: int = 64, repeats: int = 5) -> float:
    """Images per second read from the cache in shuffled batches (a training epoch's pattern)."""
    ids = prepared.split_ids("train", partition=prepared.manifest.partitions[0])
    ids += prepared.split_ids("val", partition=prepared.manifest.partitions[0])
    rng = np.random.default_rng(0)
    prepared.images(ids[:batch])  # open the memory map
    start = time.perf_counter()
    for _ in range(repeats):
        order = list(rng.permutation(ids))
        for begin in range(0, len(order), batch):
            prepared.images(order[begin:begin + batch])
    return repeats * len(ids) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="synthetic DICOMs to write (default 300)")
    parser.add_argument("--prepared", type=Path, help="an existing prepared dataset folder (with --raw)")
    parser.add_argument("--raw", type=Path, help="the raw folder it was prepared from (paths in records.csv)")
    parser.add_argument("--decode-limit", type=int, default=200, help="DICOMs timed for decoding (default 200)")
    parser.add_argument("--side", type=int, default=1024, help="side of the synthetic DICOMs (default 1024, RSNA's)")
    parser.add_argument("--min-ratio", type=float, default=20.0)
    add_smoke_option(parser, images=30, side=256, decode_limit=5)
    args = parse_args(parser)
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as scratch:
        if args.prepared:
            if not args.raw:
                parser.error("--prepared needs --raw (the DICOMs are timed from there)")
            prepared, raw = PreparedDataset(args.prepared), args.raw
        else:
            raw, out = Path(scratch) / "raw", Path(scratch) / "data" / "rsna"
            started = time.perf_counter()
            synthetic_rsna(raw, args.images, args.side)
            print(f"wrote {args.images} synthetic {args.side}x{args.side} DICOMs in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            rsna.prepare(PrepareOptions(raw=raw, out=out))
            print(f"prepared them (all cores) in {time.perf_counter() - started:.1f} s")
            prepared = PreparedDataset(out)
        paths = [raw / path for path in prepared.records["path"].iloc[: args.decode_limit]]
        manifest = prepared.manifest
        decoded = decode_rate(paths, manifest.image_size, manifest.image_mode)
        cached = cache_rate(prepared)
    ratio = cached / decoded
    print(f"DICOM decode + resize (1 process): {decoded:10.1f} images/s  ({len(paths)} images)")
    print(f"prepared cache read ({manifest.image_size}px):    {cached:10.1f} images/s")
    print(f"ratio: {ratio:.0f}x (required >= {args.min_ratio:.0f}x)")
    return exit_status([] if ratio >= args.min_ratio else [f"the cache is {ratio:.0f}x faster, below {args.min_ratio:.0f}x"],
                       args.smoke)


if __name__ == "__main__":
    sys.exit(main())
