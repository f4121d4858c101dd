"""A leaderboard on disk: one folder per board version, append-only results, a derived index.

Layout of ``leaderboards/<board>/``::

    protocol.json                     the protocol as data (see :class:`Protocol`); its
                                      ``protocol_version`` changes whenever numbers would move
    entries/<name>@<sha12>.json       one per evaluated backbone (:class:`BoardEntry`)
    results/<name>@<sha12>/<cell>.json  one immutable run record per grid cell
    predictions/<name>@<sha12>/<cell>.{predictions,targets}.<ext>  per-image files of that record
    failures/<name>@<sha12>/<cell>.json  the last failure of a cell (retried on the next run)
    index.json                        derived from results/ (rebuilt under a file lock)
    rendered/                         tables, plots, the static page (``python -m benchmark tables``)

Concurrency: every result is its own file written with ``os.replace``, so concurrent writers
never lose or corrupt one another's results; a cell that two processes evaluate at the same time
ends up as one file (same identity, same name). Only the derived ``index.json`` is shared, and
it is rebuilt from the files under an exclusive ``fcntl`` lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmark.data.prepared import file_sha256
from benchmark.provenance import utc_now
from benchmark.records import Artifact, CellIdentity, RecordError, RunRecord, remove_stale_temps, write_atomically

BOARDS_DIR_ENV = "MGCA_BENCH_BOARDS"
DEFAULT_BOARDS_DIR = Path("leaderboards")
PROTOCOL_FILE = "protocol.json"

EntryRole = Literal["reference", "submission"]


class BoardError(ValueError):
    """A board is missing, or a record does not belong on it; the message says what to do."""


@dataclass(frozen=True)
class Slot:
    """One (task, dataset) column group of the board."""

    partition: str  # the dataset partition the task uses
    metric: str  # headline metric, a key of the run record's metrics
    label: str  # column header, e.g. "CheXpert AUROC"


@dataclass(frozen=True)
class ComparisonSettings:
    correction: Literal["holm", "bh", "none"] = "holm"
    alpha: float = 0.05
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0


@dataclass(frozen=True)
class Protocol:
    """A board's protocol definition (``protocol.json``)."""

    board: str  # folder name; written into every record's identity
    protocol_version: str  # changes whenever the protocol changes in a way that moves numbers
    title: str
    description: str
    demo: bool  # synthetic data: never presented as real-data results
    default_mode: Literal["cached", "paper"]
    fractions: tuple[int, ...]
    seeds: tuple[int, ...]
    draws: tuple[int, ...]  # label-fraction draws for fractions below 100 (100 has draw 0 only)
    tasks: dict[str, dict[str, Slot]]  # task -> dataset -> slot
    comparison: ComparisonSettings
    task_versions: dict[str, int] = field(default_factory=dict)  # task -> TaskInfo.version pinned by the board
    # dataset -> image sources of its test set; a submission pretrained on one of them is flagged
    test_set_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # alias -> canonical source name, for --pretraining-data
    source_aliases: dict[str, str] = field(default_factory=dict)
    changelog: tuple[dict[str, str], ...] = ()

    @classmethod
    def read(cls, path: Path) -> Protocol:
        try:
            data = json.loads(path.read_text())
            return cls(
                board=data["board"], protocol_version=data["protocol_version"], title=data["title"],
                description=data["description"], demo=bool(data["demo"]), default_mode=data["default_mode"],
                fractions=tuple(data["fractions"]), seeds=tuple(data["seeds"]), draws=tuple(data["draws"]),
                tasks={task: {ds: Slot(**slot) for ds, slot in datasets.items()} for task, datasets in data["tasks"].items()},
                comparison=ComparisonSettings(**data.get("comparison", {})),
                task_versions=dict(data.get("task_versions", {})),
                test_set_sources={ds: tuple(sources) for ds, sources in data.get("test_set_sources", {}).items()},
                source_aliases=dict(data.get("source_aliases", {})),
                changelog=tuple(data.get("changelog", ())),
            )
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise BoardError(f"{path}: not a valid board protocol ({error!r})") from None

    def slot(self, task: str, dataset: str) -> Slot:
        try:
            return self.tasks[task][dataset]
        except KeyError:
            known = [f"{t}/{d}" for t, datasets in self.tasks.items() for d in datasets]
            raise BoardError(f"board {self.board!r} has no column for {task}/{dataset}; it defines {known}") from None

    def canonical_source(self, name: str) -> str:
        key = name.strip().lower()
        return self.source_aliases.get(key, key)

    def overlaps(self, pretraining_data: tuple[str, ...] | list[str], dataset: str) -> list[str]:
        """Pretraining sources that share images with ``dataset``'s test set."""
        declared = {self.canonical_source(name) for name in pretraining_data}
        return sorted(declared & {self.canonical_source(name) for name in self.test_set_sources.get(dataset, ())})


