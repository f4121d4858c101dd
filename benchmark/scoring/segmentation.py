"""Segmentation metrics (PROTOCOL.md 8.5, defect B8), the probability/mask file formats, the scorer.

File formats
------------
Predictions: an NPZ file (``numpy.savez_compressed``) holding

* ``ids``: ``[N]`` strings, one per test image;
* ``probs``: ``[N, H, W]`` foreground probabilities, either ``uint8`` quantised as
  :func:`quantize` writes them (value ``q`` stands for ``q / 255``) or floating point in [0, 1].

Targets: an NPZ file holding ``ids`` ``[N]`` and ``masks`` ``[N, H, W]`` (``bool`` or integers
0/1), or a folder of PNG masks ``<id>.png`` (single channel, values {0, 255} as ``prepare``
writes them, or {0, 1}); with a folder, the test images are the prediction file's IDs and
other PNGs in the folder (other splits) are ignored.

Both files hold the same IDs (any order, no duplicates) and maps of the same size. A missing or
extra ID, a shape mismatch, a probability outside [0, 1] or NaN, a mask value other than 0/1 is
a :class:`SegmentationFileError` naming the file and the problem. Files are read in chunks of
rows (never a whole ``[N, H, W]`` array at once) when both list the IDs in the same order, as
the suite writes them; otherwise the targets are read whole.

Metrics
-------
Every metric is a function of four per-image counts at threshold 0.5 (prediction ``p > 0.5``,
ground truth ``mask = 1``): true/false positive/negative pixels. So the test set reduces to
``[n, 4]`` integers once, and every metric, bootstrap resample and paired comparison is a
weighted sum over images (weights = how often a resample draws each image).

* ``dice``: per-image Dice averaged over all test images; an image with an empty ground truth
  scores 1 when its prediction is empty too and 0 otherwise (the reference's ``get_dice``, but
  averaged over images instead of over batch means: independent of the batch size, B8).
* ``dice_positive``: the same mean over images with a non-empty ground truth only.
* ``dice_pooled``: one Dice over all pixels of the test set, ``2 ΣTP / (2 ΣTP + ΣFP + ΣFN)``
  (1 when nothing is predicted and nothing is true anywhere).
* ``miou``: mean of the foreground and background IoU, each over all pixels of the test set
  (mmseg's ``IoUMetric`` for two classes); a class absent from prediction and truth is left out.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from benchmark.data.prepared import DataError
from benchmark.registry import Registry
from benchmark.scoring import SCORERS, MetricSpec, PerImageRun, TargetSet, unique_string_ids
from benchmark.scoring.bootstrap import BootstrapOptions, ConfidenceInterval, percentile_interval, resample_weights
from benchmark.scoring.report import ScoredMetric, ScoreReport

THRESHOLD = 0.5
QUANTISED_THRESHOLD = 128  # q / 255 > 0.5  <=>  q >= 128
PRIMARY_METRIC = "dice"
CHUNK_ROWS = 256  # rows read at once (256 maps of 224 x 224: 13 MB of uint8)


class SegmentationFileError(DataError):
    """A probability or mask file does not follow the format in this module's docstring."""


# ------------------------------------------------------------------------------ counts and metrics

