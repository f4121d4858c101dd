"""Detection metrics (PROTOCOL.md 8.5, defect B1) on pycocotools, the two file formats, their validation.

File formats (JSON, boxes in original-image pixels, COCO ``[x, y, width, height]``)
-----------------------------------------------------------------------------------
Targets: the COCO ground truth of the test split, as ``prepare`` writes it
(``annotations/test.json``): ``images`` (``id`` int, ``file_name`` = the image ID, ``width``,
``height``), ``annotations`` (``image_id``, ``category_id``, ``bbox``; optional ``iscrowd``,
``area``) and ``categories`` (``id``, ``name``). Every listed image is scored, also those without
a box (negatives).

Predictions: COCO results, a JSON list of ``{"image_id": int, "category_id": int,
"bbox": [x, y, w, h], "score": float}``; ``image_id`` and ``category_id`` refer to the targets
file. The suite writes every detection down to a score of 0.001, at most 100 per image; more
are allowed and only the 100 best of an image count (maxDets 100). An empty list is a valid
file (a detector that found nothing). A box may reach outside the image (negative x or y, or
past the width or height), as pycocotools and torchmetrics allow: the reference's YOLO
predictions are unclipped. An image ID or category that the targets do not list, a non-finite
coordinate, a negative size or a non-finite score is a :class:`DetectionFileError` naming the
file, the entry and the problem.

Metrics (:data:`METRICS`)
-------------------------
- ``map`` (headline): COCO AP (101-point interpolated precision, area "all", maxDets 100)
  averaged over IoU 0.40, 0.45, ..., 0.75 (the reference's thresholds), on every test image
  and every detection: images without boxes contribute their false positives, images
  without detections their misses.
- ``map_mgca``: the reference's rule (defect B1): only detections with score >= 0.5, and only
  images that have a ground-truth box and at least one such detection; the published numbers
  are comparable with this one only. It is the published metric exactly when the file's
  ``score`` is what the reference thresholds, the YOLO objectness: the detection head
  ``yolov3_mgca`` writes it (and trains and decodes as the reference). With ``yolov3`` (score =
  objectness x class probability, mmdet's loss) or ``faster_rcnn`` (class probability) it applies
  the same rule to another score and only approximates the published metric.
- ``map_coco``: IoU 0.50:0.05:0.95, all images and detections. ``ap50``: IoU 0.50.

AP is undefined (NaN, with a warning) when the scored images hold no ground-truth box.

Bootstrap and paired comparisons: pycocotools' matching of detections to boxes is per image,
so it is computed once (:class:`PerImageMatches`); a resample only re-weights images, and the
precision/recall accumulation is re-done for all resamples at once on the matched detections
(:meth:`PerImageMatches.metric`). On the full test set it equals pycocotools' value exactly
(tested); on a resample it equals pycocotools on the duplicated images, except for the order
of tied scores of duplicated images, which pycocotools itself leaves to the input order.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import sparse

from benchmark.data.prepared import DataError
from benchmark.limits import is_finite_number
from benchmark.registry import Registry
from benchmark.scoring import SCORERS, MetricSpec, PerImageRun, TargetSet
from benchmark.scoring.bootstrap import BootstrapOptions, bootstrap_ci_weighted
from benchmark.scoring.report import ScoredMetric, ScoreReport

MAX_DETECTIONS = 100  # per image (pycocotools maxDets)
MIN_SCORE_WRITTEN = 0.001  # the lowest score the suite writes into a predictions file
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, 101)  # pycocotools' recThrs, bit for bit
AREA_ALL = [0**2, 1e5**2]  # pycocotools' area range "all"
RESAMPLE_CHUNK = 256  # resamples evaluated together (bounds memory to chunk x detections)


class DetectionFileError(DataError):
    """A detection predictions or targets file does not follow the format in this module's docstring."""


def _thresholds(start: float, stop: float) -> tuple[float, ...]:
    """IoU thresholds ``start:0.05:stop`` as the decimals they name (the reference lists 0.4, 0.45, ... literally)."""
    return tuple(round(start + 0.05 * step, 2) for step in range(round((stop - start) / 0.05) + 1))


