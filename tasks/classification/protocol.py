"""Every hyperparameter of the linear probe, as data, in one place (PROTOCOL.md 8.2, 8.5).

A run resolves this against the dataset and backbone (:func:`resolve`) and writes the result
into its record, so two results can be compared field by field.

Task version changelog (bump on any change that can move a number):
  1: first version: frozen encoder, Linear(D, C), AdamW 5e-4, batch 48, 50 epochs, early
     stopping on validation loss (patience 10), best-validation-loss epoch tested.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal, get_args

from benchmark.costs import TaskCost, measured_head_cost
from benchmark.scoring.classification import SCHEMES, TrainAugmentation

TASK_VERSION = 1
Mode = Literal["cached", "paper"]  # the adapter's module docstring says what each does
MODES: tuple[str, ...] = get_args(Mode)
REFERENCE_CACHE_SIZE = 256  # the reference's resize_img(imsize=256)
REFERENCE_CROP_SIZE = 224

Loss = Literal["bce", "cross_entropy"]


@dataclass(frozen=True)
class Moco2Augmentation:
    """CheXpert's train transform after the crop (``mgca/datasets/transforms.py`` L59-73)."""

    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    color_jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    # The reference blurs with PIL (radius = sigma); on tensors a kernel must be chosen: 2*ceil(3*sigma_max)+1.
    blur_kernel: int = 13
    blur_p: float = 0.5
    hflip_p: float = 0.5


@dataclass(frozen=True)
class DatasetProbe:
    """How one dataset's labels feed the probe (derived from its scoring scheme: :func:`dataset_probe`)."""

    dataset: str
    label_columns: tuple[str, ...]  # columns of the prepared records.csv
    loss: Loss
    train_augmentation: TrainAugmentation


@dataclass(frozen=True)
class ProbeProtocol:
    """The reference recipe; tests and benchmarks shrink it with :func:`dataclasses.replace`."""

    task_version: int = TASK_VERSION
    partition: str = "classification"
    head: str = "Linear(D, C), dropout 0"
    optimizer: str = "AdamW"
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-6
    # Code value; G2D restates it as 8 (PROTOCOL.md 8.2, 14.8).
    batch_size: int = 48
    max_epochs: int = 50
    early_stopping_patience: int = 10  # epochs without a strictly lower validation loss
    # Reference train loader: shuffle, drop_last=True. A training set smaller than one batch
    # is trained as one partial batch (recorded as train_batches_per_epoch).
    train_drop_last: bool = True
    # Every validation image counts (the reference drops the last partial batch: defect B7).
    val_drop_last: bool = False
    encode_batch_size: int = 64
    # Normalisation is the backbone's (LoadedBackbone.preprocessing; MGCA's is mean = std = 0.5).
    moco2: Moco2Augmentation = field(default_factory=Moco2Augmentation)
    deterministic_algorithms: bool = True


LOSSES: dict[str, Loss] = {"multilabel": "bce", "multiclass": "cross_entropy"}  # by the scheme's target format


def dataset_probe(dataset: str) -> DatasetProbe:
    """How ``dataset``'s labels feed the probe, read from its one declaration (its scoring scheme)."""
    scheme = SCHEMES.get(dataset)
    return DatasetProbe(dataset, scheme.label_columns, LOSSES[scheme.target_format], scheme.train_augmentation)

PROTOCOL = ProbeProtocol()
# A board may change any field of the recipe but its identity (``with_overrides``).
BOARD_OVERRIDES = tuple(f.name for f in fields(ProbeProtocol) if f.name not in ("task_version", "partition"))
# A linear layer on cached [CLS]/pooled float32 vectors (features.py), its cost measured
# (benchmark/device_costs/); the reference mode caches the validation and test features too.
COST = TaskCost(batch_size=PROTOCOL.batch_size, max_epochs=PROTOCOL.max_epochs, head_cost=measured_head_cost("classification"),
                features="global",
                cache_dtype_bytes=4, paper_caches_eval=True)


