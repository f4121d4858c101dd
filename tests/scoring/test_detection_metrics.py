"""Detection metrics against hand-computed values and pycocotools, resampling, file validation."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmark.scoring import scorer
from benchmark.scoring.bootstrap import BootstrapOptions, resample_weights
from benchmark.scoring.detection import (
    METRICS,
    DetectionFileError,
    read_predictions,
    read_targets,
    score,
)


def coco_targets(boxes_per_image: list[list[list[float]]], size: int = 100, categories: int = 1) -> dict:
    """COCO ground truth; a box is [x, y, w, h] or [x, y, w, h, category]."""
    coco = {"images": [], "annotations": [], "categories": [{"id": k + 1, "name": f"c{k + 1}"} for k in range(categories)]}
    for number, boxes in enumerate(boxes_per_image, start=1):
        coco["images"].append({"id": number, "file_name": f"img{number:04d}", "width": size, "height": size})
        for box in boxes:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": number,
                                        "category_id": int(box[4]) if len(box) > 4 else 1, "bbox": list(box[:4]),
                                        "area": box[2] * box[3], "iscrowd": 0})
    return coco


def det(image_id: int, bbox: list[float], score: float, category: int = 1) -> dict:
    return {"image_id": image_id, "category_id": category, "bbox": bbox, "score": score}


@pytest.fixture
def write(tmp_path: Path):
    def write(name: str, content: object) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(content))
        return path
    return write


def values(targets: dict, detections: list[dict], tmp_path: Path) -> dict[str, float]:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(targets))
    truth = read_targets(path)
    return score(truth, detections).values


# ----------------------------------------------------------------------- hand-computed values

BOX = [10.0, 10.0, 20.0, 20.0]


def test_a_perfect_detection_scores_one_everywhere(tmp_path):
    result = values(coco_targets([[BOX]]), [det(1, BOX, 0.9)], tmp_path)
    assert result == pytest.approx({"map": 1.0, "map_mgca": 1.0, "map_coco": 1.0, "ap50": 1.0})


def test_a_higher_scored_false_positive_halves_the_precision(tmp_path):
    # sorted: FP (0.9) then TP (0.8): precision 1/2 at recall 1, so every recall point gets 0.5
    result = values(coco_targets([[BOX]]), [det(1, [60, 60, 20, 20], 0.9), det(1, BOX, 0.8)], tmp_path)
    assert result["map"] == pytest.approx(0.5)
    assert result["map_mgca"] == pytest.approx(0.5)


def test_iou_thresholds_count_a_box_with_iou_062_as_a_hit_up_to_060(tmp_path):
    # same x-range, height 12.4 of 20 inside the box: IoU 0.62
    result = values(coco_targets([[BOX]]), [det(1, [10, 10, 20, 12.4], 0.9)], tmp_path)
    assert result["map"] == pytest.approx(5 / 8)  # 0.40 ... 0.60 of 0.40 ... 0.75
    assert result["map_coco"] == pytest.approx(3 / 10)  # 0.50, 0.55, 0.60 of 0.50 ... 0.95
    assert result["ap50"] == pytest.approx(1.0)


def test_false_positives_on_negative_images_count_except_in_the_reference_rule(tmp_path):
    # image 2 has no box (a negative): its 0.95 detection comes first -> precision 1/2 (defect B1)
    targets = coco_targets([[BOX], []])
    result = values(targets, [det(1, BOX, 0.9), det(2, BOX, 0.95)], tmp_path)
    assert result["map"] == pytest.approx(0.5)
    assert result["map_mgca"] == pytest.approx(1.0)  # the reference skips images without a box


def test_missed_images_count_except_in_the_reference_rule(tmp_path):
    # image 2's box is never found: recall stops at 0.5, so 51 of the 101 recall points (0 ... 0.50) get 1
    result = values(coco_targets([[BOX], [BOX]]), [det(1, BOX, 0.9)], tmp_path)
    assert result["map"] == pytest.approx(51 / 101)
    assert result["map_mgca"] == pytest.approx(1.0)  # the reference skips images without a detection


def test_reference_rule_drops_detections_below_half(tmp_path):
    # the only hit scores 0.3: the reference sees no detection anywhere, so it has no image to score
    result = values(coco_targets([[BOX], [BOX]]), [det(1, BOX, 0.3), det(2, BOX, 0.6)], tmp_path)
    assert result["map"] == pytest.approx(1.0)
    assert result["map_mgca"] == pytest.approx(1.0)  # image 1 skipped; image 2 perfect
    assert math.isnan(values(coco_targets([[BOX]]), [det(1, BOX, 0.3)], tmp_path)["map_mgca"])


def test_only_the_hundred_best_detections_of_an_image_count(tmp_path):
    misses = [det(1, [60, 60, 10, 10], 0.5 + i / 1000) for i in range(100)]
    assert values(coco_targets([[BOX]]), [*misses, det(1, BOX, 0.4)], tmp_path)["map"] == 0.0


def test_ap_is_undefined_without_any_box(tmp_path):
    result = values(coco_targets([[], []]), [det(1, BOX, 0.9)], tmp_path)
    assert all(math.isnan(value) for value in result.values())


# ------------------------------------------------------------------- pycocotools agreement

def synthetic(n_images: int, seed: int, categories: int = 1, dets_per_image: int = 6):
    """Random boxes (60 % of images have 1-3) and detections: jittered copies of boxes plus clutter."""
    rng = np.random.default_rng(seed)
    boxes, detections = [], []
    for image in range(1, n_images + 1):
        truth = []
        for _ in range(rng.integers(1, 4) if rng.random() < 0.6 else 0):
            x, y = rng.uniform(0, 60, 2)
            w, h = rng.uniform(8, 40, 2)
            truth.append([x, y, w, h, rng.integers(1, categories + 1)])
        boxes.append(truth)
        for x, y, w, h, category in truth:
            if rng.random() < 0.8:
                jitter = rng.normal(0, 0.15, 4) * [w, h, w, h]
                detections.append(det(image, [max(0.0, x + jitter[0]), max(0.0, y + jitter[1]), abs(w + jitter[2]), abs(h + jitter[3])],
                                      float(rng.random()), int(category)))
        for _ in range(rng.integers(0, dets_per_image)):
            x, y = rng.uniform(0, 70, 2)
            detections.append(det(image, [x, y, *rng.uniform(5, 30, 2)], float(rng.random()) * 0.8, int(rng.integers(1, categories + 1))))
    return coco_targets(boxes, categories=categories), detections


def pycocotools_map(targets: dict, detections: list[dict], thresholds, image_ids=None) -> float:
    """The official route: COCO.loadRes, COCOeval.evaluate/accumulate, summarize's mean over precision > -1."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = json.loads(json.dumps(targets))
        truth.createIndex()
        found = truth.loadRes(json.loads(json.dumps(detections)))
        evaluation = COCOeval(truth, found, "bbox")
        evaluation.params.iouThrs = np.array(thresholds)
        if image_ids is not None:
            evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # area "all", maxDets 100
    return float(np.mean(precision[precision > -1]))


