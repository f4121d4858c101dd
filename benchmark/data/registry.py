"""The datasets the suite knows, each with the function that prepares it from its official files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.data.cache import OnError
from benchmark.data.prepared import Manifest
from benchmark.registry import Registry


@dataclass(frozen=True)
class PrepareOptions:
    raw: Path  # the folder holding the official files (see DatasetInfo.raw_layout)
    out: Path  # DATA_DIR/<dataset>, created by the preparer
    image_size: int = 256  # side of the square uint8 cache
    on_error: OnError = "raise"  # or "exclude": skip unreadable images, listed in the manifest
    workers: int | None = None  # processes for decoding (default: every core)
    verify_shipped: bool = True  # compare the splits with benchmark/splits/ where shipped


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    partitions: tuple[str, ...]  # task families, see benchmark/data/prepared.py
    raw_layout: str  # what RAW_DIR must contain, in one line
    prepare: Callable[[PrepareOptions], Manifest]


DATASETS: Registry[DatasetInfo] = Registry("dataset")
