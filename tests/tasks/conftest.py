"""Prepared demo data for the task tests (small images: tiny models, few iterations)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.backbones import BackboneSpec, LoadedBackbone, build_backbone
from benchmark.cli import main as cli_main
from benchmark.data.demo import generate


@pytest.fixture(scope="session")
def segmentation_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo SIIM and RSNA (60 images each) prepared at 32 px: ``<root>/siim``, ``<root>/rsna``."""
    root = tmp_path_factory.mktemp("segmentation-data")
    generate(root / "raw", ["siim", "rsna"], images=60, size=64, seed=0)
    for name in ("siim", "rsna"):
        argv = ["prepare", name, "--raw", str(root / "raw" / name), "--out", str(root / "prepared"),
                "--image-size", "32", "--workers", "1"]
        assert cli_main(argv) == 0
    return root / "prepared"


def random_backbone(arch: str) -> LoadedBackbone:
    """A randomly initialised backbone of any architecture source (``timm:...``, ``xrv:...``)."""
    return build_backbone(BackboneSpec(name="random", arch=arch, weights="random", description="test"))


@pytest.fixture(scope="session")
def convnext() -> LoadedBackbone:
    """timm's own tiny ConvNeXt: a pyramid, ImageNet mean/std."""
    return random_backbone("timm:test_convnext")


@pytest.fixture(scope="session")
def xrv_densenet() -> LoadedBackbone:
    """torchxrayvision's DenseNet-121: a pyramid, 1 channel, [-1024, 1024]."""
    return random_backbone("xrv:densenet121-res224-all")


@pytest.fixture(scope="session")
def xrv_resnet() -> LoadedBackbone:
    """torchxrayvision's ResNet-50: the five ResNet stages, 1 channel, [-1024, 1024]."""
    return random_backbone("xrv:resnet50-res512-all")
