"""Every hyperparameter of the detection task, as data, in one place (PROTOCOL.md 8.3, 8.5).

The detector architectures are mmengine config files in ``configs/`` (:data:`HEADS` names them);
everything about training (optimiser, schedule per dataset and label fraction, early stopping,
input size, cache precision, what is written) lives here. A run resolves both and writes the
result into its record.

Task version changelog (bump on any change that can move a number):
  1: first version: frozen encoder, YOLOv3 (mmdet neck + head, reference widths and anchors) or
     Faster R-CNN + FPN; AdamW wd 1e-6, lr/batch of run_det_finetune.sh, at most 50 epochs,
     early stopping on validation map (patience 10), best-validation-map epoch tested.
  2: head ``yolov3_mgca`` (the reference's YOLOLoss per level, objectness as the score, its "+1"-pixel
     NMS, unclipped boxes), the default for ResNet and pyramid backbones; ``yolov3`` ranks every
     prediction into NMS (mmdet's ``nms_pre=1000`` cut by class probability removed, as the reference has none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from benchmark.costs import TaskCost, measured_head_cost
from benchmark.registry import Registry

if TYPE_CHECKING:  # registering the task imports no torch
    from benchmark.backbones import LoadedBackbone

TASK_VERSION = 2
PARTITION = "detection"
CONFIG_DIR = Path(__file__).parent / "configs"
REFERENCE_INPUT_SIZE = 224  # cv2.resize of the native image to 224 x 224 (PROTOCOL.md 4.5, 7.4)
STRIDE_MULTIPLE = 32  # the coarsest feature map's stride: the input side must be a multiple

Mode = Literal["cached", "paper"]  # the adapter's module docstring says what each does
MODES: tuple[str, ...] = get_args(Mode)
CacheDtype = Literal["float16", "float32"]


@dataclass(frozen=True)
class Schedule:
    """Learning rate and batch size of one dataset at one label fraction (``run_det_finetune.sh``)."""

    lr: float
    batch_size: int


SCHEDULES: dict[tuple[str, int], Schedule] = {
    ("rsna", 1): Schedule(2e-4, 8),
    ("rsna", 10): Schedule(5e-4, 16),
    ("rsna", 100): Schedule(5e-4, 16),
    # The script's Object-CXR 1 % line; G2D restates it as 2e-4 (PROTOCOL.md 8.3).
    ("object_cxr", 1): Schedule(2.5e-4, 8),
    ("object_cxr", 10): Schedule(5e-4, 16),
    ("object_cxr", 100): Schedule(5e-4, 16),
}


@dataclass(frozen=True)
class DetectorHead:
    """A trainable detector put on the frozen encoder: its config file and how it meets the encoder."""

    name: str
    config: str  # file in configs/
    # Neck input order: YOLOV3Neck takes the deepest map first, FPN the finest first.
    neck_order: Literal["deepest_first", "finest_first"]
    # Keys holding lengths in input pixels, written for ``pixel_reference_size``-pixel inputs and
    # scaled to the run's input size (anchors, RoI level scale).
    pixel_keys: tuple[str, ...]
    pixel_reference_size: int
    description: str
    deviation: str  # how its training and prediction differ from the reference's (written into each record)
    # Predicted boxes clipped to the image (mmdet's habit); the reference's YOLO leaves them as decoded.
    clip_to_image: bool = True


HEADS: Registry[DetectorHead] = Registry("detection head")
HEADS.add("yolov3", DetectorHead(
    name="yolov3", config="yolov3.py", neck_order="deepest_first",
    pixel_keys=("model.bbox_head.anchor_generator.base_sizes",), pixel_reference_size=416,
    description="YOLOv3 neck + head (mmdet YOLOV3Neck/YOLOV3Head), the reference's architecture with mmdet's loss",
    deviation="YOLOv3 loss and target assignment are mmdet's (GridAssigner, summed BCE/MSE terms); "
              "score = objectness x class probability (reference: objectness); boxes clipped to the image",
))
HEADS.add("yolov3_mgca", DetectorHead(
    name="yolov3_mgca", config="yolov3_mgca.py", neck_order="deepest_first",
    pixel_keys=("model.bbox_head.anchor_generator.base_sizes",), pixel_reference_size=416,
    description="YOLOv3 neck + head trained and decoded as the reference's YOLOLoss (tasks/detection/heads.py)",
    deviation="YOLOv3 as the reference (its loss per level, objectness as the score, its NMS, unclipped boxes); "
              "the neck's layers start from mmdet's initialisation (reference: PyTorch's default)",
    clip_to_image=False,
))
HEADS.add("faster_rcnn", DetectorHead(
    name="faster_rcnn", config="faster_rcnn.py", neck_order="finest_first",
    pixel_keys=("model.rpn_head.anchor_generator.scales", "model.roi_head.bbox_roi_extractor.finest_scale"),
    pixel_reference_size=REFERENCE_INPUT_SIZE,
    description="Faster R-CNN with FPN (mmdet), for every backbone family",
    deviation="Faster R-CNN + FPN: not in the reference, which evaluates only ResNet-50 with YOLOv3; boxes clipped to the image",
))
HEAD_NAMES = ("yolov3_mgca", "yolov3", "faster_rcnn")  # every registered head, the reference's detector first
# ResNets get the reference's YOLO, whose map_mgca is the published rule; a pyramid backbone (ConvNeXt,
# Swin, DenseNet, ...) gives three maps at strides 8/16/32 as a ResNet does.
DEFAULT_HEADS = {"resnet": "yolov3_mgca", "vit": "faster_rcnn", "pyramid": "yolov3_mgca"}


@dataclass(frozen=True)
class DetectionProtocol:
    """The reference recipe; tests and benchmarks shrink it with :func:`with_overrides`."""

    task_version: int = TASK_VERSION
    partition: str = PARTITION
    optimizer: str = "AdamW"
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-6
    lr: float | None = None  # None: from SCHEDULES for the dataset and fraction
    batch_size: int | None = None  # global batch (all processes); None: from SCHEDULES
    max_epochs: int = 50
    # epochs without a strictly higher validation map: the scorer's headline metric (benchmark/scoring/detection.py)
    # on the validation split, which also selects the epoch that is tested
    early_stopping_patience: int = 10
    input_size: int = REFERENCE_INPUT_SIZE  # a smaller image cache (demo data) is used at its own size
    # Normalisation is the backbone's (LoadedBackbone.preprocessing; MGCA's is mean = std = 0.5).
    # Reference train loader: shuffle, drop_last=True. A training set smaller than one batch is
    # trained as one partial batch.
    train_drop_last: bool = True
    cache_dtype: CacheDtype = "float16"  # encoder maps on disk (cached mode)
    encode_batch_size: int = 32
    eval_batch_size: int = 16
    min_score: float = 0.001  # detections written down to this score (B1: the reference cuts at 0.5)
    max_per_image: int = 100
    num_workers: int = 0
    deterministic_algorithms: bool = True
    # ``key=value`` overrides of the head's config file (a board can lighten Faster R-CNN for a
    # CPU demo, e.g. {"model.train_cfg.rcnn.sampler.num": 64}); the adapter's ``options`` win.
    config_options: Mapping[str, Any] = field(default_factory=dict)

    def schedule(self, dataset: str, fraction: int) -> Schedule:
        """lr and global batch size of ``dataset`` at ``fraction`` %, with this protocol's overrides."""
        try:
            schedule = SCHEDULES[(dataset, fraction)]
        except KeyError:
            known = sorted(SCHEDULES)
            raise ValueError(f"no detection schedule for {dataset} at {fraction} %; known: {known}") from None
        return Schedule(self.lr if self.lr is not None else schedule.lr,
                        self.batch_size if self.batch_size is not None else schedule.batch_size)