@dataclass(frozen=True)
class Geometry:
    """Pixel sizes of one run: the cache side, the crop and what the encoder sees."""

    cache_size: int
    crop_size: int
    encoder_input_size: int  # the crop resized to the model's input size, else the crop
    notes: tuple[str, ...]


def resolve_geometry(
    cache_size: int, patch_size: int | None, input_size: int = REFERENCE_CROP_SIZE, fixed_size: bool = False,
    why: str = "the model's input size",
) -> Geometry:
    """Crop = round(S * 224 / 256) (224 on the reference's 256 cache), then the encoder input.

    The encoder input is the crop resized by ``input_size / 224``: the model sees its own input
    size on the reference's 224 crop (299 for MGCA's ResNet-50, defect B20; 512 for
    torchxrayvision's ResNet-50), and the same ratio on smaller demo images. A model that takes
    only its own size (``fixed_size``) gets exactly ``input_size``. A ViT needs an input divisible
    by its patch size: one that is not is rounded down to one that is, and the note says so.
    """
    notes = []
    crop = round(cache_size * REFERENCE_CROP_SIZE / REFERENCE_CACHE_SIZE)
    if cache_size != REFERENCE_CACHE_SIZE:
        notes.append(f"cache size {cache_size} instead of {REFERENCE_CACHE_SIZE}: crop scaled to {crop}")
    resized = fixed_size or input_size != REFERENCE_CROP_SIZE
    if patch_size and not resized and crop % patch_size:
        rounded = crop - crop % patch_size
        notes.append(f"crop {crop} rounded down to {rounded}, a multiple of the patch size {patch_size}")
        crop = rounded
    if crop < 1:
        raise ValueError(f"cache size {cache_size} is too small for a {patch_size}-pixel patch")
    encoder_input = crop
    if resized:
        encoder_input = input_size if fixed_size else round(crop * input_size / REFERENCE_CROP_SIZE)
        if patch_size and encoder_input % patch_size:
            encoder_input -= encoder_input % patch_size
        if encoder_input < 1:
            raise ValueError(f"cache size {cache_size} gives no {patch_size}-pixel patch at input size {input_size}")
        if encoder_input != crop:
            notes.append(f"crop resized to {encoder_input} (bilinear, align_corners=True): {why}")
    return Geometry(cache_size, crop, encoder_input, tuple(notes))


def deviations(protocol: ProbeProtocol, probe: DatasetProbe, geometry: Geometry, mode: Mode, n_train: int) -> list[str]:
    """Where this run departs from the reference code, in words (written into its config)."""
    notes = list(geometry.notes)
    if not protocol.val_drop_last:
        notes.append("validation loss over every validation image (the reference drops the last partial batch: B7)")
    if mode == "cached":
        notes.append("cached mode: the head trains on features of the deterministic CenterCrop; no train-time "
                     f"augmentation (the reference uses {probe.train_augmentation})")
    elif probe.train_augmentation == "moco2":
        notes.append(f"Gaussian blur on tensors with a {protocol.moco2.blur_kernel}-pixel kernel (the reference blurs "
                     "with PIL's GaussianBlur(radius=sigma))")
    if protocol.train_drop_last and n_train < protocol.batch_size:
        notes.append(f"{n_train} training images, fewer than one batch of {protocol.batch_size}: trained as one "
                     "partial batch (the reference's drop_last would leave no batch)")
    return notes


def resolved_config(protocol: ProbeProtocol, probe: DatasetProbe, geometry: Geometry, extra: dict) -> dict:
    """The run record's ``config``: protocol, dataset probe, geometry and run facts (the runner adds the cell's identity)."""
    return {**asdict(protocol), "dataset": asdict(probe), "geometry": asdict(geometry), **extra}


def with_overrides(**changes: object) -> ProbeProtocol:
    """The reference protocol with some fields changed (tests, benchmarks); recorded in the config."""
    return replace(PROTOCOL, **changes)