@dataclass
class BoardEntry:
    """One evaluated backbone (weights) on a board."""

    name: str
    weights_sha256: str
    arch: str
    role: EntryRole  # registry backbones are references; --checkpoint runs are submissions
    pretraining_data: list[str]  # as declared; overlaps with test sets are flagged from it
    description: str
    weights_source: str  # "random (seed 0)", a checkpoint file name, or a release URL
    added: str
    load_report: dict[str, Any] | None = None  # keys loaded / missing, from the backbone loader

    @property
    def key(self) -> str:
        return f"{self.name}@{self.weights_sha256[:12]}"


def boards_dir() -> Path:
    return Path(os.environ.get(BOARDS_DIR_ENV, DEFAULT_BOARDS_DIR))


def resolve_board_path(board: str | Path) -> Path:
    """A board name (looked up under ``leaderboards/`` or ``$MGCA_BENCH_BOARDS``) or a folder."""
    path = Path(board)
    if (path / PROTOCOL_FILE).is_file():
        return path
    candidate = boards_dir() / str(board)
    if (candidate / PROTOCOL_FILE).is_file():
        return candidate
    known = sorted(p.parent.name for p in boards_dir().glob(f"*/{PROTOCOL_FILE}"))
    raise BoardError(
        f"no board {board!r}: neither {path / PROTOCOL_FILE} nor {candidate / PROTOCOL_FILE} exists. "
        f"Known boards under {boards_dir()}: {known}. A new board needs a protocol.json (copy one of these)."
    )