@dataclass(frozen=True)
class MetricRule:
    """Which detections and images an AP is computed on, and over which IoU thresholds."""

    iou_thresholds: tuple[float, ...]
    min_score: float = -math.inf  # detections below are dropped
    images: Literal["all", "with_box_and_detection"] = "all"  # "with_box_and_detection": the reference's filter


METRICS: Registry[MetricRule] = Registry("detection metric")
METRICS.add("map", MetricRule(_thresholds(0.40, 0.75)))
METRICS.add("map_mgca", MetricRule(_thresholds(0.40, 0.75), min_score=0.5, images="with_box_and_detection"))
METRICS.add("map_coco", MetricRule(_thresholds(0.50, 0.95)))
METRICS.add("ap50", MetricRule((0.5,)))
PRIMARY_METRIC = "map"


# ------------------------------------------------------------------------------------ files

@dataclass(frozen=True)
class CocoTargets:
    """A validated COCO ground truth: ``data`` is ready for pycocotools (annotation ids 1..N)."""

    path: Path | None  # None: built in memory (a split's ground truth during training)
    data: dict[str, Any]

    @property
    def image_ids(self) -> list[int]:
        """COCO image ids in pycocotools' evaluation order (sorted)."""
        return sorted(image["id"] for image in self.data["images"])

    @property
    def names(self) -> dict[int, str]:
        """COCO image id -> the image's ID in the prepared dataset (``file_name``)."""
        return {image["id"]: image["file_name"] for image in self.data["images"]}


