"""Segmentation metrics against hand-computed values, file validation, the scorer and the score verb."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmark.cli import main
from benchmark.scoring import scorer
from benchmark.scoring.bootstrap import BootstrapOptions
from benchmark.scoring.segmentation import (
    METRICS,
    ImageCounts,
    SegmentationFileError,
    bootstrap_intervals,
    dice,
    dice_per_image,
    dice_pooled,
    dice_positive,
    image_counts,
    metric_values,
    miou,
    quantize,
    score_images,
    write_predictions,
    write_targets,
)


def maps(*rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=float)


# Three 2x2 images, hand-counted:
#   a: truth {(0,0), (0,1)}, prediction {(0,0), (1,1)} -> TP 1, FP 1, FN 1, TN 1, Dice 2/4 = 0.5
#   b: empty truth, empty prediction                    -> TN 4, Dice 1
#   c: empty truth, prediction {(1,0)}                  -> FP 1, TN 3, Dice 0
PROBS = maps([[0.9, 0.2], [0.1, 0.7]], [[0.5, 0.0], [0.3, 0.4]], [[0.1, 0.2], [0.51, 0.0]])
MASKS = maps([[1, 1], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 0]]).astype(bool)
ONES = np.ones((1, 3))


@pytest.fixture(scope="module")
def counts() -> ImageCounts:
    return image_counts(PROBS, MASKS)


def test_counts_threshold_is_strictly_above_one_half(counts):
    assert counts.tp.tolist() == [1, 0, 0]
    assert counts.fp.tolist() == [1, 0, 1]  # 0.5 in image b is not a prediction, 0.51 in image c is
    assert counts.fn.tolist() == [1, 0, 0]
    assert counts.tn.tolist() == [1, 4, 3]


def test_dice_per_image_scores_empty_truth_one_or_zero(counts):
    assert dice_per_image(counts).tolist() == [0.5, 1.0, 0.0]


def test_dice_is_the_mean_over_all_images(counts):
    assert dice(counts, ONES)[0] == pytest.approx(0.5)  # (0.5 + 1 + 0) / 3


def test_dice_positive_uses_images_with_a_true_mask_only(counts):
    assert dice_positive(counts, ONES)[0] == pytest.approx(0.5)


def test_dice_pooled_is_one_dice_over_all_pixels(counts):
    assert dice_pooled(counts, ONES)[0] == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))  # 2 TP / (2 TP + FP + FN) = 0.4


def test_miou_averages_foreground_and_background_iou(counts):
    foreground = 1 / (1 + 2 + 1)  # TP / (TP + FP + FN)
    background = 8 / (8 + 2 + 1)  # TN / (TN + FP + FN)
    assert miou(counts, ONES)[0] == pytest.approx((foreground + background) / 2)


def test_empty_test_set_conventions():
    empty = image_counts(maps([[0.1, 0.2]]), maps([[0, 0]]).astype(bool))
    values = metric_values(empty)
    assert values["dice"] == 1.0 and values["dice_pooled"] == 1.0
    assert np.isnan(values["dice_positive"])
    assert values["miou"] == 1.0  # foreground absent everywhere: left out, background IoU 1


def test_dice_does_not_depend_on_batch_size(counts):
    # B8: the reference averages batch means; here the same images in any grouping give one value
    halves = ImageCounts.concatenate([image_counts(PROBS[:1], MASKS[:1]), image_counts(PROBS[1:], MASKS[1:])])
    assert metric_values(halves) == metric_values(counts)


def test_weights_are_image_multiplicities(counts):
    # image a twice, b once, c not at all: Dice (0.5 + 0.5 + 1) / 3
    weights = np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert dice(counts, weights) == pytest.approx([2 / 3, 0.5])
    assert dice_pooled(counts, weights)[0] == pytest.approx(4 / (4 + 2 + 2))


def test_bootstrap_interval_brackets_the_value(counts):
    intervals = bootstrap_intervals(counts, BootstrapOptions(n_resamples=200, seed=0))
    assert set(intervals) == set(METRICS.names())
    entry = intervals["dice"]
    assert entry.low <= entry.value <= entry.high and entry.n_valid == 200


def test_quantisation_keeps_the_threshold_exactly():
    p = np.array([0.0, 0.4999, 0.5, np.nextafter(0.5, 1), 0.5001, 0.502, 1.0])
    q = quantize(p)
    assert ((q >= 128) == (p > 0.5)).all()
    assert q[0] == 0 and q[-1] == 255
    assert np.abs(q / 255 - p).max() <= 0.5 / 255


# ------------------------------------------------------------------------------ files

@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    ids = ["a", "b", "c"]
    return write_predictions(tmp_path / "p.npz", ids, PROBS), write_targets(tmp_path / "t.npz", ids, MASKS)


def test_files_round_trip_to_the_same_counts(files, counts):
    scored = score_images(*files, chunk_rows=2)  # two chunks
    assert scored.ids == ("a", "b", "c")
    assert scored.counts.tp.tolist() == counts.tp.tolist() and scored.counts.fp.tolist() == counts.fp.tolist()


def test_row_order_of_the_predictions_may_differ(tmp_path, files):
    predictions, targets = files
    shuffled = write_predictions(tmp_path / "shuffled.npz", ["c", "a", "b"], PROBS[[2, 0, 1]])
    assert metric_values(score_images(shuffled, targets).counts) == metric_values(score_images(predictions, targets).counts)
    assert score_images(shuffled, targets).labels_digest == score_images(predictions, targets).labels_digest


def test_png_mask_folder_as_targets(tmp_path, files):
    folder = tmp_path / "masks"
    folder.mkdir()
    for image_id, mask in zip("abc", MASKS):
        cv2.imwrite(str(folder / f"{image_id}.png"), np.where(mask, 255, 0).astype(np.uint8))
    cv2.imwrite(str(folder / "other-split.png"), np.zeros((2, 2), np.uint8))  # ignored
    predictions, targets = files
    assert metric_values(score_images(predictions, folder).counts) == metric_values(score_images(predictions, targets).counts)


def test_scorer_json_and_per_image_metric(files):
    predictions, targets = files
    segmentation = scorer("segmentation")
    result = segmentation.score_files(predictions, targets, "siim", BootstrapOptions(n_resamples=50))
    assert result.primary_metric == "dice" and result.n_images == 3 and result.n_positive_images == 1
    assert result.metrics["dice"].value == pytest.approx(0.5)
    run = segmentation.per_image(predictions, targets, "siim", "dice")
    assert run.ids == ("a", "b", "c")
    assert run.metric(np.array([[1, 1, 1], [0, 3, 0]])) == pytest.approx([0.5, 1.0])


@pytest.mark.parametrize("problem, message", [
    ("missing", "1 test id(s) missing"),
    ("extra", "not in the targets"),
    ("shape", "predict at the targets' size"),
    ("range", "must lie in [0, 1]"),
    ("nan", "probs hold NaN, first in row 1 (id 'b')"),
    ("duplicate", "duplicated id"),
    ("mask", "masks must hold 0 and 1 only"),
    ("no-probs", "no array 'probs'"),
    ("json", "not an NPZ predictions file"),  # not np.load's advice to set allow_pickle
    ("npy", "not an NPZ predictions file"),
])
def test_bad_files_fail_with_one_clear_line(tmp_path, files, problem, message):
    predictions, targets = files
    ids, probs = ["a", "b", "c"], PROBS.copy()
    if problem == "missing":
        write_predictions(predictions, ids[:2], probs[:2])
    elif problem == "extra":
        write_predictions(predictions, [*ids, "d"], np.concatenate([probs, probs[:1]]))
    elif problem == "shape":
        write_predictions(predictions, ids, np.zeros((3, 4, 4)))
    elif problem == "range":
        probs[2, 0, 0] = 1.5
        np.savez_compressed(predictions, ids=np.array(ids), probs=probs)
    elif problem == "nan":
        probs[1, 1, 1] = np.nan
        np.savez_compressed(predictions, ids=np.array(ids), probs=probs)
    elif problem == "duplicate":
        write_predictions(predictions, ["a", "a", "c"], probs)
    elif problem == "mask":
        np.savez_compressed(targets, ids=np.array(ids), masks=np.full((3, 2, 2), 2, np.uint8))
    elif problem == "no-probs":
        np.savez_compressed(predictions, ids=np.array(ids), scores=probs)
    elif problem == "json":
        predictions.write_text('{"ids": ["a", "b", "c"]}')
    elif problem == "npy":
        with open(predictions, "wb") as handle:
            np.save(handle, probs)
    with pytest.raises(SegmentationFileError, match=None) as error:
        score_images(predictions, targets)
    text = str(error.value)
    assert message in text and "\n" not in text and "pickle" not in text
    assert str(predictions) in text or str(targets) in text


def test_score_verb_prints_the_scorer_json_and_exits_2_on_bad_files(files, capsys):
    predictions, targets = files
    argv = ["score", "segmentation", "--predictions", str(predictions), "--targets", str(targets),
            "--dataset", "siim", "--n-resamples", "50"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = scorer("segmentation").score_files(predictions, targets, "siim", BootstrapOptions(n_resamples=50))
    assert printed == json.loads(json.dumps(expected.to_dict()))
    np.savez_compressed(predictions, ids=np.array(["a", "b", "c"]), probs=np.full((3, 2, 2), -1.0))
    assert main(argv) == 2
    assert "must lie in [0, 1]" in capsys.readouterr().err


def test_the_target_set_is_the_ground_truth_digest_per_mask_size(tmp_path, files):
    predictions, targets = files
    found = scorer("segmentation").target_set(targets, "siim")
    assert (found.digest, found.geometry) == (score_images(predictions, targets).labels_digest, "2x2")
    flipped = MASKS.copy()
    flipped[1, 0, 0] = True
    assert scorer("segmentation").target_set(write_targets(tmp_path / "t2.npz", ["a", "b", "c"], flipped), "siim").digest != found.digest
