"""Text towers: the text side of an image-text model, beside its frozen image encoder.

Vision-language tasks (zero-shot classification, image-text retrieval) compare images with texts
in the space the model was trained to align them in. A :class:`TextTower` gives

* ``text_features(texts) -> (B, D)``: texts through the model's own tokenizer, text encoder and
  text projection;
* ``image_embeddings(images) -> (B, D)``: preprocessed images (the backbone's
  ``preprocessing``) through the backbone's image encoder and the image projection the model was
  trained with;

both L2-normalised, so a dot product is the cosine similarity the model was trained on.

:func:`load_text_tower` builds the tower of a loaded backbone from the same checkpoint, or returns
None when the backbone has none (an image-only source, random weights, a checkpoint without text
weights): a task skips such a backbone with ``if tower is None``. A task that needs a tower
declares :func:`text_tower_requirement` as its ``requires``: the same checks, without building
the tower's weights (``load_text_tower(..., weights=False)``), so planning a grid does not load
every backbone's text encoder once more than its cells do. One module per source that can
carry a text tower registers a builder in :data:`TEXT_TOWERS` under the architecture's source
name: ``mgca`` (MGCA checkpoints, ``mgca.py``), ``open_clip`` and ``hf`` (CLIP, SigLIP).

Loading is as safe and as honest as the image side's: checkpoints are read by the same safe
loader, the tower's weights are matched key by key and reported (:class:`LoadReport`), the
shapes are checked on the meta device before anything is allocated, and an incomplete tower is
an error unless partial loads are allowed. Nothing is downloaded: a tokenizer or text model that
is not in a local file or folder is an error that names what to pass.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones.checkpoint import CheckpointError, LoadReport
from benchmark.registry import Registry

if TYPE_CHECKING:
    from benchmark.backbones import LoadedBackbone
    from benchmark.backbones.encoder import Backbone

__all__ = ["TEXT_TOWERS", "TOKENIZER_FILES", "TextModelMissing", "TextTower", "TextTowerError", "load_text_tower",
           "require_tokenizer_files", "text_tower_requirement"]

# Whether the builder being run materialises the tower's weights (load_text_tower's ``weights``): read by
# ``weights.load_parts``, the one place every builder builds its modules, so no builder needs a flag of its own.
MATERIALISE: ContextVar[bool] = ContextVar("materialise_text_tower", default=True)


class TextTowerError(CheckpointError):
    """A backbone's text tower cannot be used; the message names the file and the fix."""


class TextModelMissing(TextTowerError):
    """The tower needs a local text model folder (tokenizer, config) that was not given or found."""


class TextTower(nn.Module):
    """A frozen text tower; subclasses give the unnormalised embeddings (:meth:`encode_texts`,
    :meth:`project_images`), this class the contract around them.

    ``image_encoder`` is the backbone's own module (not a copy): image embeddings are its global
    features through the model's image projection.
    """

    def __init__(self, image_encoder: Backbone, embedding_dim: int, tokenizer_source: str, load_report: LoadReport,
                 notes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.embedding_dim = embedding_dim
        self.tokenizer_source = tokenizer_source  # where the tokenizer was read from, for the run record
        self.load_report = load_report  # the text tower's weights: matched, missing, unexpected, ignored
        self.notes = notes  # how the tower reads text where it differs from the library's default

    def freeze(self) -> TextTower:
        """Frozen and in eval mode: called by the builders once the weights are in."""
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> TextTower:  # noqa: ARG002 - frozen: always eval
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def project_images(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, D) unit-norm embeddings of ``texts`` in the joint space; the same text gives the same row."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise TypeError("text_features takes a list of strings")
        if not texts:
            raise ValueError("text_features needs at least one text")
        return F.normalize(self.encode_texts(list(texts)).float(), dim=-1)

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D) unit-norm embeddings of preprocessed ``images`` (B, C, H, W) in the joint space."""
        return F.normalize(self.project_images(images).float(), dim=-1)


# A tokenizer's own files, one of which a local folder must hold: transformers >= 5 builds an empty
# tokenizer (its special tokens alone) from a folder that has only config.json, rather than failing.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


def require_tokenizer_files(folder: Path) -> None:
    """Refuse a folder without tokenizer files before transformers reads it (see :data:`TOKENIZER_FILES`)."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise TextModelMissing(f"{folder}: no tokenizer files there (looked for {', '.join(TOKENIZER_FILES)}); save the "
                               f"model's tokenizer beside it (AutoTokenizer.from_pretrained(...).save_pretrained('{folder}'))")


