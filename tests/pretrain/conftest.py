"""A tiny demo MIMIC corpus, prepared once per session, and a tiny pretraining config."""

from __future__ import annotations

from pathlib import Path

import pytest

import benchmark.data.datasets  # noqa: F401 - registers the preparers
from benchmark.data.demo import generate
from benchmark.data.registry import DATASETS, PrepareOptions
from pretrain.config import PretrainConfig, load_config

TINY_OVERRIDES = (
    "arch=vit_tiny_patch16_224",  # the ViT path (patch attention) is the one with more to test; the demo is a ResNet-18
    "text_layers=1", "text_hidden_size=32", "text_heads=2", "text_intermediate_size=64", "vocab_size=300",
    "projection_hidden=64", "emb_dim=16", "num_prototypes=8", "batch_size=16", "epochs=2", "lr=1e-3",
    "num_workers=0", "progress=false", "max_words=48",
)


@pytest.fixture(scope="session")
def demo_mimic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mimic")
    generate(root / "raw", datasets=["mimic"], images=80, size=64, seed=0)
    DATASETS.get("mimic").prepare(PrepareOptions(raw=root / "raw" / "mimic", out=root / "prepared" / "mimic",
                                                 image_size=64, workers=1))
    return root / "prepared" / "mimic"


@pytest.fixture(scope="session")
def tiny_overrides() -> tuple[str, ...]:
    return TINY_OVERRIDES


@pytest.fixture
def tiny_config(demo_mimic: Path, tmp_path: Path):
    """``tiny_config(*overrides)``: the demo config shrunk to seconds (ViT-Tiny on 48-pixel crops,
    a one-layer BERT) on the tiny corpus, writing to ``tmp_path/run`` unless ``out=`` says otherwise."""

    def make(*overrides: str) -> PretrainConfig:
        return load_config("demo", [f"data={demo_mimic}", f"out={tmp_path / 'run'}", "export=", *TINY_OVERRIDES, *overrides])

    return make
