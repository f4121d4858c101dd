"""Run checkpoints (resume) and the exported checkpoint (what the backbone registry loads).

A checkpoint is a PyTorch Lightning-style dict, as MGCA's released files are: ``state_dict``
(the model, image encoder under ``img_encoder_q.model.``), ``hyper_parameters`` (the resolved
config and run facts), ``epoch``, ``global_step``; a run's ``last.ckpt`` adds ``optimizer_states``,
``lr_schedulers``, ``grad_scaler`` and the early-stopping state. Everything in it is plain data,
so it is read with torch's ``weights_only`` unpickler: nothing in a checkpoint runs.

The export of a run's ``best.ckpt`` is ``pretrain/export.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from benchmark.backbones.safe_pickle import CheckpointError, reason
from benchmark.files import write_through

RESUME_KEYS = ("optimizer_states", "lr_schedulers", "grad_scaler", "early_stopping")
# The reference's --img_encoder names (mgca_module.py L415): "vit_base" (vits.py create_vit takes
# base / large), "resnet_50" (cnn_backbones.resnet_18/34/50). Its loaders build the architecture
# from this hyper-parameter; a name it lacks ("vit_tiny") makes them fail rather than build another.
_REFERENCE_IMG_ENCODER = ((re.compile(r"vit_(\w+?)_patch16_224"), "vit_{}"), (re.compile(r"resnet(\d+)"), "resnet_{}"))


def reference_img_encoder(arch: str) -> str:
    """``img_encoder`` as the reference writes it for the backbone-registry short name ``arch``."""
    for pattern, template in _REFERENCE_IMG_ENCODER:
        match = pattern.fullmatch(arch)
        if match:
            return template.format(match.group(1))
    return arch


def save_atomic(content: dict[str, Any], path: Path) -> None:
    """Write ``content`` to ``path`` through a temporary file, so an interrupted save leaves the old one."""
    write_through(path, lambda temp: torch.save(content, temp))


def load_checkpoint(path: Path, required: tuple[str, ...] = ("state_dict", "hyper_parameters")) -> dict[str, Any]:
    """A checkpoint written by this package, read without executing anything (torch's
    ``weights_only`` unpickler: plain data only). The error never repeats torch's advice to load
    the file with ``weights_only=False``, which would run whatever code it holds. ``required``: the
    keys it must hold (a run's ``last.ckpt`` also holds the optimizer and early-stopping state)."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is one clear error
        raise CheckpointError(f"{path}: not a readable pretraining checkpoint (truncated, corrupt or not written by "
                              f"python -m pretrain: {type(error).__name__}: {reason(error)})") from None
    missing = [key for key in required if not isinstance(content, dict) or key not in content]
    if missing or not isinstance(content["hyper_parameters"], dict) or "config" not in content["hyper_parameters"]:
        raise CheckpointError(f"{path}: not a {'run' if len(required) > 2 else 'pretraining'} checkpoint of python -m "
                              f"pretrain (it lacks {', '.join(missing) or 'hyper_parameters.config'})")
    return content
