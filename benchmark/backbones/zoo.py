"""Named backbones: an architecture plus where its weights come from.

Named checkpoints are looked up, in order, at the explicit path the user gives, in the folder
named by ``$MGCA_BENCH_CHECKPOINTS``, then in ``./checkpoints/``. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from benchmark.registry import Registry

CHECKPOINT_DIR_ENV = "MGCA_BENCH_CHECKPOINTS"
MGCA_RELEASE = "https://drive.google.com/drive/folders/15_mP9Lqq2H15R53qlKn3l_xzGVzi9jX9"
MGCA_PAPER = "https://arxiv.org/abs/2210.06044"


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    # An architecture name (sources/): a short name such as "vit_base_patch16_224", which also fixes the
    # preprocessing (MGCA's), or "<source>:<name>" ("timm:convnext_tiny", "hf:/models/rad-dino", ...).
    arch: str
    weights: Literal["random", "checkpoint"]
    description: str
    seed: int = 0  # random initialisation only
    checkpoint_file: str = ""  # named checkpoints only
    prefix: str | None = None  # None: detect automatically
    published_at: str = ""
    paper: str = ""
    pretraining_data: tuple[str, ...] = ()
    # Checkpoints built locally (the demo MGCA): the command that makes the file when it is missing.
    build_command: str = ""
    # Image-text models whose text tower needs a local text model folder besides the checkpoint (the
    # released MGCA files: Bio_ClinicalBERT's tokenizer and config), looked for like checkpoint_file.
    text_model: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def _add(spec: BackboneSpec) -> None:
    BACKBONES.add(spec.name, spec)


# Pretraining sources are named as boards name test-set sources (protocol.json test_set_sources). "mimic-cxr" is
# MIMIC-CXR's official train and validate splits, the standard pretraining set; a model whose training or
# checkpoint selection read its official test split (the retrieval task's test set) declares this one too.
MIMIC_CXR_TEST = "mimic-cxr-test"
# MGCA's released checkpoints were pretrained on MIMIC-CXR's train split but validated, stopped early
# and kept on the official validate and test splits merged (PROTOCOL.md 11.1, 11.7).
MGCA_RELEASE_PRETRAINING = ("mimic-cxr", MIMIC_CXR_TEST)

_add(BackboneSpec(
    name="mgca_vit", arch="vit_base_patch16_224", weights="checkpoint", checkpoint_file="vit_base.ckpt", text_model="Bio_ClinicalBERT",
    prefix="img_encoder_q.model.", published_at=MGCA_RELEASE, paper=MGCA_PAPER, pretraining_data=MGCA_RELEASE_PRETRAINING,
    description="MGCA ViT-B/16 image encoder, released checkpoint vit_base.ckpt",
))
_add(BackboneSpec(
    name="mgca_resnet50", arch="resnet50", weights="checkpoint", checkpoint_file="resnet_50.ckpt", text_model="Bio_ClinicalBERT",
    prefix="img_encoder_q.model.", published_at=MGCA_RELEASE, paper=MGCA_PAPER, pretraining_data=MGCA_RELEASE_PRETRAINING,
    description="MGCA ResNet-50 image encoder, released checkpoint resnet_50.ckpt",
))
_add(BackboneSpec(
    name="random_vit", arch="vit_base_patch16_224", weights="random", seed=0,
    description="ViT-B/16, random initialisation (timm), seed 0",
))
_add(BackboneSpec(
    name="random_resnet50", arch="resnet50", weights="random", seed=0,
    description="ResNet-50, random initialisation (torchvision), seed 0",
))
_add(BackboneSpec(
    name="mgca_demo", arch="resnet18", weights="checkpoint", checkpoint_file="mgca_demo.ckpt",
    prefix="img_encoder_q.model.", paper=MGCA_PAPER, pretraining_data=("mimic-cxr-demo",), tags=("tiny", "demo"),
    build_command="make checkpoints/mgca_demo.ckpt",
    description="MGCA ResNet-18 pretrained on the synthetic demo MIMIC corpus (pretrain/configs/demo.toml): demo only",
))
_add(BackboneSpec(
    name="random_vit_tiny", arch="vit_tiny_patch16_224", weights="random", seed=0, tags=("tiny",),
    description="ViT-Tiny/16, random initialisation, seed 0: for tests and the demo",
))
_add(BackboneSpec(
    name="random_resnet18", arch="resnet18", weights="random", seed=0, tags=("tiny",),
    description="ResNet-18, random initialisation, seed 0: for tests and the demo",
))


class CheckpointNotFound(FileNotFoundError):
    pass


def locate_checkpoint(spec: BackboneSpec, explicit: str | Path | None = None) -> Path:
    """Where the checkpoint of a named backbone lies; the error says where to put it."""
    candidates = [Path(explicit)] if explicit else []
    if os.environ.get(CHECKPOINT_DIR_ENV):
        candidates.append(Path(os.environ[CHECKPOINT_DIR_ENV]) / spec.checkpoint_file)
    candidates.append(Path("checkpoints") / spec.checkpoint_file)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    obtain = f"Build it with `{spec.build_command}`" if spec.build_command else f"Download it from {spec.published_at}"
    raise CheckpointNotFound(
        f"backbone {spec.name!r} needs {spec.checkpoint_file}; looked at "
        f"{', '.join(map(str, candidates))}. {obtain} and put it in "
        f"./checkpoints/, or in the folder named by ${CHECKPOINT_DIR_ENV}, or pass --checkpoint PATH."
    )