@pytest.mark.parametrize("categories", [1, 2])
def test_every_metric_equals_pycocotools_and_so_does_the_per_image_route(tmp_path, categories):
    targets, detections = synthetic(60, seed=categories, categories=categories)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(targets))
    scored = score(read_targets(path), detections)
    mgca_images = sorted({d["image_id"] for d in detections if d["score"] >= 0.5}
                         & {a["image_id"] for a in targets["annotations"]})
    expected = {
        "map": pycocotools_map(targets, detections, METRICS.get("map").iou_thresholds),
        "map_coco": pycocotools_map(targets, detections, METRICS.get("map_coco").iou_thresholds),
        "ap50": pycocotools_map(targets, detections, [0.5]),
        "map_mgca": pycocotools_map(targets, [d for d in detections if d["score"] >= 0.5],
                                    METRICS.get("map").iou_thresholds, mgca_images),
    }
    ones = np.ones((1, 60))
    for name, value in expected.items():
        assert 0.05 < value < 0.95, name  # a non-trivial case
        assert scored.values[name] == pytest.approx(value, abs=1e-12), name
        assert scored.matches[name].metric(ones)[0] == pytest.approx(value, abs=1e-9), name


def test_a_weighted_resample_equals_pycocotools_on_the_duplicated_images(tmp_path):
    targets, detections = synthetic(40, seed=7, categories=2)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(targets))
    scored = score(read_targets(path), detections, ["map", "map_mgca"])
    weights = next(resample_weights(40, BootstrapOptions(n_resamples=3, seed=3)))
    for weight in weights:
        row = np.repeat(np.arange(40), weight.astype(int))
        # the resampled data set, built the slow way: image i copied weight[i] times
        copies = {"images": [], "annotations": [], "categories": targets["categories"]}
        copied_detections = []
        for new_id, old in enumerate(sorted(row), start=1):
            copies["images"].append({**targets["images"][old], "id": new_id, "file_name": f"copy{new_id}"})
            copies["annotations"] += [{**a, "image_id": new_id, "id": len(copies["annotations"]) + k + 1}
                                      for k, a in enumerate(a for a in targets["annotations"] if a["image_id"] == old + 1)]
            copied_detections += [{**d, "image_id": new_id} for d in detections if d["image_id"] == old + 1]
        assert scored.matches["map"].metric(weight[None])[0] == pytest.approx(
            pycocotools_map(copies, copied_detections, METRICS.get("map").iou_thresholds), abs=1e-9)
        mgca_images = sorted({d["image_id"] for d in copied_detections if d["score"] >= 0.5}
                             & {a["image_id"] for a in copies["annotations"]})
        assert scored.matches["map_mgca"].metric(weight[None])[0] == pytest.approx(pycocotools_map(
            copies, [d for d in copied_detections if d["score"] >= 0.5], METRICS.get("map").iou_thresholds, mgca_images), abs=1e-9)