@dataclass(frozen=True)
class ImageCounts:
    """Per-image pixel counts at threshold 0.5, rows in test-image order (int64 [n] each)."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @classmethod
    def concatenate(cls, parts: Sequence[ImageCounts]) -> ImageCounts:
        return cls(*(np.concatenate([getattr(part, name) for part in parts]) if parts else np.zeros(0, np.int64)
                     for name in ("tp", "fp", "fn", "tn")))

    def __len__(self) -> int:
        return len(self.tp)

    @cached_property
    def dice(self) -> np.ndarray:
        """Per-image Dice (:func:`dice_per_image`), computed once for all resamples."""
        return dice_per_image(self)

    @cached_property
    def positive(self) -> np.ndarray:
        """Images with a non-empty ground truth."""
        return (self.tp + self.fn) > 0


def binarize(probs: np.ndarray) -> np.ndarray:
    """Foreground prediction at threshold 0.5: ``p > 0.5``, or ``q >= 128`` for quantised maps."""
    if probs.dtype == np.uint8:
        return probs >= QUANTISED_THRESHOLD
    return probs > THRESHOLD


def quantize(probs: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] → uint8, rounding half down so that thresholding the quantised
    map (``q >= 128``) gives exactly the prediction ``p > 0.5`` of the float map."""
    scaled = np.asarray(probs, dtype=np.float64) * 255.0
    return np.clip(np.ceil(scaled - 0.5), 0, 255).astype(np.uint8)


def image_counts(probs: np.ndarray, masks: np.ndarray) -> ImageCounts:
    """Counts of ``[n, H, W]`` probabilities (float or quantised) against ``[n, H, W]`` 0/1 masks."""
    if probs.shape != masks.shape:
        raise ValueError(f"probabilities {probs.shape} and masks {masks.shape} differ in shape")
    predicted, truth = binarize(probs).reshape(len(probs), -1), masks.astype(bool).reshape(len(masks), -1)
    tp = np.count_nonzero(predicted & truth, axis=1)
    fp = np.count_nonzero(predicted & ~truth, axis=1)
    fn = np.count_nonzero(~predicted & truth, axis=1)
    return ImageCounts(tp.astype(np.int64), fp.astype(np.int64), fn.astype(np.int64),
                       (predicted.shape[1] - tp - fp - fn).astype(np.int64))


def dice_per_image(counts: ImageCounts) -> np.ndarray:
    """Dice of each image; empty ground truth: 1 if the prediction is empty, else 0."""
    denominator = 2 * counts.tp + counts.fp + counts.fn
    empty_truth = (counts.tp + counts.fn) == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2 * counts.tp / denominator
    return np.where(empty_truth, (counts.fp == 0).astype(float), dice)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, when_zero: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), when_zero)


# A metric of the test set resampled: (counts [n], weights [R, n]) -> [R]; weights all ones = the test set.
WeightedMetric = Callable[[ImageCounts, np.ndarray], np.ndarray]
METRICS: Registry[WeightedMetric] = Registry("segmentation metric")


@METRICS.register("dice")
def dice(counts: ImageCounts, weights: np.ndarray) -> np.ndarray:
    """Mean per-image Dice over all images (B8: a mean over images, not over batch means)."""
    return _ratio(weights @ counts.dice, weights.sum(axis=1), np.nan)


@METRICS.register("dice_positive")
def dice_positive(counts: ImageCounts, weights: np.ndarray) -> np.ndarray:
    """Mean per-image Dice over images with a non-empty ground truth (NaN without any)."""
    positive = counts.positive
    return _ratio(weights[:, positive] @ counts.dice[positive], weights[:, positive].sum(axis=1), np.nan)


@METRICS.register("dice_pooled")
def dice_pooled(counts: ImageCounts, weights: np.ndarray) -> np.ndarray:
    """One Dice over all pixels of the (resampled) test set; 1 when nothing is predicted or true."""
    return _ratio(2 * (weights @ counts.tp), weights @ (2 * counts.tp + counts.fp + counts.fn), 1.0)


