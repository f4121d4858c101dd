"""Shared preparation helpers: CSV checks, reference and seeded draws, verification, writing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pycocotools.coco import COCO

from benchmark.data.cache import CacheResult
from benchmark.data.prepared import DataError, Manifest, PreparedDataset, read_ids
from benchmark.data.preparation import (
    DEMO_MARKER,
    LINE,
    Partition,
    Problems,
    coco_annotations,
    check_box,
    finish,
    fraction_subsets,
    numeric_column,
    read_label_csv,
    reference_frac_sample,
    reference_numpy_choice,
    stratified_draw,
    verify_partitions,
    write_mask,
)
from benchmark.data.registry import PrepareOptions

IDS = [f"id{i:04d}" for i in range(1000)]
LABELS = {item: int(i % 5 == 0) for i, item in enumerate(IDS)}  # 20 % positive


def test_read_label_csv_strips_names_and_values_and_numbers_lines(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("ImageId, EncodedPixels\na, -1\nb,1 2\n")
    frame = read_label_csv(path, ["ImageId", "EncodedPixels"])
    assert frame["EncodedPixels"].tolist() == ["-1", "1 2"]
    assert frame[LINE].tolist() == [2, 3]


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    # Regression: pandas skips blank lines, so every row after one was named by the wrong line.
    path = tmp_path / "labels.csv"
    path.write_text("ImageId,EncodedPixels\na,-1\n\n  \nb,1 2\n")
    frame = read_label_csv(path, ["ImageId", "EncodedPixels"])
    assert frame["ImageId"].tolist() == ["a", "b"] and frame[LINE].tolist() == [2, 5]
    assert frame.index.tolist() == [0, 1]


def test_missing_or_renamed_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("patientId,x,y,width,height,Targets\np,1,1,1,1,1\n")
    with pytest.raises(DataError, match=r"labels.csv: missing column\(s\) 'Target' \(renamed to 'Targets'\?\)"):
        read_label_csv(path, ["patientId", "Target"])


def test_missing_label_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="absent.csv: missing"):
        read_label_csv(tmp_path / "absent.csv", ["a"])


def test_numeric_column_names_the_line(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": ["1", "", "abc"], LINE: [2, 3, 4]})
    with pytest.raises(DataError, match="f.csv line 4: column 'x' holds 'abc'"):
        numeric_column(frame, "x", Path("f.csv"), allow_empty=True)
    assert np.isnan(numeric_column(frame.iloc[:2], "x", Path("f.csv"), allow_empty=True).iloc[1])


def test_reference_frac_sample_is_pandas_sample_with_seed_42() -> None:
    expected = set(pd.DataFrame({"id": IDS}).sample(frac=0.1, random_state=42)["id"])
    subset = reference_frac_sample(IDS, 10)
    assert set(subset) == expected and len(subset) == 100
    assert subset == [item for item in IDS if item in expected]  # split order
    assert len(reference_frac_sample([str(i) for i in range(1867)], 10)) == 187  # round(186.7), not int()


def test_reference_numpy_choice_is_the_second_draw_after_seeding() -> None:
    np.random.seed(42)
    np.random.choice(1000, 10, replace=False)
    second = np.random.choice(1000, 10, replace=False)
    assert set(reference_numpy_choice(IDS, 1)) == {IDS[i] for i in second}
    assert len(reference_numpy_choice(IDS[:999], 10)) == 99  # int(), not round()


def test_stratified_draws_keep_label_shares_and_differ_by_seed() -> None:
    first = stratified_draw(IDS, 100, (42, 10, 1), LABELS)
    second = stratified_draw(IDS, 100, (42, 10, 2), LABELS)
    assert sum(LABELS[item] for item in first) == 20 == sum(LABELS[item] for item in second)
    assert first != second and first == stratified_draw(IDS, 100, (42, 10, 1), LABELS)
    balanced = stratified_draw(IDS, 101, (42, 1, 1), LABELS, balanced=True)
    assert sorted([sum(LABELS[item] for item in balanced), 101 - sum(LABELS[item] for item in balanced)]) == [50, 51]
    with pytest.raises(DataError, match="too few"):
        stratified_draw(IDS, 900, (1,), LABELS, balanced=True)


def test_fraction_subsets_have_equal_sizes_across_draws() -> None:
    subsets = fraction_subsets(IDS, reference_frac_sample, LABELS)
    assert sorted(subsets) == [(1, 0), (1, 1), (1, 2), (10, 0), (10, 1), (10, 2)]
    assert {len(ids) for (percent, _), ids in subsets.items() if percent == 10} == {100}
    assert all(set(ids) <= set(IDS) for ids in subsets.values())


def test_partition_rejects_overlapping_splits() -> None:
    with pytest.raises(DataError, match="'b' is in both"):
        Partition("p", {"train": ["a", "b"], "val": ["b"], "test": ["c"]})


def _partition() -> Partition:
    return Partition("classification", {"train": IDS[:800], "val": IDS[800:900], "test": IDS[900:]},
                     fraction_subsets(IDS[:800], reference_frac_sample, LABELS))


def _options(tmp_path: Path, verify: bool = True) -> PrepareOptions:
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    return PrepareOptions(raw=raw, out=tmp_path / "out" / "toy", image_size=8, verify_shipped=verify, workers=1)


def _ship(root: Path, partition: Partition) -> None:
    for name, ids in partition.files().items():
        path = root / "toy" / partition.name / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{item}\n" for item in ids))


def test_verification_passes_and_adopts_the_shipped_order(tmp_path: Path) -> None:
    shipped = _partition()
    _ship(tmp_path / "splits", shipped)
    reordered = Partition(shipped.name, {**shipped.splits, "val": shipped.splits["val"][::-1]}, shipped.subsets)
    [verified], status = verify_partitions("toy", [reordered], _options(tmp_path), tmp_path / "splits")
    assert status.startswith("passed: 9 ID lists") and verified.splits["val"] == shipped.splits["val"]


def test_verification_mismatch_names_split_counts_examples_and_override(tmp_path: Path) -> None:
    shipped = _partition()
    _ship(tmp_path / "splits", shipped)
    broken = Partition(shipped.name, {**shipped.splits, "test": shipped.splits["test"][1:] + ["stranger"]}, shipped.subsets)
    with pytest.raises(DataError) as error:
        verify_partitions("toy", [broken], _options(tmp_path), tmp_path / "splits")
    message = str(error.value)
    assert "classification/test.txt: 100 IDs, shipped 100; 1 missing (e.g. ['id0900'])" in message
    assert "1 extra (e.g. ['stranger'])" in message and "--no-verify" in message
    assert "train.txt" not in message


def test_verification_skipped_for_demo_data_and_no_verify(tmp_path: Path) -> None:
    _ship(tmp_path / "splits", _partition())
    broken = Partition("classification", {"train": ["x"], "val": ["y"], "test": ["z"]})
    options = _options(tmp_path, verify=False)
    assert verify_partitions("toy", [broken], options, tmp_path / "splits")[1] == "skipped: --no-verify"
    (options.raw / DEMO_MARKER).write_text("")
    assert verify_partitions("toy", [broken], _options(tmp_path), tmp_path / "splits")[1].startswith("skipped: demo")


def test_problems_raise_or_are_counted() -> None:
    with pytest.raises(DataError, match=r"labels.csv line 7 \(p1\): bad box .*--on-error exclude"):
        Problems("raise").report("labels.csv", 7, "p1", "bad box")
    problems = Problems("exclude")
    problems.report("labels.csv", 7, "p1", "bad box")
    assert problems.excluded == [{"file": "labels.csv", "row": 7, "id": "p1", "reason": "bad box"}]
    assert problems.excluded_ids == {"p1"}


def test_check_box() -> None:
    assert check_box([0, 0, 10, 10], 10, 10) is None
    assert "outside the 10x10 image" in check_box([5, 5, 11, 9], 10, 10)
    assert "empty" in check_box([5, 5, 5, 9], 10, 10)


def test_coco_annotations_load_in_pycocotools() -> None:
    coco_json = coco_annotations([("a", 100, 80, [[10, 20, 30, 60]]), ("b", 100, 80, [])], "pneumonia")
    coco = COCO()
    coco.dataset = coco_json
    coco.createIndex()
    assert len(coco.getImgIds()) == 2 and coco.anns[1]["bbox"] == [10.0, 20.0, 20.0, 40.0]
    assert coco.anns[1]["area"] == 800.0 and coco.getAnnIds(imgIds=[2]) == []


def test_write_mask_resizes_and_binarises(tmp_path: Path) -> None:
    import cv2

    mask = np.zeros((64, 64), dtype=bool)
    mask[:32, :] = True
    write_mask(tmp_path, "m", mask, 16, "stretch")
    written = cv2.imread(str(tmp_path / "masks" / "m.png"), cv2.IMREAD_UNCHANGED)
    assert written.shape == (16, 16) and set(np.unique(written)) == {0, 255}
    assert (written[:8] == 255).all() and (written[8:] == 0).all()


def test_finish_drops_exclusions_and_writes_the_layout(tmp_path: Path) -> None:
    options = _options(tmp_path, verify=False)
    options.out.mkdir(parents=True)
    partition = _partition()
    kept = IDS[1:]
    np.save(options.out / "images.npy", np.zeros((len(kept), 8, 8), np.uint8))
    (options.out / "images.ids.txt").write_text("".join(f"{item}\n" for item in kept))
    cache = CacheResult(kept, {item: (64, 64) for item in kept}, [{"file": "id0000.dcm", "reason": "corrupt"}])
    records = pd.DataFrame({"id": IDS, "label": [LABELS[item] for item in IDS]})
    manifest = finish(options, dataset="toy", partitions=[partition], records=records, sources=[], cache=cache,
                      image_mode="stretch", verification="skipped: --no-verify",
                      excluded=[{"file": "l.csv", "row": 3, "id": "id0005", "reason": "bad"}], excluded_ids={"id0005"},
                      notes=["a deviation"])
    assert manifest.counts["classification/train"] == 798 and manifest.counts["images"] == 998
    assert manifest.fractions == {"1": [0, 1, 2], "10": [0, 1, 2]} and len(manifest.excluded) == 2
    assert Manifest.read(options.out).notes == ["a deviation"] and not manifest.demo
    prepared = PreparedDataset(options.out)
    assert "id0000" not in prepared.split_ids("train") and prepared.records.loc["id0900", "split"] == "test"
    assert json.loads((options.out / "manifest.json").read_text())["extra"]["verification"] == "skipped: --no-verify"
    assert read_ids(options.out / "splits" / "classification" / "val.txt") == IDS[800:900]


class _CountingIds(list):
    """A list that counts how often it is iterated (``set(ids)`` iterates it once)."""

    iterations = 0

    def __iter__(self):
        self.iterations += 1
        return super().__iter__()


def test_finish_reads_the_cached_ids_once_not_once_per_record(tmp_path: Path) -> None:
    # Regression: set(cache.ids) was rebuilt for every record, quadratic in the dataset size
    # (hours for CheXpert's ~190,000 images).
    options = _options(tmp_path, verify=False)
    options.out.mkdir(parents=True)
    cached = _CountingIds(IDS)
    finish(options, dataset="toy", partitions=[_partition()], records=pd.DataFrame({"id": IDS}), sources=[],
           cache=CacheResult(cached, {item: (8, 8) for item in IDS}, []), image_mode="stretch",
           verification="skipped: --no-verify")
    assert cached.iterations <= 2


def test_prepare_command_reports_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.cli import main

    assert main(["prepare", "rsna", "--raw", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "stage_2_train_labels.csv: missing" in error and "Traceback" not in error
    assert main(["prepare", "rsnaa", "--raw", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "unknown dataset 'rsnaa'. Did you mean 'rsna'" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--image-size", "0"], ["--image-size", "-32"], ["--workers", "0"], ["--workers", "two"]])
def test_prepare_command_refuses_non_positive_sizes(tmp_path: Path, option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # Regression: --image-size 0 or --workers -1 reached the image cache writer and ended in a traceback.
    from benchmark.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "rsna", "--raw", str(tmp_path), "--out", str(tmp_path), *option])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and ("expected a whole number >= 1" in error or "expected a whole number from 1 to" in error), error