# ------------------------------------------------------------------------- scorer and files

def test_score_files_reports_every_metric_with_an_interval(write):
    targets, detections = synthetic(30, seed=1)
    result = scorer("detection").score_files(write("dets.json", detections), write("gt.json", targets), "rsna",
                                             BootstrapOptions(n_resamples=50, seed=0))
    assert result.primary_metric == "map" and result.n_images == 30
    assert set(result.metrics) == {"map", "map_mgca", "map_coco", "ap50"}
    for metric in result.metrics.values():
        assert metric.interval.low <= metric.value <= metric.interval.high
        assert metric.interval.n_resamples == 50 and metric.per_class is None


def test_per_image_run_names_images_by_their_dataset_id(write):
    targets, detections = synthetic(10, seed=2)
    run = scorer("detection").per_image(write("dets.json", detections), write("gt.json", targets), "rsna", "map")
    assert run.ids == tuple(f"img{i:04d}" for i in range(1, 11))
    shuffled = {**targets, "images": targets["images"][::-1], "annotations": targets["annotations"][::-1]}
    assert scorer("detection").per_image(write("dets.json", detections), write("gt2.json", shuffled), "rsna", "map").labels_digest == run.labels_digest
    assert run.metric(np.ones((2, 10))).shape == (2,)


def test_predicted_boxes_reaching_outside_the_image_are_scored_as_they_are(write):
    # 100 x 100 images. Image 1: box [0, 0, 20, 20], prediction [-5, -5, 25, 25]: IoU 400 / 625 = 0.64, a hit at
    # 0.40 ... 0.60 (5 of the 8 thresholds). Image 2: box [80, 80, 20, 20], prediction [80, 80, 30, 30] (past the
    # width and height): IoU 400 / 900 = 0.44, a hit at 0.40 only. Unclipped, as pycocotools scores them.
    truth = read_targets(write("gt.json", coco_targets([[[0.0, 0.0, 20.0, 20.0]], [[80.0, 80.0, 20.0, 20.0]]])))
    first = read_predictions(write("a.json", [det(1, [-5.0, -5.0, 25.0, 25.0], 0.9)]), truth)
    assert first[0]["bbox"] == [-5.0, -5.0, 25.0, 25.0]
    # recall 1/2 at precision 1: 51 of the 101 recall points
    assert score(truth, first, ["map"]).values["map"] == pytest.approx(51 / 101 * 5 / 8)
    both = read_predictions(write("b.json", [det(1, [-5.0, -5.0, 25.0, 25.0], 0.9), det(2, [80.0, 80.0, 30.0, 30.0], 0.8)]), truth)
    # threshold 0.40: both hit, AP 1; 0.45 ... 0.60: the first only, AP 51/101; above: 0
    assert score(truth, both, ["map"]).values["map"] == pytest.approx((1 + 4 * 51 / 101) / 8)