@METRICS.register("miou")
def miou(counts: ImageCounts, weights: np.ndarray) -> np.ndarray:
    """Mean of foreground and background IoU over all pixels (a class absent everywhere is left out)."""
    foreground = _ratio(weights @ counts.tp, weights @ (counts.tp + counts.fp + counts.fn), np.nan)
    background = _ratio(weights @ counts.tn, weights @ (counts.tn + counts.fp + counts.fn), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # both classes absent: NaN, as intended
        return np.nanmean(np.stack([foreground, background]), axis=0)


def metric_values(counts: ImageCounts) -> dict[str, float]:
    """Every metric on the whole test set."""
    ones = np.ones((1, len(counts)))
    return {name: float(function(counts, ones)[0]) for name, function in METRICS.items()}


def bootstrap_intervals(counts: ImageCounts, options: BootstrapOptions = BootstrapOptions()) -> dict[str, ConfidenceInterval]:
    """Every metric with a seeded percentile interval over images (resamples where it is undefined left out)."""
    chunks = list(resample_weights(len(counts), options))
    full = metric_values(counts)
    intervals = {}
    for name, function in METRICS.items():
        values = np.concatenate([function(counts, weights) for weights in chunks])
        low, high = percentile_interval(values, options.confidence)
        intervals[name] = ConfidenceInterval(
            value=full[name], low=low, high=high, confidence=options.confidence,
            n_resamples=options.n_resamples, n_valid=int(np.isfinite(values).sum()), seed=options.seed,
        )
    return intervals


# ------------------------------------------------------------------------------ writing files

def write_predictions(path: Path, ids: Sequence[str], probs: np.ndarray) -> Path:
    """``ids`` with ``[n, H, W]`` probabilities (float in [0, 1], quantised here, or already uint8)."""
    quantised = probs if probs.dtype == np.uint8 else quantize(probs)
    np.savez_compressed(path, ids=np.asarray(list(ids), dtype=str), probs=quantised)
    return Path(path)


def write_targets(path: Path, ids: Sequence[str], masks: np.ndarray) -> Path:
    """``ids`` with ``[n, H, W]`` 0/1 masks."""
    np.savez_compressed(path, ids=np.asarray(list(ids), dtype=str), masks=np.asarray(masks).astype(bool))
    return Path(path)


# ------------------------------------------------------------------------------ reading files

def _open_npz_member(path: Path, key: str, what: str) -> tuple[zipfile.ZipFile, object, tuple[int, ...], np.dtype]:
    """The ``key`` array of an NPZ file as a stream positioned at its data, with shape and dtype."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise SegmentationFileError(f"{path}: not a readable NPZ {what} file ({error})") from None
    if f"{key}.npy" not in archive.namelist():
        names = sorted(name.removesuffix(".npy") for name in archive.namelist())
        archive.close()
        raise SegmentationFileError(f"{path}: no array {key!r} in this {what} file (it holds {names})")
    stream = archive.open(f"{key}.npy")
    try:
        version = np.lib.format.read_magic(stream)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = header(stream)
    except ValueError as error:
        archive.close()
        raise SegmentationFileError(f"{path}: array {key!r} is not a valid .npy member ({error})") from None
    if fortran_order or dtype.hasobject:
        archive.close()
        raise SegmentationFileError(f"{path}: array {key!r} must be a C-ordered numeric array (save it with numpy.savez_compressed)")
    return archive, stream, shape, dtype


def read_ids(path: Path, what: str) -> list[str]:
    """The ``ids`` array of an NPZ file, checked for duplicates."""
    path = Path(path)
    if not path.is_file():
        raise SegmentationFileError(f"{path}: {what} file not found")
    if not zipfile.is_zipfile(path):  # np.load would read on as a .npy or a pickle and say so
        raise SegmentationFileError(f"{path}: not an NPZ {what} file (the zip of .npy arrays that numpy.savez_compressed "
                                    f"writes, with 'ids' and the maps)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "ids" not in data.files:
                raise SegmentationFileError(f"{path}: no array 'ids' in this {what} file (it holds {sorted(data.files)})")
            ids = data["ids"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # EOFError: an empty file
        raise SegmentationFileError(f"{path}: not a readable NPZ {what} file with a string 'ids' array ({error})") from None
    return unique_string_ids(ids, path, "ids", "id", SegmentationFileError)


def iter_rows(path: Path, key: str, what: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
    """The ``[N, H, W]`` array ``key`` of an NPZ file, ``chunk_rows`` rows at a time (decompressed as it goes)."""
    archive, stream, shape, dtype = _open_npz_member(path, key, what)
    with archive, stream:
        if len(shape) != 3:
            raise SegmentationFileError(f"{path}: {key!r} must be [N, H, W], got shape {shape}")
        row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
        for start in range(0, shape[0], chunk_rows):
            rows = min(chunk_rows, shape[0] - start)
            buffer = stream.read(rows * row_bytes)
            if len(buffer) != rows * row_bytes:
                raise SegmentationFileError(f"{path}: {key!r} is truncated (row {start + len(buffer) // max(row_bytes, 1)} of {shape[0]})")
            yield np.frombuffer(buffer, dtype=dtype).reshape(rows, *shape[1:])


def array_shape(path: Path, key: str, what: str) -> tuple[int, ...]:
    archive, stream, shape, _ = _open_npz_member(path, key, what)
    stream.close()
    archive.close()
    return shape


def check_probs(chunk: np.ndarray, path: Path, ids: Sequence[str], start: int) -> None:
    """Probabilities are uint8, or floats in [0, 1] without NaN."""
    if chunk.dtype == np.uint8:
        return
    if chunk.dtype.kind != "f":
        raise SegmentationFileError(f"{path}: probs must be uint8 (quantised) or floating point in [0, 1], got {chunk.dtype}")
    flat = chunk.reshape(len(chunk), -1)
    nan_rows = np.flatnonzero(np.isnan(flat).any(axis=1))
    if len(nan_rows):
        row = start + int(nan_rows[0])
        raise SegmentationFileError(f"{path}: probs hold NaN, first in row {row} (id {ids[row]!r})")
    outside = np.flatnonzero(((flat < 0) | (flat > 1)).any(axis=1))
    if len(outside):
        row = start + int(outside[0])
        values = flat[outside[0]]
        raise SegmentationFileError(
            f"{path}: probs must lie in [0, 1]; row {row} (id {ids[row]!r}) ranges from {values.min():g} to {values.max():g}"
        )


def check_masks(chunk: np.ndarray, path: Path, ids: Sequence[str], start: int) -> np.ndarray:
    """0/1 masks as bool; any other value is an error."""
    if chunk.dtype == bool:
        return chunk
    if chunk.dtype.kind not in "iuf":
        raise SegmentationFileError(f"{path}: masks must be bool or integers 0/1, got {chunk.dtype}")
    bad = np.flatnonzero(((chunk != 0) & (chunk != 1)).reshape(len(chunk), -1).any(axis=1))
    if len(bad):
        row = start + int(bad[0])
        values = np.unique(chunk[bad[0]])[:5].tolist()
        raise SegmentationFileError(f"{path}: masks must hold 0 and 1 only; row {row} (id {ids[row]!r}) holds {values}")
    return chunk.astype(bool)


def read_png_mask(folder: Path, image_id: str) -> np.ndarray:
    """``<folder>/<id>.png`` as a bool mask (values {0, 255} or {0, 1})."""
    path = folder / f"{image_id}.png"
    if not path.is_file():
        raise SegmentationFileError(f"{folder}: no mask {image_id}.png for test id {image_id!r}")
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2:
        raise SegmentationFileError(f"{path}: not a single-channel PNG mask")
    values = set(np.unique(mask).tolist())
    if not (values <= {0, 255} or values <= {0, 1}):
        raise SegmentationFileError(f"{path}: mask values must be {{0, 255}} or {{0, 1}}, found {sorted(values)[:5]}")
    return mask > 0


def _id_problems(prediction_ids: Sequence[str], target_ids: Sequence[str], predictions: Path) -> None:
    missing = sorted(set(target_ids) - set(prediction_ids))
    extra = sorted(set(prediction_ids) - set(target_ids))
    problems = []
    if missing:
        problems.append(f"{len(missing)} test id(s) missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} id(s) not in the targets, e.g. {extra[:3]}")
    if problems:
        raise SegmentationFileError(f"{predictions}: {'; '.join(problems)}; predict exactly the test set's IDs")


@dataclass(frozen=True)
class ScoredImages:
    """A run's test set reduced to per-image counts, with the digest of its ground truth."""

    ids: tuple[str, ...]  # row order of ``counts``
    counts: ImageCounts
    labels_digest: str  # sha256 over (id, mask) in sorted-id order: equal ground truth, equal digest


def _digest(image_id: str, mask: np.ndarray) -> bytes:
    return hashlib.sha256(image_id.encode() + b"\0" + str(mask.shape).encode() + np.packbits(mask).tobytes()).digest()


def _combined_digest(per_image: dict[str, bytes]) -> str:
    return hashlib.sha256(b"".join(per_image[item] for item in sorted(per_image))).hexdigest()


def score_images(predictions: Path, targets: Path, chunk_rows: int = CHUNK_ROWS) -> ScoredImages:
    """Validate both files and reduce them to per-image counts (see the module docstring)."""
    predictions, targets = Path(predictions), Path(targets)
    prediction_ids = read_ids(predictions, "predictions")
    prediction_shape = array_shape(predictions, "probs", "predictions")
    if len(prediction_shape) != 3 or prediction_shape[0] != len(prediction_ids):
        raise SegmentationFileError(f"{predictions}: probs must be [N, H, W] with N = {len(prediction_ids)} ids, got {prediction_shape}")
    size = prediction_shape[1:]
    digests: dict[str, bytes] = {}
    parts: list[ImageCounts] = []

    def add(chunk_ids: Sequence[str], probs: np.ndarray, masks: np.ndarray) -> None:
        parts.append(image_counts(probs, masks))
        digests.update((item, _digest(item, mask)) for item, mask in zip(chunk_ids, masks))

    if targets.is_dir():
        start = 0
        for probs in iter_rows(predictions, "probs", "predictions", chunk_rows):
            check_probs(probs, predictions, prediction_ids, start)
            chunk_ids = prediction_ids[start:start + len(probs)]
            masks = np.stack([read_png_mask(targets, item) for item in chunk_ids])
            if masks.shape[1:] != size:
                raise SegmentationFileError(f"{targets}: masks are {masks.shape[1]}x{masks.shape[2]}, probabilities {size[0]}x{size[1]}")
            add(chunk_ids, probs, masks)
            start += len(probs)
        return ScoredImages(tuple(prediction_ids), ImageCounts.concatenate(parts), _combined_digest(digests))

    target_ids = read_ids(targets, "targets")
    _id_problems(prediction_ids, target_ids, predictions)
    target_shape = array_shape(targets, "masks", "targets")
    if len(target_shape) != 3 or target_shape[0] != len(target_ids):
        raise SegmentationFileError(f"{targets}: masks must be [N, H, W] with N = {len(target_ids)} ids, got {target_shape}")
    if target_shape[1:] != size:
        raise SegmentationFileError(
            f"{predictions}: probability maps are {size[0]}x{size[1]} but the masks of {targets} are "
            f"{target_shape[1]}x{target_shape[2]}; predict at the targets' size"
        )
    if prediction_ids == target_ids:  # the suite's files: stream both
        start = 0
        for probs, masks in zip(iter_rows(predictions, "probs", "predictions", chunk_rows),
                                iter_rows(targets, "masks", "targets", chunk_rows)):
            check_probs(probs, predictions, prediction_ids, start)
            add(prediction_ids[start:start + len(probs)], probs, check_masks(masks, targets, target_ids, start))
            start += len(probs)
    else:  # another order: the masks are read whole and taken in the predictions' order
        all_masks = np.concatenate([check_masks(chunk, targets, target_ids, 0) for chunk in iter_rows(targets, "masks", "targets", chunk_rows)])
        row_of = {item: row for row, item in enumerate(target_ids)}
        start = 0
        for probs in iter_rows(predictions, "probs", "predictions", chunk_rows):
            check_probs(probs, predictions, prediction_ids, start)
            chunk_ids = prediction_ids[start:start + len(probs)]
            add(chunk_ids, probs, all_masks[[row_of[item] for item in chunk_ids]])
            start += len(probs)
    return ScoredImages(tuple(prediction_ids), ImageCounts.concatenate(parts), _combined_digest(digests))


# ------------------------------------------------------------------------------ scorer

def score_counts(counts: ImageCounts, options: BootstrapOptions = BootstrapOptions()) -> tuple[dict[str, ScoredMetric], list[str]]:
    """Every metric with its bootstrap interval, and the warnings about them."""
    if len(counts) == 0:
        raise SegmentationFileError("no test images to score")
    intervals = bootstrap_intervals(counts, options)
    notes = []
    if not counts.positive.any():
        notes.append("dice_positive undefined: no test image has a non-empty ground truth")
    notes += [
        f"{name}: undefined on {entry.n_resamples - entry.n_valid} of {entry.n_resamples} bootstrap resamples (left out)"
        for name, entry in intervals.items() if 0 < entry.n_valid < entry.n_resamples
    ]
    return {name: ScoredMetric(interval) for name, interval in intervals.items()}, notes


class SegmentationScorer:
    """Scores probability maps against masks; per-image counts serve the paired bootstrap."""

    metrics = {"dice": MetricSpec("dice", "Dice"), "dice_positive": MetricSpec("dice_positive", "Dice (positive images)"),
               "dice_pooled": MetricSpec("dice_pooled", "Dice (pooled)"), "miou": MetricSpec("miou", "mIoU")}

    def headline(self, dataset: str | None = None) -> str:
        return PRIMARY_METRIC  # every dataset's

    def score_files(self, predictions: Path, targets: Path, dataset: str | None = None,
                    options: BootstrapOptions = BootstrapOptions()) -> ScoreReport:
        counts = score_images(predictions, targets).counts
        metrics, notes = score_counts(counts, options)
        return ScoreReport(task="segmentation", dataset=dataset, primary_metric=PRIMARY_METRIC, n_images=len(counts),
                           metrics=metrics, warnings=tuple(notes), predictions=str(predictions), targets=str(targets),
                           n_positive_images=int(counts.positive.sum()))

    def per_image(self, predictions: Path, targets: Path, dataset: str | None = None, metric: str = PRIMARY_METRIC) -> PerImageRun:
        function = METRICS.get(metric)
        scored = score_images(predictions, targets)
        counts = scored.counts
        return PerImageRun(ids=scored.ids, labels_digest=scored.labels_digest,
                           metric=lambda weights: function(counts, np.atleast_2d(np.asarray(weights, dtype=np.float64))))

    def target_set(self, targets: Path, dataset: str | None = None) -> TargetSet:
        """The masks of an NPZ targets file; they have the model's input size, which is their geometry."""
        del dataset
        targets = Path(targets)
        ids = read_ids(targets, "targets")
        shape = array_shape(targets, "masks", "targets")
        if len(shape) != 3 or shape[0] != len(ids):
            raise SegmentationFileError(f"{targets}: masks must be [N, H, W] with N = {len(ids)} ids, got {shape}")
        digests: dict[str, bytes] = {}
        start = 0
        for chunk in iter_rows(targets, "masks", "targets"):
            masks = check_masks(chunk, targets, ids, start)
            digests.update((item, _digest(item, mask)) for item, mask in zip(ids[start:start + len(masks)], masks))
            start += len(masks)
        return TargetSet(_combined_digest(digests), f"{shape[1]}x{shape[2]}")


SCORERS.add("segmentation", SegmentationScorer())