class Board:
    """Read and append access to one board folder."""

    def __init__(self, board: str | Path) -> None:
        self.root = resolve_board_path(board)
        self.protocol = Protocol.read(self.root / PROTOCOL_FILE)
        if self.protocol.board != self.root.name:
            raise BoardError(f"{self.root / PROTOCOL_FILE}: board {self.protocol.board!r} does not match its folder name")

    @property
    def name(self) -> str:
        return self.protocol.board

    # ---------------------------------------------------------------- paths

    def result_path(self, identity: CellIdentity) -> Path:
        return self.root / "results" / identity.entry_key / f"{identity.cell_key}.json"

    def artifact_path(self, identity: CellIdentity, kind: str, suffix: str) -> Path:
        return self.root / "predictions" / identity.entry_key / f"{identity.cell_key}.{kind}{suffix}"

    def failure_path(self, identity: CellIdentity) -> Path:
        return self.root / "failures" / identity.entry_key / f"{identity.cell_key}.json"

    def entry_path(self, entry_key: str) -> Path:
        return self.root / "entries" / f"{entry_key}.json"

    # ---------------------------------------------------------------- results

    def check_identity(self, identity: CellIdentity, protocol_version: str | None = None) -> None:
        """Refuse anything that belongs to another board or protocol version."""
        if identity.board != self.name:
            raise BoardError(f"record for board {identity.board!r} cannot be added to board {self.name!r}")
        if protocol_version is not None and protocol_version != self.protocol.protocol_version:
            raise BoardError(
                f"record follows protocol {protocol_version!r} but board {self.name!r} follows "
                f"{self.protocol.protocol_version!r}; results of different protocol versions are never mixed"
            )
        self.protocol.slot(identity.task, identity.dataset)

    def completed(self, identity: CellIdentity) -> RunRecord | None:
        """The cell's record if it is done: its JSON exists, validates and its files are intact."""
        path = self.result_path(identity)
        if not path.is_file():
            return None
        try:
            record = RunRecord.read(path)
        except RecordError:
            return None
        if record.identity != identity:
            return None
        for artifact in (record.predictions, record.targets):
            if artifact is not None and not (self.root / artifact.path).is_file():
                return None
        return record

    def store_artifact(self, identity: CellIdentity, kind: str, source: Path) -> Artifact:
        """Copy a per-image file the task wrote (``kind``: predictions, targets) into the board."""
        self.check_identity(identity)
        target = self.artifact_path(identity, kind, Path(source).suffix or ".dat")
        write_atomically(target, Path(source).read_bytes())
        return Artifact(str(target.relative_to(self.root)), file_sha256(target))

    def add(self, record: RunRecord) -> Path:
        """Store ``record`` (its artifacts already stored with :meth:`store_artifact`).

        The record is written last, so a cell is complete exactly when its JSON exists.
        """
        record.validate()
        self.check_identity(record.identity, record.protocol_version)
        for artifact in (record.predictions, record.targets):
            if artifact is not None and not (self.root / artifact.path).is_file():
                raise BoardError(f"{self.root / artifact.path}: artifact missing; store it with store_artifact first")
        path = self.result_path(record.identity)
        write_atomically(path, record.to_json())
        self.failure_path(record.identity).unlink(missing_ok=True)
        self.rebuild_index()
        return path

    def record_failure(self, identity: CellIdentity, error: str) -> Path:
        path = self.failure_path(identity)
        write_atomically(path, json.dumps({"identity": asdict(identity), "error": error, "time": utc_now()}, indent=2))
        return path

    def records(self, invalid: list[str] | None = None) -> list[RunRecord]:
        """Every run record on the board, in file-name order.

        An unreadable or foreign record raises, unless ``invalid`` is given: then its file name
        and the reason are appended there (the index lists them; the runner re-does such cells).
        """
        records = []
        for path in sorted((self.root / "results").glob("*/*.json")):
            try:
                record = RunRecord.read(path)
                if record.identity.board != self.name or record.protocol_version != self.protocol.protocol_version:
                    raise BoardError(f"{path}: belongs to {record.identity.board}/{record.protocol_version}, not to this board")
            except (RecordError, BoardError) as error:
                if invalid is None:
                    raise
                invalid.append(str(error))
                continue
            records.append(record)
        return records

    def failures(self) -> list[dict[str, Any]]:
        return [json.loads(path.read_text()) for path in sorted((self.root / "failures").glob("*/*.json"))]

    def remove_stale_temps(self) -> list[Path]:
        return remove_stale_temps(self.root) if self.root.is_dir() else []

    # ---------------------------------------------------------------- entries

    def entries(self) -> dict[str, BoardEntry]:
        return {entry.key: entry for entry in (
            BoardEntry(**json.loads(path.read_text())) for path in sorted((self.root / "entries").glob("*.json"))
        )}

    def register_entry(self, entry: BoardEntry) -> BoardEntry:
        """Add ``entry`` unless present; a name already used by other weights is refused."""
        with self.lock():
            existing = self.entries()
            if entry.key in existing:
                return existing[entry.key]
            clash = [other for other in existing.values() if other.name == entry.name]
            if clash:
                raise BoardError(
                    f"board {self.name!r} already has an entry {entry.name!r} with weights "
                    f"{clash[0].weights_sha256[:12]}; these weights are {entry.weights_sha256[:12]}. "
                    f"Choose another --name."
                )
            write_atomically(self.entry_path(entry.key), json.dumps(asdict(entry), indent=2) + "\n")
            return entry

    # ---------------------------------------------------------------- index

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock over the board's shared files (index, entries), across processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def rebuild_index(self) -> Path:
        """Rewrite ``index.json`` from results/ (the files are the truth; the index is a view)."""
        with self.lock():
            invalid: list[str] = []
            rows = [
                {"file": str(self.result_path(r.identity).relative_to(self.root)), **asdict(r.identity),
                 "headline_metric": r.headline_metric, "value": r.headline.value, "created": r.created}
                for r in self.records(invalid)
            ]
            path = self.root / "index.json"
            write_atomically(path, json.dumps({"board": self.name, "protocol_version": self.protocol.protocol_version,
                                               "results": rows, "invalid": invalid}, indent=2) + "\n")
        return path


def copy_board_protocol(source: Board, target_folder: Path, board_name: str) -> Board:
    """Start a new board folder from an existing protocol (tests, forks of a board)."""
    target_folder.mkdir(parents=True, exist_ok=True)
    data = json.loads((source.root / PROTOCOL_FILE).read_text())
    data["board"] = board_name
    (target_folder / PROTOCOL_FILE).write_text(json.dumps(data, indent=2) + "\n")
    return Board(target_folder)
