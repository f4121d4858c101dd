"""A leaderboard on disk: one folder per board version, append-only results, a derived index.

Layout of ``leaderboards/<board>/``::

    protocol.json                     the protocol as data (``benchmark/board/protocol.py``); its
                                      ``protocol_version`` changes whenever numbers would move
    entries/<name>@<sha12>.json       one per evaluated backbone (:class:`BoardEntry`)
    results/<name>@<sha12>/<cell>.json  one immutable run record per grid cell
    predictions/<name>@<sha12>/<cell>.{predictions,targets}.<ext>  per-image files of that record
    failures/<name>@<sha12>/<cell>.json  the last failure of a cell (retried on the next run)
    records.sha256                    the hash of every record as written (``benchmark/board/integrity.py``)
    target-pins.json                  ground-truth digests pinned by the first record of each test split
                                      that protocol.json does not pin (see :meth:`Board.target_pins`)
    index.json                        derived from results/ (rebuilt under a file lock)
    rendered/                         tables, plots, the static page (``python -m benchmark tables``)

Large per-image files (segmentation probability maps) are not kept in the board folder but in
the artifact store (``$MGCA_BENCH_ARTIFACTS``, default ``runs/artifacts/``, outside git), named
by their sha256, which the record holds.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from benchmark.board.integrity import (
    MANIFEST_FILE,
    FileHashes,
    hash_memo_path,
    read_manifest,
    record_digest,
    relative,
    write_manifest,
)
from benchmark.board.protocol import BoardError, BoardProtocol, read_pins
from benchmark.hashing import file_sha256
from benchmark.provenance import utc_now
from benchmark.quoting import one_line
from benchmark.files import remove_stale_temps, write_atomically
from benchmark.records import Artifact, CellIdentity, RecordError, RunRecord
from benchmark.registry import did_you_mean
from benchmark.scoring import record_target_set

BOARDS_DIR_ENV = "MGCA_BENCH_BOARDS"
DEFAULT_BOARDS_DIR = Path("leaderboards")
ARTIFACTS_DIR_ENV = "MGCA_BENCH_ARTIFACTS"
DEFAULT_ARTIFACTS_DIR = Path("runs/artifacts")
PROTOCOL_FILE = "protocol.json"
PINS_FILE = "target-pins.json"

EntryRole = Literal["reference", "submission"]


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
    # What the tasks fed the encoder (Preprocessing.to_dict(): size, channels, range, mean/std,
    # --preprocess mode); one entry is evaluated one way. None: an entry written before it was recorded.
    preprocessing: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.name}@{self.weights_sha256[:12]}"


def _check_same_preprocessing(existing: BoardEntry, new: BoardEntry) -> None:
    """An entry's numbers come from one preprocessing: other pixels (``--preprocess protocol`` on a
    model with its own normalisation) are another entry, under another name."""
    if existing.preprocessing is None or new.preprocessing is None:
        return  # entries written before preprocessing was recorded

    def pixels(values: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in values.items() if key not in ("source", "mode")}

    if pixels(existing.preprocessing) != pixels(new.preprocessing):
        raise BoardError(
            f"entry {existing.key} was evaluated with {existing.preprocessing.get('mode', 'model')} preprocessing "
            f"{pixels(existing.preprocessing)}; this run would feed it {new.preprocessing.get('mode', 'model')} "
            f"preprocessing {pixels(new.preprocessing)}. Evaluate it under another --name (a registered backbone: "
            f"keep its --preprocess)")


def boards_dir() -> Path:
    return Path(os.environ.get(BOARDS_DIR_ENV, DEFAULT_BOARDS_DIR))


def artifacts_dir() -> Path:
    """The artifact store: large per-image files (segmentation maps), outside git, named by sha256."""
    return Path(os.environ.get(ARTIFACTS_DIR_ENV, DEFAULT_ARTIFACTS_DIR))


def default_board(demo: bool, folder: Path | None = None) -> str:
    """The board marked ``"default": true`` among the demo (or the real-data) boards under ``folder``
    (default ``leaderboards/`` or ``$MGCA_BENCH_BOARDS``)."""
    folder = folder or boards_dir()
    found = []
    for path in sorted(folder.glob(f"*/{PROTOCOL_FILE}")):
        protocol = BoardProtocol.read(path)
        if protocol.default and protocol.demo == demo:
            found.append(protocol.board)
    kind = "demo" if demo else "real-data"
    if len(found) != 1:
        raise BoardError(f"expected exactly one default {kind} board under {folder} (\"default\": true in its "
                         f"{PROTOCOL_FILE}), found {found or 'none'}; name one with --board")
    return found[0]


def resolve_board_path(board: str | Path) -> Path:
    """A board name (looked up under ``leaderboards/`` or ``$MGCA_BENCH_BOARDS``) or a folder."""
    path = Path(board)
    if (path / PROTOCOL_FILE).is_file():
        return path
    candidate = boards_dir() / str(board)
    if (candidate / PROTOCOL_FILE).is_file():
        return candidate
    known = sorted(p.parent.name for p in boards_dir().glob(f"*/{PROTOCOL_FILE}"))
    if path.is_file():
        problem = f"{path} is a file; a board is a folder holding {PROTOCOL_FILE}"
    else:
        tried = list(dict.fromkeys([path / PROTOCOL_FILE, candidate / PROTOCOL_FILE]))  # one path when --board is absolute
        problem = " nor ".join(map(str, tried)) + (" exists" if len(tried) > 1 else " does not exist")
        problem = ("neither " if len(tried) > 1 else "") + problem
    raise BoardError(
        f"no board {board!r}: {problem}.{did_you_mean(str(board), known)} "
        f"Known boards under {boards_dir()}: {known}. A new board needs a protocol.json (copy one of these)."
    )


class Board:
    """Read and append access to one board folder."""

    def __init__(self, board: str | Path) -> None:
        self.root = resolve_board_path(board)
        self.protocol = BoardProtocol.read(self.root / PROTOCOL_FILE)
        self.hashes = FileHashes(hash_memo_path(self.root))
        self._manifest: dict[str, str] | None = None
        self._manifest_stamp: tuple[int, int] | None = None
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

    def artifact_file(self, artifact: Artifact) -> Path:
        """Where ``artifact`` lives: in this board's folder or in the artifact store."""
        return (self.root if artifact.store == "board" else artifacts_dir()) / artifact.path

    def failure_path(self, identity: CellIdentity) -> Path:
        return self.root / "failures" / identity.entry_key / f"{identity.cell_key}.json"

    def entry_path(self, entry_key: str) -> Path:
        return self.root / "entries" / f"{entry_key}.json"

    # ---------------------------------------------------------------- results

    def check_identity(self, identity: CellIdentity, protocol_version: str | None = None) -> None:
        """Refuse anything that belongs to another board, protocol version or column."""
        if identity.board != self.name:
            raise BoardError(f"record for board {identity.board!r} cannot be added to board {self.name!r}")
        if protocol_version is not None and protocol_version != self.protocol.protocol_version:
            raise BoardError(
                f"record follows protocol {protocol_version!r} but board {self.name!r} follows "
                f"{self.protocol.protocol_version!r}; results of different protocol versions are never mixed"
            )
        self.protocol.label(identity.task, identity.dataset)

    def scorer_problem(self, record: RunRecord) -> str | None:
        """Why ``record`` was not scored by the scorer the board pins for its task, or None."""
        pinned = self.protocol.task(record.identity.task).scorer
        if record.scorer != pinned:
            return (f"scored by {record.scorer!r}, but board {self.name!r} scores task {record.identity.task!r} "
                    f"with {pinned!r} (tasks.{record.identity.task}.scorer)")
        return None

    def status(self, identity: CellIdentity) -> tuple[RunRecord | None, str | None]:
        """``(record, None)`` when the cell is done and proven, ``(None, None)`` when it has no record
        (or only a half-written one), ``(None, reason)`` when its record fails verification."""
        path = self.result_path(identity)
        if not path.is_file():
            return None, None
        try:
            record = RunRecord.read(path)
        except RecordError as error:
            return None, str(error)
        if record.identity != identity:
            return None, f"{path}: holds the record of another cell"
        reason = self.verify_record(record, path)
        self.hashes.save()
        return (None, reason) if reason else (record, None)

    def completed(self, identity: CellIdentity) -> RunRecord | None:
        """The cell's record if it is done: its JSON exists, validates and matches its hashes."""
        return self.status(identity)[0]

    def verify_record(self, record: RunRecord, path: Path) -> str | None:
        """Why ``record`` (read from ``path``) cannot be trusted, or None: it must be scored by the board's
        scorer for its task, the board manifest must hold the record file's hash, and its prediction and
        target files must match the hashes it holds."""
        name = relative(path, self.root)
        wrong_scorer = self.scorer_problem(record)
        if wrong_scorer:
            return f"{name}: {wrong_scorer}"
        listed = self.manifest().get(name)
        if listed is None:
            return f"{name}: not in the board manifest {MANIFEST_FILE} (not written by the runner?)"
        if listed != self.hashes.sha256(path):
            return f"{name}: differs from the hash in {MANIFEST_FILE} (edited after it was written?)"
        for kind, artifact in (("predictions", record.predictions), ("targets", record.targets)):
            digest = self.hashes.sha256(self.artifact_file(artifact))
            if digest is None:
                return f"{name}: its {kind} file {self.artifact_file(artifact)} is missing"
            if digest != artifact.sha256:
                return f"{name}: its {kind} file {self.artifact_file(artifact)} does not match the record's sha256"
        return self.target_problem(record, name)

    # ---------------------------------------------------------------- pinned ground truth

    def target_pins(self) -> dict[str, str]:
        """The ground truth this board accepts, per test split: protocol.json's ``target_pins`` (the
        protocol's commitment), and for the splits it does not pin, the digest of the first record
        written for them (``target-pins.json``)."""
        path = self.root / PINS_FILE
        learnt: dict[str, str] = {}
        if path.is_file():
            try:
                learnt = read_pins(json.loads(path.read_text()), str(path))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise BoardError(f"{path}: unreadable ({type(error).__name__}: {error})") from None
        return {**learnt, **self.protocol.target_pins}

    def target_set(self, record: RunRecord) -> dict[str, str]:
        """``record``'s target_set as its targets file gives it (the record's scorer reads the file)."""
        return record_target_set(record.scorer, self.artifact_file(record.targets), record.identity.dataset,
                                 record.identity.partition)

    def target_problem(self, record: RunRecord, name: str) -> str | None:
        """Why ``record``'s ground truth is not the board's (its targets file checked against the record's
        ``target_set``, which must equal the pin), or None."""
        from benchmark.data.prepared import DataError

        key, digest = record.target_set["key"], record.target_set["digest"]
        try:
            pin = self.target_pins().get(key)
        except BoardError as error:
            return f"{name}: {error}"
        if pin is None:
            return (f"{name}: the board pins no ground truth for {key} (protocol.json target_pins, {PINS_FILE}); "
                    f"the record cannot be checked")
        if digest != pin:
            return (f"{name}: scored on ground truth {digest[:12]} of {key}, but the board pins {pin[:12]} "
                    f"(other or relabelled targets)")
        try:
            found = self.hashes.derived(f"target-set:{record.targets.sha256}", lambda: self.target_set(record))
        except DataError as error:
            return f"{name}: its targets file cannot be read ({error})"
        if found != record.target_set:
            return (f"{name}: its targets file holds ground truth {found['digest'][:12]} of {found['key']}, not the "
                    f"pinned {digest[:12]} its record names (relabelled targets)")
        return None

    def check_pin(self, target_set: dict[str, str]) -> None:
        """Refuse ground truth other than the board's pin for its split (a split without a pin passes)."""
        key, digest = target_set["key"], target_set["digest"]
        pin = self.target_pins().get(key)
        if pin is not None and pin != digest:
            where = PROTOCOL_FILE if key in self.protocol.target_pins else PINS_FILE
            raise BoardError(
                f"the targets of this cell ({key}, ground truth {digest[:12]}) are not those the board pins in {where} "
                f"({pin[:12]}): the prepared data differs from the data the board was pinned on (another "
                f"preparation version, other label files or demo sizes); prepare it as the board's protocol says")

    def _pin_targets(self, record: RunRecord) -> None:
        """Check ``record``'s ground truth against its targets file and the pin; pin a split seen first (under the lock)."""
        found = self.target_set(record)
        if found != record.target_set:
            raise BoardError(f"record names ground truth {record.target_set}, its targets file gives {found}")
        self.check_pin(found)
        pins = self.target_pins()
        if found["key"] not in pins:
            learnt = {k: v for k, v in pins.items() if k not in self.protocol.target_pins}
            write_atomically(self.root / PINS_FILE,
                             json.dumps({**learnt, found["key"]: found["digest"]}, indent=2, sort_keys=True) + "\n")

    def manifest(self) -> dict[str, str]:
        """The board manifest, read again whenever the file changed (other processes add records)."""
        try:
            stat = (self.root / MANIFEST_FILE).stat()
            stamp = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            stamp = None
        if self._manifest is None or stamp != self._manifest_stamp:
            self._manifest, self._manifest_stamp = read_manifest(self.root), stamp
        return self._manifest

    def store_artifact(self, identity: CellIdentity, kind: str, source: Path, large: bool = False) -> Artifact:
        """Copy a per-image file the task wrote (``kind``: predictions, targets) next to the record.

        Small files go into the board folder (versioned with it, so anyone can verify and compare
        its entries); ``large`` ones into the artifact store, named by their sha256.
        """
        self.check_identity(identity)
        suffix = Path(source).suffix or ".dat"
        digest = file_sha256(Path(source))
        if large:
            relative = Path(digest[:2]) / f"{digest}{suffix}"
            target = artifacts_dir() / relative
            if not target.is_file():
                write_atomically(target, Path(source).read_bytes())
            return Artifact(str(relative), digest, "artifacts")
        target = self.artifact_path(identity, kind, suffix)
        write_atomically(target, Path(source).read_bytes())
        return Artifact(str(target.relative_to(self.root)), file_sha256(target))

    def add(self, record: RunRecord) -> Path:
        """Store ``record`` (its artifacts already stored with :meth:`store_artifact`).

        The record is written last, so a cell is complete exactly when its JSON exists.
        """
        record.validate()
        self.check_identity(record.identity, record.protocol_version)
        wrong_scorer = self.scorer_problem(record)
        if wrong_scorer:
            raise BoardError(f"record of {record.identity.cell_key}: {wrong_scorer}")
        for artifact in (record.predictions, record.targets):
            if not self.artifact_file(artifact).is_file():
                raise BoardError(f"{self.artifact_file(artifact)}: artifact missing; store it with store_artifact first")
        path = self.result_path(record.identity)
        text = record.to_json()
        with self.lock():  # the manifest first: a record never exists unlisted, except by hand
            self._pin_targets(record)
            write_manifest(self.root, {**read_manifest(self.root), relative(path, self.root): record_digest(text)})
        write_atomically(path, text)
        self.failure_path(record.identity).unlink(missing_ok=True)
        self.rebuild_index()
        return path

    def record_failure(self, identity: CellIdentity, error: str) -> Path:
        path = self.failure_path(identity)
        write_atomically(path, json.dumps({"identity": asdict(identity), "error": error, "time": utc_now()}, indent=2))
        return path

    def records(self, invalid: list[str] | None = None) -> list[RunRecord]:
        """Every run record on the board, in file-name order.

        An unreadable, foreign or unverifiable record (:meth:`verify_record`) raises, unless
        ``invalid`` is given: then the reason is appended there (tables and the page list them; the
        runner re-does such cells only with ``--redo-invalid``).
        """
        records = []
        for path in sorted((self.root / "results").glob("*/*.json")):
            try:
                record = RunRecord.read(path)
                if record.identity.board != self.name or record.protocol_version != self.protocol.protocol_version:
                    raise BoardError(f"{path}: belongs to {record.identity.board}/{record.protocol_version}, not to this board")
                reason = self.verify_record(record, path)
                if reason:
                    raise BoardError(reason)
            except (RecordError, BoardError) as error:
                if invalid is None:
                    raise
                invalid.append(str(error))
                continue
            records.append(record)
        self.hashes.save()
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
                _check_same_preprocessing(existing[entry.key], entry)
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


def failure_message(error: str, limit: int = 300) -> str:
    """One line for a recorded failure: the last line of its traceback (or its only line),
    shortened to ``limit`` characters (the full text stays in the failure file)."""
    head = error.split("\n\n--- last output", 1)[0].strip().splitlines()
    return one_line(head[-1], limit) if head else "(no message)"


def copy_board_protocol(source: Board, target_folder: Path, board_name: str) -> Board:
    """Start a new board folder from an existing protocol (tests, forks of a board)."""
    target_folder.mkdir(parents=True, exist_ok=True)
    data = json.loads((source.root / PROTOCOL_FILE).read_text())
    data["board"] = board_name
    data.pop("default", None)  # a copy is never the default board
    (target_folder / PROTOCOL_FILE).write_text(json.dumps(data, indent=2) + "\n")
    return Board(target_folder)
