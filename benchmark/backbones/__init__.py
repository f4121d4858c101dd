"""Backbone registry: named encoders, safe checkpoint loading and the frozen-feature contract."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.backbones.architectures import Architecture, ArchitectureError
from benchmark.backbones.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    LoadReport,
    UnsafeCheckpointError,
    apply_encoder_weights,
    read_encoder_weights,
    sha256_of_state_dict,
)
from benchmark.backbones.encoder import Backbone, BackboneOutput
from benchmark.backbones.preprocessing import (
    MGCA_PREPROCESSING,
    PREPROCESS_MODES,
    PreprocessMode,
    Preprocessing,
    normalise,
    protocol_preprocessing,
    resolve_preprocessing,
)
from benchmark.backbones.sources import ARCHITECTURES, SOURCES, resolve_architecture
from benchmark.backbones.zoo import BACKBONES, BackboneSpec, CheckpointNotFound, locate_checkpoint

__all__ = [
    "ARCHITECTURES", "BACKBONES", "MGCA_PREPROCESSING", "PREPROCESS_MODES", "SOURCES", "Architecture",
    "ArchitectureError", "Backbone", "BackboneOutput", "BackboneSpec", "CheckpointError", "CheckpointMismatchError",
    "CheckpointNotFound", "LoadReport", "LoadedBackbone", "PreprocessMode", "Preprocessing", "UnsafeCheckpointError",
    "build_backbone", "normalise", "protocol_preprocessing", "resolve_architecture", "resolve_preprocessing",
    "user_backbone_spec",
]


@dataclass
class LoadedBackbone:
    """A frozen backbone with what a run record needs to say about its weights and inputs."""

    spec: BackboneSpec
    model: Backbone
    # Content hash of the encoder tensors that were evaluated: the identity of the weights on the
    # board and in the feature cache, whatever file, container or prefix they came from (two
    # encoders of one MoCo file differ; one encoder saved as .ckpt and .safetensors does not).
    # The checkpoint file's own sha256 is in load_report.
    weights_sha256: str
    load_report: LoadReport | None
    # What every task feeds the encoder (size, channels, range, mean/std; ``normalise``): the
    # architecture's own, or the protocol's under ``--preprocess protocol`` (``resolve_preprocessing``).
    preprocessing: Preprocessing


def user_backbone_spec(name: str, arch: str, prefix: str | None = None, pretraining_data: tuple[str, ...] = ()) -> BackboneSpec:
    """Spec of a checkpoint a user hands in (``--checkpoint PATH --arch ARCH``)."""
    resolve_architecture(arch)  # fail early on an unknown architecture
    return BackboneSpec(
        name=name, arch=arch, weights="checkpoint", prefix=prefix, pretraining_data=pretraining_data,
        description=f"user checkpoint ({arch})",
    )


def build_backbone(
    spec: BackboneSpec | str,
    checkpoint: str | Path | None = None,
    allow_partial: bool = False,
    preprocess: PreprocessMode = "model",
) -> LoadedBackbone:
    """Build the frozen encoder of ``spec`` with its weights (random init or checkpoint); its
    preprocessing is the architecture's own, or the protocol's with ``preprocess="protocol"``."""
    if isinstance(spec, str):
        spec = BACKBONES.get(spec)
    arch = resolve_architecture(spec.arch)
    preprocessing = resolve_preprocessing(arch.preprocessing, preprocess)
    if spec.weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            module = arch.build()
        return LoadedBackbone(spec, arch.wrap(module), sha256_of_state_dict(module.state_dict()), None, preprocessing)
    if spec.checkpoint_file:
        path = locate_checkpoint(spec, checkpoint)
    elif checkpoint:
        path = Path(checkpoint)
    else:
        raise CheckpointNotFound(f"backbone {spec.name!r} needs --checkpoint PATH")
    weights, report = read_encoder_weights(path, arch, prefix=spec.prefix, allow_partial=allow_partial)
    module = arch.build()  # only once the checkpoint describes it
    apply_encoder_weights(module, weights, arch)
    return LoadedBackbone(spec, arch.wrap(module), sha256_of_state_dict(module.state_dict()), report, preprocessing)