PROTOCOL = DetectionProtocol()
# A board may change any field of the recipe but its identity (``with_overrides``).
BOARD_OVERRIDES = tuple(f.name for f in fields(DetectionProtocol) if f.name not in ("task_version", "partition"))
CACHE_DTYPE_BYTES = {"float16": 2, "float32": 4}
# YOLOv3 / Faster R-CNN on cached maps, their cost measured (benchmark/device_costs/); the largest
# scheduled batch (8-16 by fraction).
COST = TaskCost(batch_size=max(s.batch_size for s in SCHEDULES.values()), max_epochs=PROTOCOL.max_epochs,
                head_cost=measured_head_cost("detection"),
                features="maps", cache_dtype_bytes=CACHE_DTYPE_BYTES[PROTOCOL.cache_dtype])


def with_overrides(**changes: object) -> DetectionProtocol:
    """The reference protocol with some fields changed (tests, benchmarks); recorded in the config."""
    return replace(PROTOCOL, **changes)


@dataclass(frozen=True)
class InputGeometry:
    """Pixel sizes of one run: the square image cache and the square network input."""

    cache_size: int
    input_size: int
    notes: tuple[str, ...]


def resolve_geometry(cache_size: int, protocol: DetectionProtocol) -> InputGeometry:
    """The network input: the protocol's size, or the cache's when the cache is smaller (demo data:
    no upsampling), rounded down to a multiple of the coarsest stride (32)."""
    notes = []
    size = protocol.input_size
    if cache_size < size:
        notes.append(f"image cache of {cache_size} px is smaller than the {size} px input: the network sees {cache_size} px")
        size = cache_size
    if size % STRIDE_MULTIPLE:
        rounded = size - size % STRIDE_MULTIPLE
        if rounded < STRIDE_MULTIPLE:
            raise ValueError(f"input of {size} px is smaller than the coarsest stride {STRIDE_MULTIPLE}")
        notes.append(f"input {size} px rounded down to {rounded}, a multiple of the coarsest stride {STRIDE_MULTIPLE}")
        size = rounded
    return InputGeometry(cache_size, size, tuple(notes))