def _load_json(path: Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DetectionFileError(f"{path}: {what} file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DetectionFileError(f"{path}: not a readable JSON {what} file ({error})") from None
    except RecursionError:  # arrays or objects nested thousands deep: no COCO file is
        raise DetectionFileError(f"{path}: not a COCO {what} file (JSON nested too deeply)") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _box_problem(box: Any, predicted: bool) -> str | None:
    """Why ``box`` is not a valid COCO ``[x, y, w, h]`` in pixels, or None. A predicted box may be
    empty and may reach outside the image (pycocotools and torchmetrics score it as it is; the
    reference's YOLO predictions are unclipped); a ground-truth box may not start outside it."""
    if not isinstance(box, list) or len(box) != 4 or not all(is_finite_number(value) for value in box):
        return f"bbox {box!r} is not four finite numbers [x, y, width, height]"
    x, y, width, height = box
    if not predicted and (x < 0 or y < 0):
        return f"bbox {box} has a negative coordinate"
    if width < 0 or height < 0 or (not predicted and (width == 0 or height == 0)):
        return f"bbox {box} has a {'negative' if min(width, height) < 0 else 'zero'} size"
    return None


def read_targets(path: Path) -> CocoTargets:
    """The COCO ground truth at ``path``, validated (see the module docstring)."""
    path = Path(path)
    data = _load_json(path, "targets")
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in ("images", "annotations", "categories")):
        raise DetectionFileError(f"{path}: not a COCO ground-truth file (needs lists 'images', 'annotations', 'categories')")
    if not data["images"]:
        raise DetectionFileError(f"{path}: the targets list no image; score against the COCO file of a non-empty test split")
    if not data["categories"]:
        raise DetectionFileError(f"{path}: the targets list no category")
    images, names = {}, set()
    for number, image in enumerate(data["images"]):
        if not (isinstance(image, dict) and _is_int(image.get("id")) and isinstance(image.get("file_name"), str)
                and image["file_name"] and is_finite_number(image.get("width")) and is_finite_number(image.get("height"))
                and image["width"] > 0 and image["height"] > 0):
            raise DetectionFileError(f"{path}: images[{number}] = {image!r}: expected an int 'id', a 'file_name' and positive 'width', 'height'")
        if image["id"] in images or image["file_name"] in names:
            raise DetectionFileError(f"{path}: images[{number}]: image id {image['id']} or file_name {image['file_name']!r} is listed twice")
        images[image["id"]] = image
        names.add(image["file_name"])
    categories = {}
    for number, category in enumerate(data["categories"]):
        if not (isinstance(category, dict) and _is_int(category.get("id"))) or category["id"] in categories:
            raise DetectionFileError(f"{path}: categories[{number}] = {category!r}: expected a unique int 'id'")
        categories[category["id"]] = {"id": category["id"], "name": str(category.get("name", category["id"]))}
    annotations = []
    for number, annotation in enumerate(data["annotations"]):
        where = f"{path}: annotations[{number}]"
        if not isinstance(annotation, dict):
            raise DetectionFileError(f"{where} is not an object")
        if annotation.get("image_id") not in images or not _is_int(annotation.get("image_id")):
            raise DetectionFileError(f"{where}: image_id {annotation.get('image_id')!r} is not listed in 'images'")
        if annotation.get("category_id") not in categories or not _is_int(annotation.get("category_id")):
            raise DetectionFileError(f"{where}: category_id {annotation.get('category_id')!r} is not listed in 'categories'")
        problem = _box_problem(annotation.get("bbox"), predicted=False)
        if problem:
            raise DetectionFileError(f"{where}: {problem}")
        x, y, width, height = annotation["bbox"]
        annotations.append({
            "id": len(annotations) + 1,  # pycocotools reads a matched id of 0 as "unmatched"
            "image_id": annotation["image_id"], "category_id": annotation["category_id"],
            "bbox": [float(x), float(y), float(width), float(height)],
            "area": float(annotation.get("area", width * height)), "iscrowd": int(bool(annotation.get("iscrowd", 0))),
        })
    clean = {"images": [{key: images[i][key] for key in ("id", "file_name", "width", "height")} for i in sorted(images)],
             "annotations": annotations, "categories": [categories[k] for k in sorted(categories)]}
    return CocoTargets(path, clean)


def read_predictions(path: Path, targets: CocoTargets) -> list[dict[str, Any]]:
    """COCO results at ``path``, validated against ``targets``; returned as clean result dicts."""
    path = Path(path)
    data = _load_json(path, "predictions")
    if not isinstance(data, list):
        raise DetectionFileError(f"{path}: expected a JSON list of COCO results {{image_id, category_id, bbox, score}}")
    image_ids = {image["id"] for image in targets.data["images"]}
    category_ids = {category["id"] for category in targets.data["categories"]}
    detections = []
    for number, item in enumerate(data):
        where = f"{path}: entry {number}"
        if not isinstance(item, dict):
            raise DetectionFileError(f"{where} is not an object")
        if not _is_int(item.get("image_id")) or item["image_id"] not in image_ids:
            raise DetectionFileError(f"{where}: image_id {item.get('image_id')!r} is not an image of the targets {targets.path}")
        if not _is_int(item.get("category_id")) or item["category_id"] not in category_ids:
            raise DetectionFileError(
                f"{where}: category_id {item.get('category_id')!r} does not exist in the targets (categories {sorted(category_ids)})"
            )
        problem = _box_problem(item.get("bbox"), predicted=True)
        if problem:
            raise DetectionFileError(f"{where}: {problem}")
        if not is_finite_number(item.get("score")):
            raise DetectionFileError(f"{where}: score {item.get('score')!r} is not a finite number")
        detections.append({"image_id": item["image_id"], "category_id": item["category_id"],
                           "bbox": [float(value) for value in item["bbox"]], "score": float(item["score"])})
    return detections


def write_predictions(path: Path, detections: Sequence[dict[str, Any]]) -> Path:
    """Write COCO results (the predictions format); floats at full precision so re-scoring is exact."""
    Path(path).write_text(json.dumps(list(detections)) + "\n", encoding="utf-8")
    return Path(path)


def write_targets(path: Path, coco: dict[str, Any]) -> Path:
    Path(path).write_text(json.dumps(coco) + "\n", encoding="utf-8")
    return Path(path)


# ------------------------------------------------------------------------- pycocotools glue

def _quiet(function, *args):
    """pycocotools prints progress to stdout; the score verb's stdout is JSON."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def _coco(data: dict[str, Any]):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    _quiet(coco.createIndex)
    return coco


def selected(targets: CocoTargets, detections: Sequence[dict[str, Any]], rule: MetricRule) -> tuple[list[dict], list[int]]:
    """The detections and (sorted) image ids that ``rule`` scores."""
    kept = [det for det in detections if det["score"] >= rule.min_score]
    image_ids = targets.image_ids
    if rule.images == "with_box_and_detection":
        with_box = {annotation["image_id"] for annotation in targets.data["annotations"]}
        with_detection = {det["image_id"] for det in kept}
        image_ids = [image for image in image_ids if image in with_box and image in with_detection]
        kept = [det for det in kept if det["image_id"] in with_box]
    return kept, image_ids


def evaluate_images(targets: CocoTargets, detections: Sequence[dict[str, Any]], image_ids: Sequence[int],
                    iou_thresholds: Sequence[float]):
    """pycocotools' per-image matching (``COCOeval.evaluate``) at every IoU threshold, area "all",
    maxDets 100, on ``image_ids``; returns the evaluated ``COCOeval``."""
    from pycocotools.cocoeval import COCOeval

    results = [{**det, "id": number + 1, "area": det["bbox"][2] * det["bbox"][3], "iscrowd": 0}
               for number, det in enumerate(detections)]
    ground_truth = _coco(targets.data)
    found = _coco({"images": targets.data["images"], "categories": targets.data["categories"], "annotations": results})
    evaluation = COCOeval(ground_truth, found, iouType="bbox")
    evaluation.params.imgIds = list(image_ids)
    evaluation.params.iouThrs = np.asarray(iou_thresholds, dtype=float)
    evaluation.params.recThrs = RECALL_THRESHOLDS
    evaluation.params.maxDets = [MAX_DETECTIONS]
    evaluation.params.areaRng, evaluation.params.areaRngLbl = [AREA_ALL], ["all"]
    if image_ids:
        _quiet(evaluation.evaluate)
    return evaluation


def mean_ap(evaluation, thresholds: Sequence[float]) -> float:
    """pycocotools' summarised AP over ``thresholds`` (a subset of the evaluated ones): the mean of
    the accumulated precision over thresholds, recall points and categories that have a box."""
    if not evaluation.params.imgIds:
        return float("nan")
    _quiet(evaluation.accumulate)
    rows = [list(np.round(evaluation.params.iouThrs, 2)).index(threshold) for threshold in thresholds]
    precision = evaluation.eval["precision"][rows, :, :, 0, 0]
    defined = precision[precision > -1]
    return float(np.mean(defined)) if defined.size else float("nan")


# --------------------------------------------------------------------- per-image resampling

@dataclass(frozen=True)
class _MatchedCurve:
    """One category at one IoU threshold, detections in pycocotools' global score order:
    the image of every true positive, and per image the false positives that precede each
    true positive (false positives after the last true positive cannot change AP)."""

    tp_images: np.ndarray  # [S] image index of the s-th true positive
    fp_before: sparse.csr_matrix  # [S, n] false positives between true positives s-1 and s, per image
    n_boxes: np.ndarray  # [n] non-ignored ground-truth boxes per image


def weighted_ap(curve: _MatchedCurve, weights: np.ndarray) -> np.ndarray:
    """AP [R] of one curve when image i counts ``weights[r, i]`` times: pycocotools'
    ``accumulate`` (cumulative TP/FP, precision envelope, precision at the first point reaching
    each recall threshold, 0 beyond the last) evaluated on the true-positive points only, which
    is where recall rises and where the envelope takes its values."""
    boxes = weights @ curve.n_boxes
    ap = np.full(len(weights), np.nan)
    n_tp = len(curve.tp_images)
    if n_tp == 0:
        ap[boxes > 0] = 0.0
        return ap
    tp = np.cumsum(weights[:, curve.tp_images], axis=1)
    fp = np.cumsum(np.asarray(curve.fp_before @ weights.T), axis=0).T
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / boxes[:, None]
    precision = tp / (fp + tp + np.spacing(1))
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    for row in np.flatnonzero(boxes > 0):
        first = np.searchsorted(recall[row], RECALL_THRESHOLDS, side="left")
        reached = first < n_tp
        ap[row] = envelope[row, first[reached]].sum() / len(RECALL_THRESHOLDS)
    return ap


@dataclass(frozen=True)
class PerImageMatches:
    """pycocotools' per-image matches of one file pair under one :class:`MetricRule`, over all
    test images (``image_ids`` order); images the rule leaves out carry nothing."""

    image_ids: tuple[int, ...]
    thresholds: tuple[float, ...]
    curves: tuple[tuple[_MatchedCurve, ...], ...]  # [category][threshold]

    @classmethod
    def from_evaluation(cls, evaluation, image_ids: Sequence[int], thresholds: Sequence[float]) -> PerImageMatches:
        params = evaluation.params
        position = {image: index for index, image in enumerate(image_ids)}
        rows = [list(np.round(params.iouThrs, 2)).index(threshold) for threshold in thresholds]
        n_images, n_evaluated = len(image_ids), len(params.imgIds)
        curves = []
        for k in range(len(params.catIds)):
            entries = [evaluation.evalImgs[k * n_evaluated + i] for i in range(n_evaluated)] if n_evaluated else []
            entries = [(position[params.imgIds[i]], entry) for i, entry in enumerate(entries) if entry is not None]
            n_boxes = np.zeros(n_images)
            for image, entry in entries:
                n_boxes[image] = np.count_nonzero(np.asarray(entry["gtIgnore"]) == 0)
            scores = np.concatenate([entry["dtScores"] for _, entry in entries]) if entries else np.zeros(0)
            images = np.concatenate([np.full(len(entry["dtScores"]), image) for image, entry in entries]).astype(int) if entries else np.zeros(0, int)
            order = np.argsort(-scores, kind="mergesort")  # pycocotools' global order
            matched = np.concatenate([entry["dtMatches"] for _, entry in entries], axis=1)[:, order] if entries else np.zeros((len(params.iouThrs), 0))
            ignored = np.concatenate([entry["dtIgnore"] for _, entry in entries], axis=1)[:, order] if entries else np.zeros((len(params.iouThrs), 0), bool)
            images = images[order]
            per_threshold = []
            for row in rows:
                tp = (matched[row] != 0) & ~ignored[row]
                fp = (matched[row] == 0) & ~ignored[row]
                segment = np.cumsum(tp) - tp  # true positives before each detection
                n_tp = int(tp.sum())
                counted = fp & (segment < n_tp)
                fp_before = sparse.csr_matrix((np.ones(int(counted.sum())), (segment[counted], images[counted])),
                                              shape=(n_tp, n_images))
                per_threshold.append(_MatchedCurve(images[tp], fp_before, n_boxes))
            curves.append(tuple(per_threshold))
        return cls(tuple(image_ids), tuple(thresholds), tuple(curves))

    def metric(self, weights: np.ndarray) -> np.ndarray:
        """Mean AP [R] over thresholds and the categories with a box, per row of ``weights[R, n]``."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        if weights.shape[1] != len(self.image_ids):
            raise ValueError(f"weights have {weights.shape[1]} columns for {len(self.image_ids)} images")
        out = np.empty(len(weights))
        for start in range(0, len(weights), RESAMPLE_CHUNK):
            chunk = weights[start : start + RESAMPLE_CHUNK]
            values = np.array([[weighted_ap(curve, chunk) for curve in per_threshold] for per_threshold in self.curves])
            # [K, T, R]: a category without a box in the resample is left out, as pycocotools does;
            # a resample without any box has no AP (NaN)
            values = values.reshape(-1, len(chunk))
            defined = np.isfinite(values)
            with np.errstate(invalid="ignore"):
                out[start : start + len(chunk)] = np.where(defined, values, 0).sum(0) / defined.sum(0)
        return out


# ------------------------------------------------------------------------------- scoring

@dataclass(frozen=True)
class ScoredFile:
    """Every metric's full-set value (pycocotools) and per-image matches of one file pair."""

    targets: CocoTargets
    values: dict[str, float]
    matches: dict[str, PerImageMatches]


def score(targets: CocoTargets, detections: Sequence[dict[str, Any]], metrics: Sequence[str] = tuple(METRICS)) -> ScoredFile:
    """Evaluate ``metrics``; rules that share detections and images share one pycocotools run."""
    groups: dict[tuple, list[str]] = {}
    for name in metrics:
        rule = METRICS.get(name)
        groups.setdefault((rule.min_score, rule.images), []).append(name)
    values, matches = {}, {}
    image_ids = targets.image_ids
    for names in groups.values():
        rule = METRICS.get(names[0])
        kept, scored_images = selected(targets, detections, rule)
        thresholds = sorted({threshold for name in names for threshold in METRICS.get(name).iou_thresholds})
        evaluation = evaluate_images(targets, kept, scored_images, thresholds)
        for name in names:
            wanted = METRICS.get(name).iou_thresholds
            values[name] = mean_ap(evaluation, wanted)
            matches[name] = PerImageMatches.from_evaluation(evaluation, image_ids, wanted)
    return ScoredFile(targets, values, matches)


def labels_digest(targets: CocoTargets) -> str:
    """sha256 of the ground truth in sorted image-ID order: runs scored on other boxes never pair."""
    names = targets.names
    categories = {category["id"]: category["name"] for category in targets.data["categories"]}
    boxes: dict[str, list] = {name: [] for name in names.values()}
    for annotation in targets.data["annotations"]:
        boxes[names[annotation["image_id"]]].append([categories[annotation["category_id"]], annotation["bbox"], annotation["iscrowd"]])
    canonical = [[name, sorted(boxes[name], key=json.dumps)] for name in sorted(boxes)]
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()


def score_arrays(scored: ScoredFile, options: BootstrapOptions = BootstrapOptions()) -> dict[str, ScoredMetric]:
    """Each metric's pycocotools value with a seeded percentile interval over bootstrap resamples of the images."""
    n_images = len(scored.targets.image_ids)
    return {name: ScoredMetric(replace(bootstrap_ci_weighted(scored.matches[name].metric, n_images, options), value=value))
            for name, value in scored.values.items()}


class DetectionScorer:
    """The ``detection`` task's scorer (``benchmark.scoring.TaskScorer``)."""

    metrics = {"map": MetricSpec("map", "mAP"), "map_mgca": MetricSpec("map_mgca", "mAP (reference rule)"),
               "map_coco": MetricSpec("map_coco", "mAP@[.5:.95]"), "ap50": MetricSpec("ap50", "AP50")}

    def headline(self, dataset: str) -> str:
        return PRIMARY_METRIC  # every dataset's

    def score_files(self, predictions: Path, targets: Path, dataset: str,
                    options: BootstrapOptions = BootstrapOptions()) -> ScoreReport:
        """Every metric of a COCO results file against the test split's COCO ground truth (the ``score`` verb)."""
        truth = read_targets(targets)
        scored = score(truth, read_predictions(predictions, truth))
        metrics = score_arrays(scored, options)
        notes = []
        if not truth.data["annotations"]:
            notes.append("the targets hold no box: AP is undefined (NaN) for every metric")
        elif math.isnan(scored.values["map_mgca"]):
            notes.append("map_mgca is undefined: no image has both a box and a detection with score >= 0.5")
        for name, metric in metrics.items():
            if 0 < metric.interval.n_valid < metric.interval.n_resamples:
                notes.append(f"{name}: undefined on {metric.interval.n_resamples - metric.interval.n_valid} of "
                             f"{metric.interval.n_resamples} bootstrap resamples (left out)")
        return ScoreReport(task="detection", dataset=dataset, primary_metric=PRIMARY_METRIC, n_images=len(truth.image_ids),
                           metrics=metrics, warnings=tuple(notes), predictions=str(predictions), targets=str(targets))

    def per_image(self, predictions: Path, targets: Path, dataset: str, metric: str) -> PerImageRun:
        """``metric`` on re-weighted test images, for the paired bootstrap."""
        del dataset  # the detection metrics are the same for every dataset
        truth = read_targets(targets)
        scored = score(truth, read_predictions(predictions, truth), [metric])
        names = truth.names
        return PerImageRun(ids=tuple(names[image] for image in truth.image_ids), labels_digest=labels_digest(truth),
                           metric=scored.matches[metric].metric)

    def target_set(self, targets: Path, dataset: str) -> TargetSet:
        """Boxes in the original images' pixels: the same for every model."""
        del dataset
        return TargetSet(labels_digest(read_targets(targets)))


SCORERS.add("detection", DetectionScorer())
