"""A frozen suite encoder as the backbone of an OpenMMLab model (mmdet's detector, mmseg's segmentor).

:class:`FrozenEncoder` holds a :class:`~benchmark.backbones.LoadedBackbone` whose weights came
from the suite's safe loader (an ``init_cfg`` of type ``Pretrained`` is refused: mmengine would
``torch.load`` a file itself). The encoder is frozen (no gradient), always in eval mode (BatchNorm
statistics stay fixed, defect B6) and deliberately *not* a submodule: it is not in the model's
``state_dict`` (checkpoints hold the head only and never reload encoder weights; the encoder is
identified by its ``weights_sha256``), not in ``parameters()`` (the optimiser, DDP and
``init_weights`` never see it), and ``model.train()`` cannot switch it out of eval mode. It still
follows the model's device and dtype (``.to()``, ``.cuda()``, ``.float()``).

Each task subclasses it with what its head reads (detection: a feature pyramid; segmentation: the
decoder's inputs) and registers the subclass in its own mm registry. This module imports
mmengine, so only a task's model module imports it (``benchmark.backbones`` does not).
"""

from __future__ import annotations

from typing import Any

from mmengine.model import BaseModule

from benchmark.backbones import LoadedBackbone


class FrozenEncoder(BaseModule):
    """An mm backbone over a frozen suite encoder; see the module docstring."""

    def __init__(self, encoder: LoadedBackbone | None = None, init_cfg: Any = None) -> None:
        configs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
        if any(isinstance(item, dict) and item.get("type") == "Pretrained" for item in configs):
            raise ValueError(f"{type(self).__name__} takes its weights from the suite's backbone loader only; "
                             "remove init_cfg=Pretrained")
        super().__init__(init_cfg)
        self.loaded: LoadedBackbone | None = None  # a plain attribute: see the module docstring
        if encoder is not None:
            self.attach(encoder)

    def attach(self, encoder: LoadedBackbone) -> None:
        """Run ``encoder`` on image inputs, frozen; the model's next ``.to()`` moves it too."""
        self.loaded = encoder
        encoder.model.requires_grad_(False)
        encoder.model.eval()

    @property
    def encoder(self) -> LoadedBackbone:
        if self.loaded is None:
            raise RuntimeError(f"{type(self).__name__} got images but has no encoder attached "
                               "(the cached mode reads stored features instead)")
        return self.loaded

    def _apply(self, fn: Any, recurse: bool = True) -> FrozenEncoder:
        super()._apply(fn, recurse)
        if self.loaded is not None:
            self.loaded.model._apply(fn)
        return self
