"""A board proves its numbers: every record is checked against its board manifest and its files.

Two hash chains, checked on every read of a board (``tables``, ``submit``, ``run``'s "already
done", paired comparisons) and in full by ``python -m benchmark verify``:

- the board manifest ``records.sha256`` (``sha256  results/<entry>/<cell>.json`` per line,
  ``sha256sum`` format) holds the hash of every record as the runner wrote it; it is updated
  under the board lock *before* the record file is written, so a record edited by hand, or
  copied in from elsewhere, no longer matches it;
- each record holds the sha256 of its prediction and target files, so a replaced file no
  longer matches its record.

Hashing is cheap on re-reads: :class:`FileHashes` memoises a file's hash under a key that no
change of its content can restore (see there), in a per-machine memo outside the board
(:func:`hash_memo_path`: the user's cache), so nothing published or copied with a board can vouch
for its files. ``verify`` trusts no memo and hashes every file in full. A copied or downloaded
board verifies offline: ``sha256sum -c records.sha256`` from the board folder, or ``verify``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.hashing import file_sha256
from benchmark.files import write_atomically

MANIFEST_FILE = "records.sha256"
LOCAL_CACHE_ENV = "MGCA_BENCH_LOCAL_CACHE"  # this machine's caches about boards (default: the user's cache)
# A file changed less than this long ago is hashed but not memoised: file systems stamp times with
# a coarse clock (a few ms), so a later write within the same tick could keep every stamp (git's
# "racily clean" entries).
RACY_SECONDS = 2.0


def local_cache_dir() -> Path:
    """This machine's caches about boards (hash memos, paired-test results): ``$MGCA_BENCH_LOCAL_CACHE`` or
    ``$XDG_CACHE_HOME/mgca-bench`` (``~/.cache/mgca-bench``). Never inside a board: a cache published or
    copied with a board would vouch for files it never saw, or for test results never computed."""
    folder = os.environ.get(LOCAL_CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mgca-bench"
    return Path(folder)


def hash_memo_path(board_root: Path) -> Path:
    """Where the hash memo of ``board_root`` lives: one file per board folder under :func:`local_cache_dir`."""
    key = hashlib.sha256(str(Path(board_root).resolve()).encode()).hexdigest()[:16]
    return local_cache_dir() / "file-hashes" / f"{key}.json"


@dataclass
class FileHashes:
    """sha256 of files, memoised by what a content change cannot restore; ``save`` persists what was learnt.

    The key is (device, inode, size, mtime_ns, ctime_ns). Writing a file, replacing it by a rename,
    ``touch`` and ``chmod`` all set its ctime to the current time, which no user can set back (only
    a change of the system clock can), so a memo entry is trusted only for the very file it was
    computed from, unchanged since; files changed within :data:`RACY_SECONDS` are never memoised.
    """

    memo_path: Path  # hash_memo_path(board root)
    trust_memo: bool = True  # False: hash every file in full (``verify``)
    memo: dict[str, list] | None = None
    changed: bool = False

    def sha256(self, path: Path) -> str | None:
        """The file's sha256, or None when it does not exist."""
        if not self.trust_memo:
            return file_sha256(path) if path.is_file() else None
        memo = self._loaded()
        try:
            stat = path.stat()
        except OSError:
            return None
        key = str(path.resolve())
        stamp = [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
        known = memo.get(key)
        if isinstance(known, list) and known[:-1] == stamp:
            return known[-1]
        digest = file_sha256(path)
        if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) >= RACY_SECONDS * 1e9:
            memo[key] = [*stamp, digest]
            self.changed = True
        return digest

    def derived(self, key: str, compute: Callable[[], Any]) -> Any:
        """A value computed from content that ``key`` names by its sha256 (the ground-truth digest of a
        targets file whose hash was just checked), memoised like the hashes; ``verify`` recomputes it."""
        if not self.trust_memo:
            return compute()
        memo = self._loaded()
        if key not in memo:
            memo[key], self.changed = compute(), True
        return memo[key]

    def _loaded(self) -> dict[str, Any]:
        if self.memo is None:
            try:
                self.memo = json.loads(self.memo_path.read_text())
            except (OSError, ValueError):
                self.memo = {}
            if not isinstance(self.memo, dict):
                self.memo = {}
        return self.memo

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