@pytest.mark.parametrize(("entry", "message"), [
    (det(99, BOX, 0.5), "image_id 99 is not an image of the targets"),
    (det(1, BOX, 0.5, category=7), "category_id 7 does not exist"),
    (det(1, [1.0, 2.0, -3.0, 4.0], 0.5), "negative size"),
    (det(1, [float("nan"), 2.0, 3.0, 4.0], 0.5), "not four finite numbers"),
    (det(1, BOX, float("nan")), "score nan is not a finite number"),
    ({"image_id": 1, "bbox": BOX, "score": 0.5}, "category_id None does not exist"),
])
def test_bad_predictions_name_the_file_entry_and_problem(write, entry, message):
    truth = read_targets(write("gt.json", coco_targets([[BOX]])))
    path = write("dets.json", [det(1, BOX, 0.9), entry])
    with pytest.raises(DetectionFileError, match=message) as error:
        read_predictions(path, truth)
    assert str(error.value).startswith(f"{path}: entry 1: ")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("content", "message"), [
    (coco_targets([]), "list no image"),
    ({"images": []}, "not a COCO ground-truth file"),
    ({**coco_targets([[BOX]]), "annotations": [{"image_id": 5, "category_id": 1, "bbox": BOX}]}, "image_id 5 is not listed"),
    ({**coco_targets([[BOX]]), "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 0, 3]}]}, "zero size"),
    ({**coco_targets([[BOX]]), "annotations": [{"image_id": 1, "category_id": 1, "bbox": [-1, 0, 3, 3]}]}, "negative coordinate"),
])
def test_bad_targets_name_the_file_and_problem(write, content, message):
    path = write("gt.json", content)
    with pytest.raises(DetectionFileError, match=message):
        read_targets(path)


def test_missing_and_unreadable_files(tmp_path, write):
    with pytest.raises(DetectionFileError, match="targets file not found"):
        read_targets(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DetectionFileError, match="not a readable JSON targets file"):
        read_targets(bad)
    truth = read_targets(write("gt.json", coco_targets([[BOX]])))
    assert read_predictions(write("empty.json", []), truth) == []


def test_the_target_set_is_the_ground_truth_digest_paired_runs_compare(write):
    targets, detections = synthetic(10, seed=2)
    found = scorer("detection").target_set(write("gt.json", targets), "object_cxr")
    assert found.geometry == ""  # boxes in the original images' pixels, whatever the model
    assert found.digest == scorer("detection").per_image(write("dets.json", detections), write("gt.json", targets), "rsna", "map").labels_digest
    moved = json.loads(json.dumps(targets))
    moved["annotations"][0]["bbox"][0] += 1
    assert scorer("detection").target_set(write("gt2.json", moved), "object_cxr").digest != found.digest
