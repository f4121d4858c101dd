"""What an encoder architecture is: how to build it, how to read features from it, what it eats.

An architecture builds a randomly initialised encoder without its classifier (nothing is ever
downloaded), wraps it into the feature contract (``encoder.py``) and declares the preprocessing
its inputs need (``preprocessing.py``). Weights come separately (``checkpoint.py``). Names are
resolved by ``sources/``: one module per library the field publishes models in, plus the short
names of MGCA's own architectures.

Families say what a task head can expect: ``vit`` is a plain transformer (one feature map at
the patch stride), ``resnet`` a ResNet trunk (maps of stages 2-4, strides 8, 16, 32),
``pyramid`` any other multi-scale backbone (Swin, ConvNeXt, DenseNet, EfficientNet: the maps at
strides 8, 16, 32).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from benchmark.backbones.preprocessing import Preprocessing
from benchmark.registry import RegistryError

if TYPE_CHECKING:
    from benchmark.backbones.encoder import Backbone

Family = Literal["vit", "resnet", "pyramid"]


def _physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class ArchitectureError(RegistryError):
    """An architecture name cannot be resolved; the message names the file or name and the fix."""


@dataclass(frozen=True)
class FeatureShapes:
    """Output sizes of the feature contract, measured on the meta device."""

    global_dim: int
    token_dim: int
    feature_map_dims: tuple[int, ...]
    feature_map_strides: tuple[int, ...]


@dataclass(frozen=True)
class Architecture:
    name: str  # as the user names it: "resnet50", "timm:convnext_tiny", "hf:/models/rad-dino", ...
    source: str  # key of SOURCES ("timm", "torchvision", "hf", "open_clip", "xrv"); "mgca" for short names
    family: Family
    build_module: Callable[[], nn.Module]
    backbone: Callable[[Architecture, nn.Module], Backbone]  # the feature-contract wrapper (encoder.py)
    preprocessing: Preprocessing
    # Keys of a classifier or pooler that foreign checkpoints may carry; dropped on load and reported.
    classifier_prefixes: tuple[str, ...] = ()
    # The reference's linear probe feeds this architecture at another size (B20: a ResNet-50 at 299):
    # applied where the MGCA protocol's rules are in force (MGCA's short names; any source under
    # --preprocess protocol), see tasks/classification/adapter.py.
    linear_probe_input_size: int | None = None
    # {checkpoint key: module key} of a freshly built module, for libraries whose files name the
    # weights otherwise than their modules do (transformers >= 5 renames on load); None: the same.
    checkpoint_names: Callable[[nn.Module], dict[str, str]] | None = None

    def build(self) -> nn.Module:
        """A fresh module; one whose tensors would not fit this machine's memory is refused before it is allocated."""
        if torch.empty(0).device.type != "meta":  # under torch.device("meta") nothing is allocated
            needed, available = self.tensor_bytes, _physical_memory()
            if needed > available:
                raise ArchitectureError(f"{self.name}: its tensors take {needed / 2**30:.1f} GiB, more than this machine's "
                                        f"{available / 2**30:.1f} GiB of memory; check the sizes in its config")
        return self.build_module()

    @cached_property
    def tensor_bytes(self) -> int:
        """Bytes of the module's parameters and buffers (non-persistent ones too), counted on the meta device."""
        with torch.device("meta"):
            module = self.build_module()
        return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))

    def wrap(self, module: nn.Module) -> Backbone:
        return self.backbone(self, module)

    @cached_property
    def shapes(self) -> FeatureShapes:
        """Global, token and feature-map sizes, from one forward pass on the meta device (no compute)."""
        size, channels = self.preprocessing.input_size, self.preprocessing.channels
        with torch.device("meta"), torch.no_grad():
            out = self.wrap(self.build())(torch.empty(1, channels, size, size))
        return FeatureShapes(
            global_dim=out.global_features.shape[1],
            token_dim=out.token_features.shape[2],
            feature_map_dims=tuple(m.shape[1] for m in out.feature_maps),
            feature_map_strides=tuple(size // m.shape[-1] for m in out.feature_maps),
        )

    @property
    def global_dim(self) -> int:
        return self.shapes.global_dim

    @property
    def token_dim(self) -> int:
        return self.shapes.token_dim

    @property
    def feature_map_dims(self) -> tuple[int, ...]:
        return self.shapes.feature_map_dims

    @property
    def feature_map_strides(self) -> tuple[int, ...]:
        return self.shapes.feature_map_strides

    @cached_property
    def _checkpoint_layout(self) -> tuple[dict[str, torch.Size], dict[str, str]]:
        with torch.device("meta"):
            model = self.build()
        state = model.state_dict()
        names = self.checkpoint_names(model) if self.checkpoint_names else {key: key for key in state}
        return {key: state[module_key].shape for key, module_key in names.items()}, names

    @property
    def state_shapes(self) -> dict[str, torch.Size]:
        """Every key (parameters and persistent buffers) as checkpoints name it, with its shape; built on the meta device."""
        return self._checkpoint_layout[0]

    @property
    def module_keys(self) -> dict[str, str]:
        """Checkpoint key -> key in the built module (the identity except for renaming libraries)."""
        return self._checkpoint_layout[1]

    @staticmethod
    def is_optional_key(key: str) -> bool:
        """BatchNorm step counters: loaded when present, never required (they do not affect outputs)."""
        return key.endswith("num_batches_tracked")
