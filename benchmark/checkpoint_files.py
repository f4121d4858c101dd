"""Which file of a checkpoint path holds its weights, decided without importing torch.

``check-checkpoint`` refuses a missing, unreadable or unknown file at once with this module
alone, and the loaders (``benchmark/backbones/checkpoint.py``) start from the same answer. A
path that is not a regular file (a FIFO, ``/dev/zero``) is refused before anything reads it:
reading would block or never end.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin", ".tar")
# The weights of a model folder, looked for in this order: transformers' save_pretrained (sharded
# or single, safetensors first), then open_clip's Hugging Face layout.
FOLDER_WEIGHTS = (
    "model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin",
    "open_clip_model.safetensors", "open_clip_pytorch_model.bin",
)
_SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and what to do."""


def folder_weights(folder: Path) -> Path:
    """The weight file (or shard index) of a model folder; the error lists what was looked for."""
    for name in FOLDER_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(
        f"{folder}: no weights in this folder (looked for {', '.join(FOLDER_WEIGHTS)}); "
        "save the model with save_pretrained(), or pass the weight file itself"
    )


def weights_file(path: str | Path) -> Path:
    """The file holding the weights of ``path`` (itself, or a model folder's weight file or shard
    index); CheckpointError when it is missing, not a regular file or of no known format."""
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None
    if stat.S_ISDIR(status.st_mode):
        return folder_weights(path)
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _SPECIAL_FILES if test(status.st_mode)), "not a regular file")
        raise CheckpointError(f"{path}: is {kind}, not a checkpoint file; pass a weight file or a model folder")
    if status.st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), truncated or not a checkpoint")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{path}: checkpoint file not readable (permission denied)")
    if path.name.endswith(".index.json") or path.suffix == ".safetensors":
        return path
    if path.suffix not in PICKLE_SUFFIXES and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: unknown checkpoint format; expected .safetensors, a shard index *.index.json, "
                              f"a model folder, or one of {PICKLE_SUFFIXES}")
    return path