# (image encoder, checkpoint path, local text model folder or None, allow_partial) -> tower or None
TextTowerBuilder = Callable[["Backbone", Path, "Path | None", bool], "TextTower | None"]
TEXT_TOWERS: Registry[TextTowerBuilder] = Registry("text tower source")


def text_model_candidates(name: str, explicit: str | Path | None) -> list[Path]:
    """Where a named backbone's text model folder is looked for: the explicit path, then
    ``$MGCA_BENCH_CHECKPOINTS/<name>``, then ``./checkpoints/<name>`` (as checkpoint files are)."""
    from benchmark.backbones.zoo import CHECKPOINT_DIR_ENV

    candidates = [Path(explicit)] if explicit else []
    if name:
        if os.environ.get(CHECKPOINT_DIR_ENV):
            candidates.append(Path(os.environ[CHECKPOINT_DIR_ENV]) / name)
        candidates.append(Path("checkpoints") / name)
    return candidates


def load_text_tower(loaded: LoadedBackbone, text_model: str | Path | None = None,
                    allow_partial: bool = False, weights: bool = True) -> TextTower | None:
    """The text tower of ``loaded`` from the checkpoint its image encoder came from, or None when it has none.

    ``text_model``: a local folder the tower needs besides the checkpoint (a released MGCA
    checkpoint's Bio_ClinicalBERT, BiomedCLIP's PubMedBERT: tokenizer and config); a named
    backbone's ``spec.text_model`` is looked for like its checkpoint file when none is given.
    ``weights=False`` checks as much as a load does (config, tokenizer, every tensor's name and shape
    against the checkpoint, the load report) but leaves the tower's modules on the meta device:
    nothing is allocated, initialised or copied. Such a tower answers whether a backbone has a
    usable one (:func:`text_tower_requirement`); it cannot encode anything.
    """
    arch = loaded.model.arch
    if loaded.load_report is None or arch.source not in TEXT_TOWERS:
        return None  # random weights, or a source of image-only models
    candidates = text_model_candidates(loaded.spec.text_model, text_model)
    folder = next((path for path in candidates if path.is_dir()), None)
    if text_model and folder is None:
        raise TextModelMissing(f"text model folder {text_model}: no such folder")
    materialise = MATERIALISE.set(weights)
    try:
        return TEXT_TOWERS.get(arch.source)(loaded.model, Path(loaded.load_report.source), folder, allow_partial)
    except TextModelMissing as error:
        looked = f" (looked at {', '.join(map(str, candidates))})" if candidates else ""
        raise TextModelMissing(f"{error}{looked}") from None
    finally:
        MATERIALISE.reset(materialise)


def text_tower_requirement(loaded: LoadedBackbone) -> str | None:
    """Why ``loaded`` has no usable text tower (none, or one that cannot be loaded), or None when it has one:
    the ``requires`` of a task that needs one (``tasks.registry.TaskInfo``), checked without building the
    tower's weights (``load_text_tower(loaded, weights=False)``); the cell then loads it once."""
    try:
        tower = load_text_tower(loaded, weights=False)
    except CheckpointError as error:  # a damaged or incomplete tower, a missing text model folder
        return f"its text tower cannot be loaded: {str(error).splitlines()[0]}"
    return None if tower is not None else "no text tower (an image-only checkpoint or source, or random weights)"


for _module in ("mgca", "open_clip", "hf"):
    importlib.import_module(f"{__name__}.{_module}")
