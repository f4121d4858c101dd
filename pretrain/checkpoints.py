"""Run checkpoints (resume) and the exported checkpoint (what the backbone registry loads).

A checkpoint is a PyTorch Lightning-style dict, as MGCA's released files are: ``state_dict``
(the model, image encoder under ``img_encoder_q.model.``), ``hyper_parameters`` (the resolved
config and run facts), ``epoch``, ``global_step``; a run's ``last.ckpt`` adds ``optimizer_states``,
``lr_schedulers``, ``grad_scaler`` and the early-stopping state. Everything in it is plain data,
so it is read with torch's ``weights_only`` unpickler: nothing in a checkpoint runs.

The export is ``best.ckpt`` without the optimizer state, plus ``<name>.safetensors`` holding the
image encoder alone under its native (timm / torchvision) names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

IMAGE_ENCODER_PREFIX = "img_encoder_q.model."
RESUME_KEYS = ("optimizer_states", "lr_schedulers", "grad_scaler", "early_stopping")


def save_atomic(content: dict[str, Any], path: Path) -> None:
    """Write ``content`` to ``path`` through a temporary file, so an interrupted save leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(content, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by this package, read without executing anything."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is one clear error
        raise ValueError(f"{path}: not a readable pretraining checkpoint ({type(error).__name__}: {error})") from None


def image_encoder_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image encoder's tensors under their native names (``img_encoder_q.model.`` stripped)."""
    return {key[len(IMAGE_ENCODER_PREFIX):]: value for key, value in state_dict.items() if key.startswith(IMAGE_ENCODER_PREFIX)}


def export_checkpoint(source: Path, target: Path) -> tuple[Path, Path]:
    """``target`` (.ckpt, released MGCA layout, no optimizer state) and ``target`` with suffix
    ``.safetensors`` (the image encoder alone) from the run checkpoint ``source``."""
    checkpoint = {key: value for key, value in load_checkpoint(source).items() if key not in RESUME_KEYS}
    save_atomic(checkpoint, target)
    tensors = target.with_suffix(".safetensors")
    encoder = {key: value.contiguous() for key, value in image_encoder_state(checkpoint["state_dict"]).items()}
    partial = tensors.with_name(tensors.name + ".partial")
    save_file(encoder, str(partial), metadata={"arch": checkpoint["hyper_parameters"]["arch"], "source": str(source)})
    os.replace(partial, tensors)
    return target, tensors
