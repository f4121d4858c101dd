"""Checkpoints laid out like the released MGCA files, built from real architectures."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest
import torch

from benchmark.backbones import ARCHITECTURES


def _lightning_hyperparameter_class() -> type:
    """A class from a package that is not installed (PyTorch Lightning's AttributeDict)."""
    parsing = types.ModuleType("pytorch_lightning.utilities.parsing")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__ = parsing.__name__
    AttributeDict.__qualname__ = "AttributeDict"
    parsing.AttributeDict = AttributeDict
    for parent in ("pytorch_lightning", "pytorch_lightning.utilities"):
        sys.modules[parent] = types.ModuleType(parent)
    sys.modules[parsing.__name__] = parsing
    return AttributeDict


def save_mgca_like_checkpoint(path: Path, encoder_state: dict[str, torch.Tensor], img_encoder: str, legacy: bool = False) -> Path:
    """The Lightning 1.5 layout of MGCA's vit_base.ckpt / resnet_50.ckpt (PROTOCOL.md 12.2).

    ``legacy``: torch's pre-1.6 (non-zip) serialisation, which Lightning 1.5-era tooling could still write.
    """
    attribute_dict = _lightning_hyperparameter_class()
    state = {f"img_encoder_q.model.{key}": value for key, value in encoder_state.items()}
    state |= {
        "img_encoder_q.global_embed.head.0.weight": torch.randn(2048, 8),
        "img_encoder_q.global_embed.head.4.running_mean": torch.zeros(128),
        "text_encoder_q.model.embeddings.word_embeddings.weight": torch.randn(16, 8),
        "text_encoder_q.model.encoder.layer.0.attention.self.query.weight": torch.randn(8, 8),
        "patch_local_atten_layer.in_proj_weight": torch.randn(24, 8),
        "prototype_layer.weight": torch.randn(500, 128),
    }
    checkpoint = {
        "epoch": 20,
        "global_step": 33137,
        "pytorch-lightning_version": "1.5.10",
        "state_dict": state,
        "hyper_parameters": attribute_dict(img_encoder=img_encoder, emb_dim=128, learning_rate=2e-5),
        "hparams_namespace": argparse.Namespace(img_encoder=img_encoder, num_prototypes=500),
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 2e-5, "params": [0, 1]}]}],
        "lr_schedulers": [{"last_epoch": 20}],
        "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(1.5), "best_model_path": "/home/x/epoch=20.ckpt"}},
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    for name in ("pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing"):
        sys.modules.pop(name)  # gone at load time, as on a user's machine
    return path


def encoder_state(arch: str, seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return ARCHITECTURES.get(arch).build().state_dict()


@pytest.fixture(scope="session")
def save_mgca_checkpoint():
    return save_mgca_like_checkpoint


@pytest.fixture(scope="session")
def tiny_states() -> dict[str, dict[str, torch.Tensor]]:
    return {arch: encoder_state(arch) for arch in ("vit_tiny_patch16_224", "resnet18")}


@pytest.fixture(scope="session")
def mgca_release_like(tmp_path_factory) -> dict[str, Path]:
    """Full-size ViT-B/16 and ResNet-50 checkpoints in MGCA's released layout (built once)."""
    folder = tmp_path_factory.mktemp("mgca_release")
    return {
        "vit_base_patch16_224": save_mgca_like_checkpoint(folder / "vit_base.ckpt", encoder_state("vit_base_patch16_224"), "vit_base"),
        "resnet50": save_mgca_like_checkpoint(folder / "resnet_50.ckpt", encoder_state("resnet50"), "resnet_50"),
    }
