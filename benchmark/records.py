"""The run record: one typed JSON document per grid cell, the unit every board number comes from.

A run record says *what* was evaluated (its identity, fully resolved: the weights by content
hash, the data by partition and split fingerprints), *what came out* (metrics plus the per-image
predictions file, so every number can be re-scored and compared pairwise later), and *how*
(timings, resolved task config, provenance). It is written once, atomically, and never edited:
a different result is a different identity.

The schema is strict: unknown fields are rejected on read, and :data:`RECORD_SCHEMA_VERSION`
is bumped whenever a field changes meaning; a reader refuses versions it does not know instead
of guessing (HELM's unreadable-old-results problem). Changelog:

- 1: first version.
- 2: the identity names the task's ``head`` (YOLOv3 and Faster R-CNN on the same data are two
  cells), ``mode`` is any mode the task declares, ``training`` holds what the head's training
  reported, and an artifact says whether it lives in the board folder or the artifact store.
  Version-1 records are refused with the command that re-creates them (:data:`UPGRADE_HINT`).
- 3: ``target_set`` names the test split's ground truth the record was scored on (the board's pin
  key ``dataset/partition/test[@geometry]`` and the scorer's digest of the targets), which the
  board checks against its pin (``benchmark/board/store.py``). Older records are refused with the
  command that re-creates them.
- 4: ``scorer`` names the scorer (a key of ``benchmark.scoring.SCORERS``) whose ``score_files``
  gave the metrics, so that the board re-reads, compares and pins a record's files without the
  task registry, and refuses a record its pinned scorer did not score. A version-3 record is read
  as version 4 with the scorer named as its task: every task of version 3 was scored by the scorer
  of its own name (``classification``, ``detection``, ``segmentation``), so this is exact, and the
  file on disk, with its hash in the board manifest, is left as it was written (:data:`UPGRADES`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

RECORD_SCHEMA_VERSION = 4
UPGRADE_HINT = ("version-{version} records predate {change} and are not read any more: delete the board's results/ "
                "folder and re-create them with `make bench` (demo board) or `python -m benchmark run`")
OLD_VERSIONS = {1: "task heads in the cell identity", 2: "the pinned test ground truth (target_set)"}


def _scorer_named_as_task(data: dict[str, Any]) -> dict[str, Any]:
    """A version-3 record as version 4: its scorer is its task's name (exact for every version-3 task)."""
    identity = data.get("identity")
    task = identity.get("task") if isinstance(identity, dict) else None
    return {**data, "scorer": task, "schema_version": 4}


# Older versions read as the current one by adding what they lack, where that is exact (see the changelog).
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {3: _scorer_named_as_task}

