"""Run-record schema: round trip, strict validation, names derived from the identity."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from benchmark.files import write_atomically
from benchmark.records import (
    Artifact,
    CellIdentity,
    MetricValue,
    RecordError,
    RunRecord,
)

SHA = "ab" * 32


def make_record(**identity_changes: object) -> RunRecord:
    identity = replace(CellIdentity(
        board="demo-mgca-cxr-v1", backbone="random_vit_tiny", weights_sha256=SHA, task="classification",
        dataset="rsna", partition="classification", head="linear", fraction=10, draw=1, seed=0, mode="cached",
    ), **identity_changes)
    return RunRecord(
        identity=identity, protocol_version="mgca-cxr-v1", scorer="classification",
        metrics={"auroc": MetricValue(0.8, 0.7, 0.9, 0.05), "auroc[Target]": MetricValue(0.8)},
        headline_metric="auroc", predictions=Artifact("predictions/x.csv", "cd" * 32),
        targets=Artifact("x.npz", "cd" * 32, "artifacts"),
        target_set={"key": f"{identity.dataset}/{identity.partition}/test", "digest": "12" * 32},
        timings={"total": 1.5}, config={"lr": 5e-4},
        training={"best_epoch": 3}, split_fingerprints={"test": "ef" * 32},
        backbone={"arch": "vit_tiny_patch16_224"}, provenance={"code": {"commit": None}}, created="2026-01-01T00:00:00+00:00",
    )


def test_round_trip_through_json(tmp_path: Path) -> None:
    record = make_record()
    path = tmp_path / "r.json"
    write_atomically(path, record.to_json())
    assert RunRecord.read(path) == record
    assert json.loads(path.read_text())["schema_version"] == 4


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(extra=1), "unknown field"),
    (lambda d: d.pop("metrics"), "missing field"),
    (lambda d: d["identity"].update(weights_sha256="xyz"), "64 lowercase hex"),
    (lambda d: d["identity"].update(fraction=100, draw=2), "draw must be 0 at fraction 100"),
    (lambda d: d["identity"].update(mode="../fast"), "identity.mode"),
    (lambda d: d["identity"].update(head=""), "identity.head"),
    (lambda d: d["identity"].pop("head"), "missing field"),
    (lambda d: d["targets"].update(store="cloud"), "targets.store"),
    (lambda d: d["identity"].update(backbone="../evil"), "identity.backbone"),
    (lambda d: d["identity"].update(backbone="evil\n"), "identity.backbone"),  # `$` matched before a final newline
    (lambda d: d["identity"].update(dataset="a" * 65), "identity.dataset"),
    (lambda d: d["identity"].update(mode="a..b"), "identity.mode"),
    (lambda d: d.update(headline_metric="dice"), "not among metrics"),
    (lambda d: d["metrics"]["auroc"].update(value=float("nan")), "finite number"),
    (lambda d: d["predictions"].update(path="/abs/path.csv"), "relative path"),
    (lambda d: d.update(split_fingerprints={}), "test split fingerprint"),
    (lambda d: d.update(schema_version=5), "schema_version"),
    (lambda d: d.update(scorer="../x"), "scorer"),
    (lambda d: d.pop("scorer"), "missing field"),
    (lambda d: d.pop("target_set"), "missing field"),
    (lambda d: d["target_set"].update(digest="x"), "target_set.digest"),
    (lambda d: d["target_set"].update(key="chexpert/classification/test"), "target_set.key"),
    (lambda d: d["target_set"].update(key="224x224"), "target_set.key"),
    (lambda d: d["target_set"].update(key="rsna/classification/test@big"), "target_set.key"),
])
def test_invalid_records_are_rejected_with_the_field_named(mutate, message: str) -> None:
    data = json.loads(json.dumps(asdict(make_record())))
    mutate(data)
    with pytest.raises(RecordError, match=message):
        RunRecord.from_dict(data, "r.json")


def test_a_version_1_record_is_refused_with_the_command_that_recreates_it() -> None:
    data = json.loads(json.dumps(asdict(make_record())))
    data["schema_version"] = 1
    del data["identity"]["head"], data["training"]
    with pytest.raises(RecordError, match=r"r.json: version-1 records predate task heads.*`make bench`"):
        RunRecord.from_dict(data, "r.json")


def test_a_version_2_record_is_refused_with_the_command_that_recreates_it() -> None:
    data = json.loads(json.dumps(asdict(make_record())))
    data["schema_version"] = 2
    del data["target_set"]
    with pytest.raises(RecordError, match=r"r.json: version-2 records predate the pinned test ground truth.*`make bench`"):
        RunRecord.from_dict(data, "r.json")


def test_a_version_3_record_is_read_with_the_scorer_named_as_its_task() -> None:
    """Every task of schema 3 was scored by the scorer of its own name: the upgrade adds exactly that."""
    for task, dataset, partition in [("classification", "rsna", "classification"), ("detection", "rsna", "detection")]:
        record = make_record(task=task, dataset=dataset, partition=partition)
        record.scorer = task
        data = json.loads(json.dumps(asdict(record)))
        data["schema_version"] = 3
        del data["scorer"]
        assert RunRecord.from_dict(data, "r.json") == record
        data["colour"] = "red"  # read as strictly as a current record
        with pytest.raises(RecordError, match=r"unknown field\(s\) \['colour'\]"):
            RunRecord.from_dict(data, "r.json")


def test_a_segmentation_record_pins_its_targets_per_mask_size() -> None:
    record = make_record(task="segmentation", dataset="siim", partition="segmentation")
    record.target_set = {"key": "siim/segmentation/test@224x224", "digest": "12" * 32}
    record.validate()


def test_unreadable_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"identity": ')
    with pytest.raises(RecordError, match="broken.json.*delete it to re-run"):
        RunRecord.read(path)


def test_cell_key_changes_with_every_identity_field() -> None:
    base = make_record().identity
    changes = {"board": "other", "backbone": "b", "weights_sha256": "cd" * 32, "task": "t", "dataset": "d",
               "partition": "p", "head": "mlp", "fraction": 1, "draw": 0, "seed": 3, "mode": "paper"}
    keys = {replace(base, **{name: value}).cell_key for name, value in changes.items()}
    assert base.cell_key not in keys and len(keys) == len(changes)
    assert base.cell_key.startswith("classification-rsna-classification-linear-10pct-draw1-seed0-cached-")
    assert base.entry_key == f"random_vit_tiny@{SHA[:12]}"


def test_every_registered_name_that_becomes_part_of_a_record_path_is_a_safe_name() -> None:
    """Registry-driven: a backbone, task, dataset, partition, head or mode registered under a name the record
    check refuses would only fail when its first cell is stored."""
    import benchmark.backbones  # noqa: F401 - registers the backbones
    from benchmark.backbones.zoo import BACKBONES
    from benchmark.records import check_name
    from tasks.registry import all_tasks

    names = {("backbone", name) for name in BACKBONES.names()}
    for info in all_tasks():
        names |= {("task", info.name)} | {("head", head) for head in info.heads} | {("mode", mode) for mode in info.modes}
        names |= {("dataset", dataset) for dataset in info.datasets}
        names |= {("partition", declared.partition) for declared in info.datasets.values()}
    for what, name in sorted(names):
        check_name(name, what)
