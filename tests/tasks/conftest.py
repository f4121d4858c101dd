"""Prepared demo data for the task tests (small images: tiny models, few iterations)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