def encoder_input_size(backbone: LoadedBackbone, cache_size: int, head: str, overrides: Mapping[str, Any]) -> int:  # noqa: ARG001
    """The side a detection cell feeds ``backbone``'s encoder on images prepared at ``cache_size`` px (the task's
    ``encoder_input``: ``run --dry-run`` times the encoder there). ``run_detection``'s own steps: the protocol under
    the board's ``overrides`` (an ``input_size`` among them), :func:`resolve_geometry`, then
    :func:`benchmark.backbones.dense.encoder_side` (a fixed-size model is fed its own size). Every head reads the
    same input."""
    from benchmark.backbones.dense import encoder_side

    return encoder_side(backbone.preprocessing, resolve_geometry(cache_size, with_overrides(**overrides)).input_size)


def deviations(protocol: DetectionProtocol, geometry: InputGeometry, head: DetectorHead, mode: Mode,
               n_train: int, batch_size: int) -> list[str]:
    """Where this run departs from the reference code, in words (written into its config)."""
    notes = list(geometry.notes)
    notes.append("every test image is scored, negatives and images without detections included, with every "
                 f"detection down to score {protocol.min_score} (B1); the reference's filtered value is map_mgca")
    notes.append("encoder in eval mode: BatchNorm statistics frozen (B6); boxes normalised on copies (B9)")
    notes.append("validation map over every validation image (the reference drops the last partial batch: B7)")
    notes.append(head.deviation)
    if mode == "cached":
        notes.append(f"cached mode: encoder maps computed once and stored as {protocol.cache_dtype}")
    if protocol.train_drop_last and n_train < batch_size:
        notes.append(f"{n_train} training images, fewer than one batch of {batch_size}: trained as one partial "
                     "batch (the reference's drop_last would leave no batch)")
    return notes


def protocol_record(protocol: DetectionProtocol, schedule: Schedule, geometry: InputGeometry) -> dict:
    """The protocol part of a run record's ``config``."""
    return {**asdict(protocol), "lr": schedule.lr, "batch_size": schedule.batch_size, "geometry": asdict(geometry)}
