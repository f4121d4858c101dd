"""Shared fixtures of the detection tests: demo RSNA and Object-CXR prepared at 64 px, tiny encoders, cells."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmark.backbones import LoadedBackbone, build_backbone
from benchmark.data.demo import generate
from benchmark.data.prepared import PreparedDataset
from benchmark.data.registry import DATASETS, PrepareOptions
from tasks.registry import TaskCell

IMAGE_SIZE = 64


@pytest.fixture(autouse=True, scope="session")
def _mmdet_model_index_read_once() -> Iterator[None]:
    """Each detector config (``_base_ = "mmdet::..."``) makes mmengine parse all of mmdet's ~100 ``metafile.yml``
    (0.1-0.2 s) to look the base up; the installed package does not change during the tests, so each lookup's
    outcome (the metadata, or the ValueError of a base config without one) is read once and handed out as copies."""
    from mmengine.config import utils

    original = getattr(utils, "_get_cfg_metainfo", None)
    if original is None:  # another mmengine: nothing to speed up
        yield
        return

    @functools.cache
    def outcome(package_path: str, cfg_path: str) -> tuple[dict | None, ValueError | None]:
        try:
            return original(package_path, cfg_path), None
        except ValueError as error:
            return None, error

    def cached(package_path: str, cfg_path: str) -> dict:
        found, error = outcome(package_path, cfg_path)
        if error is not None:
            raise ValueError(*error.args)
        return copy.deepcopy(found)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils, "_get_cfg_metainfo", cached)
        yield


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
