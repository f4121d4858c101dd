"""A board proves its numbers: every record is checked against its board manifest and its files.

Two hash chains, checked on every read of a board (``tables``, ``submit``, ``run``'s "already
done", paired comparisons) and in full by ``python -m benchmark verify``:

- the board manifest ``records.sha256`` (``sha256  results/<entry>/<cell>.json`` per line,
  ``sha256sum`` format) holds the hash of every record as the runner wrote it; it is updated
  under the board lock *before* the record file is written, so a record edited by hand, or
  copied in from elsewhere, no longer matches it;
- each record holds the sha256 of its prediction and target files, so a replaced file no
  longer matches its record.

Hashing is cheap on re-reads: the hash of a file is memoised by (size, mtime) in the board's
``.cache/file-hashes.json`` and recomputed only when either changes. A copied or downloaded board
verifies offline: ``sha256sum -c records.sha256`` from the board folder, or ``verify``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from benchmark.hashing import file_sha256
from benchmark.records import write_atomically

MANIFEST_FILE = "records.sha256"
HASH_MEMO_FILE = Path(".cache") / "file-hashes.json"


@dataclass
class FileHashes:
    """sha256 of files, memoised by (size, mtime_ns); ``save`` persists what was learnt."""

    memo_path: Path
    trust_memo: bool = True  # False: hash every file in full (``verify``)
    memo: dict[str, list] | None = None
    changed: bool = False

    def sha256(self, path: Path) -> str | None:
        """The file's sha256, or None when it does not exist."""
        if not self.trust_memo:
            return file_sha256(path) if path.is_file() else None
        if self.memo is None:
            try:
                self.memo = json.loads(self.memo_path.read_text())
            except (OSError, ValueError):
                self.memo = {}
        try:
            stat = path.stat()
        except OSError:
            return None
        key = str(path.resolve())
        known = self.memo.get(key)
        if known is not None and known[:2] == [stat.st_size, stat.st_mtime_ns]:
            return known[2]
        digest = file_sha256(path)
        self.memo[key] = [stat.st_size, stat.st_mtime_ns, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        if self.changed and self.memo is not None:
            write_atomically(self.memo_path, json.dumps(self.memo, sort_keys=True))
            self.changed = False


def read_manifest(board_root: Path) -> dict[str, str]:
    """``{record path relative to the board: sha256}`` from the board manifest (empty when absent)."""
    path = board_root / MANIFEST_FILE
    if not path.is_file():
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name:
            entries[name] = digest
    return entries


def write_manifest(board_root: Path, entries: dict[str, str]) -> None:
    write_atomically(board_root / MANIFEST_FILE, "".join(f"{entries[name]}  {name}\n" for name in sorted(entries)))


def record_digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def relative(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)
