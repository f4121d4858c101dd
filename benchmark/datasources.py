"""Where the planner reads a dataset's splits: a prepared folder (to run) or the split sizes that
ship with the package (to plan a grid before any data is prepared: ``run --dry-run --from-splits``).

Both answer the same questions: is the dataset there, is it demo data, which partitions and
fraction draws exist, and how many images each split holds (the cost model's input).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

from benchmark.costs import SplitCounts
from benchmark.data.prepared import PreparedDataset, split_file_name
from benchmark.data.registry import PrepareOptions

SHIPPED_SPLITS = Path(__file__).parent / "splits"
# The side ``prepare`` writes images at unless told otherwise: what a dataset planned from split sizes is assumed at.
DEFAULT_IMAGE_SIZE: int = next(f.default for f in fields(PrepareOptions) if f.name == "image_size")


class DatasetSource(Protocol):
    root: Path  # where the cells read the dataset (the prepared folder)
    demo: bool
    preparation_version: int | None  # None: not prepared (planned from split sizes)
    image_size: int  # side of the prepared images (the preparation default when planned from split sizes)

    def partition(self, name: str) -> str: ...

    def draws(self, fraction: int) -> list[int]: ...

    def counts(self, partition: str, fraction: int, draw: int) -> SplitCounts: ...


class PreparedSource:
    """A prepared dataset folder (``prepare``'s output)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dataset = PreparedDataset(root)
        self.demo = self.dataset.manifest.demo
        self.preparation_version: int | None = self.dataset.manifest.preparation_version
        self.image_size = self.dataset.manifest.image_size
        self._counts: dict[tuple, SplitCounts] = {}

    def partition(self, name: str) -> str:
        return self.dataset.partition(name)

    def draws(self, fraction: int) -> list[int]:
        return list(self.dataset.manifest.fractions.get(str(fraction), [0] if fraction == 100 else []))

    def counts(self, partition: str, fraction: int, draw: int) -> SplitCounts:
        key = (partition, fraction, draw)
        if key not in self._counts:
            size = lambda split, f=100, d=0: len(self.dataset.split_ids(split, f, d, partition))  # noqa: E731
            self._counts[key] = SplitCounts(size("train", fraction, draw), size("val"), size("test"))
        return self._counts[key]


@dataclass
class SizesSource:
    """Split sizes without images: the package's shipped ``splits/<dataset>/source.json`` sizes,
    completed by a user file ``{dataset: {"<partition>/<split file>": count}}`` for splits that are
    fixed only at preparation (COVIDx, Object-CXR, CheXpert's test set)."""

    root: Path
    sizes: dict[str, int] = field(default_factory=dict)  # "<partition>/<file name>" -> images
    demo: bool = False
    preparation_version: int | None = None
    image_size: int = DEFAULT_IMAGE_SIZE

    def partition(self, name: str) -> str:
        if not any(key.startswith(f"{name}/") for key in self.sizes):
            raise FileNotFoundError(f"no split sizes for partition {name!r} of {self.root.name} (shipped or in --split-sizes)")
        return name

    def draws(self, fraction: int) -> list[int]:
        if fraction == 100:
            return [0]
        prefix = f"train_{fraction}pct_draw"
        return sorted(int(key.rsplit(prefix, 1)[1].split(".")[0]) for key in self.sizes if prefix in key)

    def counts(self, partition: str, fraction: int, draw: int) -> SplitCounts:
        def size(split: str, f: int = 100, d: int = 0) -> int:
            key = f"{partition}/{split_file_name(split, f, d)}"
            if key not in self.sizes:
                raise FileNotFoundError(f"{self.root.name}: the size of split {key} is neither shipped "
                                        f"({SHIPPED_SPLITS / self.root.name}) nor given with --split-sizes")
            return self.sizes[key]

        return SplitCounts(size("train", fraction, draw), size("val"), size("test"))


def prepared_sources(data_dir: Path) -> Callable[[str], DatasetSource | None]:
    """The loader the runner uses: the prepared folder of a dataset, or None when it is not prepared."""

    def load(dataset: str) -> DatasetSource | None:
        root = data_dir / dataset
        return PreparedSource(root) if (root / "manifest.json").is_file() else None

    return load


def size_sources(data_dir: Path, extra: Path | None = None) -> Callable[[str], DatasetSource | None]:
    """Sources from the shipped split sizes plus ``extra`` (a JSON file); a dataset with neither is an error."""
    given: dict[str, dict[str, int]] = {}
    if extra is not None:
        try:
            given = json.loads(Path(extra).read_text())
            if not isinstance(given, dict) or not all(isinstance(v, dict) for v in given.values()):
                raise ValueError("expected {dataset: {\"partition/file.txt\": count}}")
        except (OSError, ValueError) as error:
            raise FileNotFoundError(f"{extra}: not a split-sizes file ({error})") from None

    def load(dataset: str) -> DatasetSource | None:
        shipped = SHIPPED_SPLITS / dataset / "source.json"
        sizes = dict(json.loads(shipped.read_text()).get("sizes", {})) if shipped.is_file() else {}
        sizes.update({key: int(value) for key, value in given.get(dataset, {}).items()})
        if not sizes:
            raise FileNotFoundError(f"{dataset}: no split sizes ship with the package ({SHIPPED_SPLITS / dataset}) and "
                                    f"none are given with --split-sizes FILE ({{\"{dataset}\": {{\"<partition>/train.txt\": N, ...}}}})")
        return SizesSource(data_dir / dataset, sizes)

    return load
