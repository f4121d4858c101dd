"""The segmentation protocol as data: mmengine configs in ``configs/``, resolved for one cell here.

``configs/unet.py`` and ``configs/setr.py`` (both on ``configs/base.py``) hold the reference's
recipe; ``configs/hyperparameters.py`` the learning rate and batch size per dataset and
fraction. :func:`load_config` merges them for one (head, dataset, fraction) and applies
``key=value`` overrides last; the result is written into the run record.

Task version changelog (bump on any change that can move a number):
  1: first version: frozen encoder, U-Net (ResNet) or SETR (ViT) decoder, 10·focal − log(Dice),
     AdamW lr 5e-4 wd 0.05, batch 8 (SIIM) / 16 (RSNA), ≤ 50 epochs, early stopping on the
     validation loss (patience 10), lowest-validation-loss epoch tested; Dice per image over
     the test set.
  2: early stopping counts a tie (a validation loss equal to the best) as no improvement, as the
     reference's Lightning ``EarlyStopping`` does; mmengine's hook reset the count on a tie.
"""

from __future__ import annotations

import runpy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.costs import TaskCost, measured_head_cost

if TYPE_CHECKING:  # importing the task package registers it without importing mmengine
    from mmengine.config import Config

    from benchmark.backbones import LoadedBackbone

TASK_VERSION = 2
CONFIG_DIR = Path(__file__).parent / "configs"
HEAD_CONFIGS = {"unet": "unet.py", "setr": "setr.py"}
# Input side must be a multiple of this: the U-Net upsamples stride-32 stages five times, SETR a
# stride-16 token grid four times, back to the input's size.
HEAD_STRIDE = {"unet": 32, "setr": 16}
HYPERPARAMETERS_FILE = CONFIG_DIR / "hyperparameters.py"

# paper: augmented images through the frozen encoder at every step (the reference).
# cached: encoder outputs of un-augmented images computed once; the decoder trains on them.
MODES = ("paper", "cached")
DEFAULT_MODE = "paper"  # the measured decision and its numbers: adapter.py's docstring, DEVIATIONS.md


# The board's override vocabulary (tasks.registry) -> the config keys each sets.
BOARD_OVERRIDES: dict[str, tuple[str, ...]] = {
    "max_epochs": ("train_cfg.max_epochs",),
    "batch_size": ("train_dataloader.batch_size",),
    "eval_batch_size": ("val_dataloader.batch_size",),
    "encode_batch_size": ("encode_batch_size",),
    "lr": ("optim_wrapper.optimizer.lr",),
}


def _recipe_cost() -> TaskCost:
    """What one cell costs, from the configs themselves: their epoch bound (``configs/base.py``) and
    smallest batch (``configs/hyperparameters.py``). Both files are plain literals, read here as the
    Python they are, so that registering the task imports no mmengine (a test reads them back through
    mmengine's ``Config``). The decoder's cost is measured (benchmark/device_costs/); maps are cached
    as float16 (``features.py``)."""
    base = runpy.run_path(str(CONFIG_DIR / "base.py"))
    table = runpy.run_path(str(HYPERPARAMETERS_FILE))["hyperparameters"]
    return TaskCost(batch_size=min(row["batch_size"] for rows in table.values() for row in rows.values()),
                    max_epochs=base["train_cfg"]["max_epochs"], head_cost=measured_head_cost("segmentation"), features="maps", cache_dtype_bytes=2)


COST = _recipe_cost()


class ConfigError(ValueError):
    """A head, dataset, fraction or override the configs do not provide."""


