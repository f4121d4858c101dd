"""Shared fixtures of the detection tests: demo RSNA and Object-CXR prepared at 64 px, tiny encoders, cells."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from benchmark.backbones import LoadedBackbone, build_backbone
from benchmark.data.demo import generate
from benchmark.data.prepared import PreparedDataset
from benchmark.data.registry import DATASETS, PrepareOptions
from tasks.registry import TaskCell

IMAGE_SIZE = 64


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo RSNA (detection split 71 / 25 / 24, 10 %: 7) and Object-CXR (86 / 10 / 24, 10 %: 8) at 64 px."""
    root = tmp_path_factory.mktemp("detection-data")
    generate(root / "raw", ["rsna", "object_cxr"], images=120, size=IMAGE_SIZE, seed=0)
    for name in ("rsna", "object_cxr"):
        DATASETS.get(name).prepare(PrepareOptions(raw=root / "raw" / name, out=root / "prepared" / name,
                                                  image_size=IMAGE_SIZE, workers=1))
    return root / "prepared"


@pytest.fixture(scope="session")
def resnet() -> LoadedBackbone:
    return build_backbone("random_resnet18")


@pytest.fixture(scope="session")
def vit() -> LoadedBackbone:
    return build_backbone("random_vit_tiny")


CellFactory = Callable[..., TaskCell]


@pytest.fixture(scope="session")
def make_cell(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> CellFactory:
    cache = tmp_path_factory.mktemp("cache")

    def make(backbone: LoadedBackbone, work_dir: Path, dataset: str = "rsna", head: str = "yolov3", mode: str = "cached",
             fraction: int = 10, seed: int = 0) -> TaskCell:
        return TaskCell(backbone=backbone, dataset=PreparedDataset(prepared / dataset), partition="detection", head=head,
                        fraction=fraction, draw=0, seed=seed, mode=mode, work_dir=work_dir, cache_dir=cache, progress=False)

    return make