ArtifactStore = Literal["board", "artifacts"]
ARTIFACT_STORES: tuple[str, ...] = get_args(ArtifactStore)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Names that become file names and manifest lines (board entries, cell keys): matched in full (``$`` would
# also match before a final newline), no control characters or path separators, no "..", and short enough
# that a record's longest file name (cell key, suffix, temporary marker) stays under the usual 255 bytes.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
MAX_NAME_LENGTH = 64
MAX_CELL_KEY_LENGTH = 200  # + ".predictions.npz" + write_atomically's ".tmp-<pid>-<random>" < 255


TARGET_GEOMETRY = re.compile(r"[0-9]+x[0-9]+")


def target_pin_key(dataset: str, partition: str, geometry: str = "") -> str:
    """The key under which a board pins the ground truth of a dataset's test split (per geometry: masks
    have the model's input size)."""
    return f"{dataset}/{partition}/test" + (f"@{geometry}" if geometry else "")


class RecordError(ValueError):
    """A run record is malformed; the message names the file or field and what is expected."""


def check_name(value: object, what: str) -> str:
    """``value`` if it is a safe name (see :data:`NAME_PATTERN`); else a :class:`RecordError` naming ``what``.

    The one check for every name that becomes part of a path or a manifest line."""
    if (not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value
            or len(value) > MAX_NAME_LENGTH):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise RecordError(f"{what}={shown}: expected a name of at most {MAX_NAME_LENGTH} letters, digits, '.', '_', "
                          f"'+', '-', starting with a letter or digit, without '..'")
    return value


@dataclass(frozen=True)
class CellIdentity:
    """Everything that decides a result. Two runs with equal identities must give the same record."""

    board: str  # board version, e.g. "mgca-cxr-v1" or "demo-mgca-cxr-v1"
    backbone: str  # entry name on the board (registry name or the --name of a submission)
    weights_sha256: str  # content hash of the weights actually evaluated
    task: str  # key of the task registry ("classification", "detection", "segmentation")
    dataset: str  # key of the dataset registry
    partition: str  # which train/val/test division of the dataset (benchmark/data/prepared.py)
    head: str  # the trainable head the task put on the frozen backbone ("linear", "yolov3", "unet", ...)
    fraction: int  # percent of the training split: 1, 10 or 100
    draw: int  # which label-fraction subset (0 for fraction 100)
    seed: int  # training seed of the head
    mode: str  # a mode the task declares, e.g. "cached" (frozen features cached) or "paper" (reference loop)

    def validate(self) -> None:
        for name in ("board", "backbone", "task", "dataset", "partition", "head", "mode"):
            check_name(getattr(self, name), f"identity.{name}")
        if not isinstance(self.weights_sha256, str) or not _SHA256.match(self.weights_sha256):
            raise RecordError(f"identity.weights_sha256={self.weights_sha256!r}: expected 64 lowercase hex digits")
        for name in ("fraction", "draw", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise RecordError(f"identity.{name}={value!r}: expected a non-negative integer")
        if not 0 < self.fraction <= 100:
            raise RecordError(f"identity.fraction={self.fraction}: expected a percentage in (0, 100]")
        if self.fraction == 100 and self.draw != 0:
            raise RecordError("identity.draw must be 0 at fraction 100: the full training split has a single draw")
        if len(self.cell_key) > MAX_CELL_KEY_LENGTH:
            raise RecordError(f"identity: its file name {self.cell_key[:40]}... is longer than {MAX_CELL_KEY_LENGTH} "
                              f"characters; use shorter names")

    @property
    def entry_key(self) -> str:
        """The board entry this cell belongs to: name plus a short weights hash (names can be reused)."""
        return f"{self.backbone}@{self.weights_sha256[:12]}"

    @property
    def cell_key(self) -> str:
        """File stem of the record, derived from the resolved identity only.

        Readable fields first, then a hash over the whole identity so that two identities can
        never share a file even if a future field is not part of the readable part.
        """
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        return (f"{self.task}-{self.dataset}-{self.partition}-{self.head}-{self.fraction}pct-draw{self.draw}"
                f"-seed{self.seed}-{self.mode}-{digest}")

    @property
    def group_key(self) -> tuple[str, str, str, str, str, int, str]:
        """Runs that aggregate together: everything but draw and seed."""
        return (self.entry_key, self.task, self.dataset, self.partition, self.head, self.fraction, self.mode)


@dataclass
class MetricValue:
    """One metric of one run on the test split."""

    value: float  # on the scale the scorer returns (its MetricSpec: range, direction, display scale)
    ci_low: float | None = None  # 95% test-set bootstrap interval of this run, if the scorer gave one
    ci_high: float | None = None
    bootstrap_se: float | None = None  # test-set bootstrap standard error (feeds the board's CI)

    def validate(self, name: str) -> None:
        for key in ("value", "ci_low", "ci_high", "bootstrap_se"):
            number = getattr(self, key)
            if number is None and key != "value":
                continue
            if not isinstance(number, (int, float)) or isinstance(number, bool) or not math.isfinite(number):
                raise RecordError(f"metrics.{name}.{key}={number!r}: expected a finite number")


@dataclass
class Artifact:
    """A per-image file of a record (predictions, targets), with its hash.

    ``store="board"``: ``path`` is relative to the board folder (small files, versioned with the
    board). ``store="artifacts"``: ``path`` is relative to the artifact store
    (``benchmark/board/store.py``: large files kept out of git, named by their sha256).
    """

    path: str
    sha256: str
    store: ArtifactStore = "board"

    def validate(self, name: str) -> None:
        if not isinstance(self.path, str) or not self.path or os.path.isabs(self.path) or ".." in Path(self.path).parts:
            raise RecordError(f"{name}.path={self.path!r}: expected a relative path inside the board folder or artifact store")
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise RecordError(f"{name}.sha256={self.sha256!r}: expected 64 lowercase hex digits")
        if self.store not in ARTIFACT_STORES:
            raise RecordError(f"{name}.store={self.store!r}: expected one of {ARTIFACT_STORES}")


@dataclass
class RunRecord:
    """One grid cell's result. See the module docstring for the rules."""

    identity: CellIdentity
    protocol_version: str  # protocol the board follows ("mgca-cxr-v1"); must equal the board's
    scorer: str  # key of benchmark.scoring.SCORERS: the scorer that gave ``metrics`` (the task's, at the time)
    metrics: dict[str, MetricValue]  # every metric the scorer returned, by name
    headline_metric: str  # the scorer's headline metric of this dataset: the number the board shows
    predictions: Artifact  # per-image scores or outputs on the test split
    targets: Artifact  # ground truth of the same test images (the scorer's target format)
    # {"key": target_pin_key(...), "digest": the scorer's TargetSet.digest of ``targets``}: the board's pin
    target_set: dict[str, str]
    timings: dict[str, float]  # seconds per step ("features", "fit", "predict", "total", ...)
    config: dict[str, Any]  # resolved task configuration (head, optimiser, epochs, image size)
    training: dict[str, Any]  # the head's TrainingOutcome.to_json() (benchmark/heads/outcome.py); {}: no head trained
    split_fingerprints: dict[str, str]  # split name -> sha256 of its ID list
    backbone: dict[str, Any]  # arch, weights source, pretraining data, load report summary
    provenance: dict[str, Any]  # code version, packages, hardware, start/end time
    created: str  # ISO 8601 UTC time the record was written
    schema_version: int = RECORD_SCHEMA_VERSION
    notes: list[str] = field(default_factory=list)  # deviations or warnings worth showing

    def validate(self) -> None:
        if self.schema_version != RECORD_SCHEMA_VERSION:
            raise RecordError(f"schema_version={self.schema_version}: this code reads version {RECORD_SCHEMA_VERSION}")
        if not isinstance(self.training, dict) or not isinstance(self.config, dict):
            raise RecordError("config and training: expected objects")
        self.identity.validate()
        check_name(self.scorer, "scorer")
        if not isinstance(self.protocol_version, str) or not self.protocol_version:
            raise RecordError("protocol_version: expected a non-empty string")
        if not self.metrics:
            raise RecordError("metrics: expected at least one metric")
        for name, metric in self.metrics.items():
            metric.validate(name)
        if self.headline_metric not in self.metrics:
            raise RecordError(f"headline_metric={self.headline_metric!r} is not among metrics {sorted(self.metrics)}")
        self.predictions.validate("predictions")
        self.targets.validate("targets")
        if not isinstance(self.target_set, dict) or set(self.target_set) != {"key", "digest"}:
            raise RecordError(f"target_set={self.target_set!r}: expected {{'key': ..., 'digest': ...}}")
        key, digest = self.target_set["key"], self.target_set["digest"]
        base = target_pin_key(self.identity.dataset, self.identity.partition)
        if not isinstance(key, str) or not (key == base or (key.startswith(base + "@")
                                                            and TARGET_GEOMETRY.fullmatch(key[len(base) + 1:]))):
            raise RecordError(f"target_set.key={key!r}: expected {base!r} or {base + '@HxW'!r}")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise RecordError(f"target_set.digest={digest!r}: expected 64 lowercase hex digits")
        for name, seconds in self.timings.items():
            if not isinstance(seconds, (int, float)) or seconds < 0:
                raise RecordError(f"timings.{name}={seconds!r}: expected non-negative seconds")
        if "test" not in self.split_fingerprints:
            raise RecordError("split_fingerprints: the test split fingerprint is required (paired tests check it)")
        for name, digest in self.split_fingerprints.items():
            if not _SHA256.match(str(digest)):
                raise RecordError(f"split_fingerprints.{name}={digest!r}: expected 64 lowercase hex digits")

    @property
    def headline(self) -> MetricValue:
        return self.metrics[self.headline_metric]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<record>") -> RunRecord:
        """Strict parse: unknown or missing fields are errors that name ``source``."""
        version = data.get("schema_version", 1)
        if version in OLD_VERSIONS:
            raise RecordError(f"{source}: {UPGRADE_HINT.format(version=version, change=OLD_VERSIONS[version])}")
        if version in UPGRADES:
            data = UPGRADES[version](data)
        try:
            _check_keys(data, cls, source)
            _check_keys(data["identity"], CellIdentity, f"{source}: identity")
            metrics = {}
            for name, value in data["metrics"].items():
                _check_keys(value, MetricValue, f"{source}: metrics.{name}")
                metrics[name] = MetricValue(**value)
            artifacts = {}
            for key in ("predictions", "targets"):
                _check_keys(data[key], Artifact, f"{source}: {key}")
                artifacts[key] = Artifact(**data[key])
            record = cls(**{**data, "identity": CellIdentity(**data["identity"]), "metrics": metrics, **artifacts})
            record.validate()
        except RecordError as error:
            raise RecordError(f"{source}: {error}") from None
        except (TypeError, AttributeError) as error:
            raise RecordError(f"{source}: malformed record ({error})") from None
        return record

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise RecordError(f"{path}: unreadable run record ({error}); delete it to re-run the cell") from None
        if not isinstance(data, dict):
            raise RecordError(f"{path}: expected a JSON object")
        return cls.from_dict(data, str(path))


def _check_keys(data: Any, schema: type, where: str) -> None:
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected an object, got {type(data).__name__}")
    names = {item.name for item in fields(schema)}
    required = {item.name for item in fields(schema) if _is_required(item)}
    unknown = sorted(set(data) - names)
    missing = sorted(required - set(data))
    if unknown:
        raise RecordError(f"{where}: unknown field(s) {unknown}; schema fields are {sorted(names)}")
    if missing:
        raise RecordError(f"{where}: missing field(s) {missing}")


def _is_required(item: Any) -> bool:
    return item.default is MISSING and item.default_factory is MISSING