def config_options(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A board's overrides as config changes: ``{"max_epochs": 3}`` -> ``{"train_cfg.max_epochs": 3}``."""
    unknown = sorted(set(overrides) - set(BOARD_OVERRIDES))
    if unknown:
        raise ConfigError(f"board override(s) {unknown} unknown to segmentation; it accepts {sorted(BOARD_OVERRIDES)}")
    return {key: value for name, value in overrides.items() for key in BOARD_OVERRIDES[name]}


def parse_overrides(options: list[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` → ``{"a.b": 1, "c": [1, 2]}`` with mmengine's ``--cfg-options`` parsing."""
    from mmengine.config import DictAction

    if not options:
        return {}
    parsed: dict[str, Any] = {}
    for option in options:
        key, equals, value = option.partition("=")
        if not equals or not key:
            raise ConfigError(f"override {option!r} is not key=value")
        parsed[key] = DictAction._parse_iterable(value)  # numbers, booleans, lists and tuples as mmengine reads them
    return parsed


def head_config(head: str) -> Config:
    """The head's config file (on ``configs/base.py``), before any dataset's hyperparameters or override."""
    from mmengine.config import Config

    if head not in HEAD_CONFIGS:
        raise ConfigError(f"unknown segmentation head {head!r}; one of {sorted(HEAD_CONFIGS)}")
    return Config.fromfile(CONFIG_DIR / HEAD_CONFIGS[head])


def apply_overrides(cfg: Config, head: str, overrides: Mapping[str, Any] | None) -> Config:
    """``cfg`` with ``key=value`` ``overrides`` merged in, last; a key naming no top-level setting is refused."""
    if overrides:
        unknown = [key for key in overrides if key.split(".")[0] not in cfg]
        if unknown:
            raise ConfigError(f"override(s) {unknown} name no setting of the {head} config; top-level keys: {sorted(cfg.keys())}")
        cfg.merge_from_dict(dict(overrides))
    return cfg


def load_config(head: str, dataset: str, fraction: int, overrides: Mapping[str, Any] | None = None) -> Config:
    """The config of one cell: the head's file, the (dataset, fraction) hyperparameters, the overrides."""
    from mmengine.config import Config

    cfg = head_config(head)
    table = Config.fromfile(HYPERPARAMETERS_FILE).hyperparameters
    if dataset not in table or str(fraction) not in table[dataset]:
        known = {name: sorted(rows, key=int) for name, rows in table.items()}
        raise ConfigError(f"{HYPERPARAMETERS_FILE}: no hyperparameters for {dataset} at {fraction}%; it lists {known}")
    chosen = table[dataset][str(fraction)]
    cfg.merge_from_dict({
        "head": head, "dataset": dataset, "fraction": fraction,
        "optim_wrapper.optimizer.lr": chosen.lr,
        "train_dataloader.batch_size": chosen.batch_size, "val_dataloader.batch_size": chosen.batch_size,
    })
    return apply_overrides(cfg, head, overrides)


@dataclass(frozen=True)
class Geometry:
    cache_size: int  # side of the prepared image cache
    input_size: int  # side the encoder and decoder see; predictions and targets have this size
    notes: tuple[str, ...]


def resolve_geometry(configured: int, cache_size: int, head: str) -> Geometry:
    """The configured input side (the reference's 224), or the cache side when that is smaller,
    rounded down to a multiple of the head's stride so that the output has the input's size."""
    stride = HEAD_STRIDE[head]
    size, notes = configured, []
    if cache_size < configured:
        size = cache_size
        notes.append(f"prepared images are {cache_size} px: input {cache_size} instead of {configured}")
    if size % stride:
        rounded = size - size % stride
        notes.append(f"input {size} rounded down to {rounded}, a multiple of the {head} head's stride {stride}")
        size = rounded
    if size < stride:
        raise ConfigError(f"prepared images of {cache_size} px are too small for the {head} head (stride {stride})")
    return Geometry(cache_size, size, tuple(notes))


def encoder_input_size(backbone: LoadedBackbone, cache_size: int, head: str, overrides: Mapping[str, Any]) -> int:
    """The side a segmentation cell of ``head`` feeds ``backbone``'s encoder on images prepared at ``cache_size`` px
    (the task's ``encoder_input``: ``run --dry-run`` times the encoder there). ``run_cell``'s own steps: the configured
    input size of the head's config under the board's ``overrides`` (the (dataset, fraction) hyperparameters set
    learning rate and batch size only), :func:`resolve_geometry` at the head's stride, then
    :func:`benchmark.backbones.dense.encoder_side` (a fixed-size model is fed its own size)."""
    from benchmark.backbones.dense import encoder_side

    configured = apply_overrides(head_config(head), head, config_options(overrides)).input_size
    return encoder_side(backbone.preprocessing, resolve_geometry(configured, cache_size, head).input_size)


def deviations(cfg: Config, geometry: Geometry, mode: str, n_train: int, batch_size: int) -> list[str]:
    """Where this run departs from the reference code, in words (written into its config)."""
    notes = list(geometry.notes)
    notes.append("Dice averaged over test images, not over batch means (B8); empty truth and prediction score 1")
    notes.append("validation loss over every validation image (the reference drops the last partial batch: B7)")
    notes.append("frozen encoder in eval mode: BatchNorm statistics fixed (the reference's stay in train mode: B6)")
    if cfg.head == "setr":
        notes.append("SETR on mmseg's SETRUPHead: conv-BN-ReLU stages with the reference's widths; BN layers as the "
                     "reference, conv biases kept")
    if mode == "cached":
        notes.append("cached mode: encoder outputs of un-augmented images computed once (float16); no train-time "
                     "ShiftScaleRotate (the reference augments every step)")
    if n_train < batch_size:
        notes.append(f"{n_train} training images, fewer than one batch of {batch_size}: trained as one partial batch "
                     "(the reference's drop_last would leave no batch)")
    return notes
