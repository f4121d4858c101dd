"""Atomic writes (benchmark/files.py): whole or nothing, and a crashed writer's leftovers recognised."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmark.files import remove_stale_temps, replace_directory, write_atomically, write_through


def test_write_atomically_replaces_the_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.json"
    write_atomically(path, "{}")
    write_atomically(path, b"[1]")
    assert path.read_text() == "[1]" and os.listdir(path.parent) == ["a.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")

    def half_write(temp: Path) -> None:
        temp.write_bytes(b"ne")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_through(path, half_write)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]


def test_a_directory_is_published_whole_and_the_first_writer_wins(tmp_path: Path) -> None:
    folder = tmp_path / "entry"
    assert replace_directory(folder, lambda scratch: (scratch / "x").write_text("first"))
    assert not replace_directory(folder, lambda scratch: (scratch / "x").write_text("second"))
    assert (folder / "x").read_text() == "first" and os.listdir(tmp_path) == ["entry"]
    with pytest.raises(RuntimeError):
        replace_directory(tmp_path / "other", lambda scratch: (_ for _ in ()).throw(RuntimeError("interrupted")))
    assert os.listdir(tmp_path) == ["entry"]


def test_stale_temp_files_and_folders_of_dead_writers_are_removed(tmp_path: Path) -> None:
    write_atomically(tmp_path / "a.json", "{}")
    dead = tmp_path / "b.json.tmp-999999999-abc"
    dead_folder = tmp_path / "entry.tmp-999999999-def"
    alive = tmp_path / f"c.json.tmp-{os.getpid()}-abc"
    dead.write_text("{")
    dead_folder.mkdir()
    (dead_folder / "level0.npy").write_bytes(b"")
    alive.write_text("{")
    assert remove_stale_temps(tmp_path) == [dead, dead_folder]
    assert alive.exists() and not dead_folder.exists() and (tmp_path / "a.json").read_text() == "{}"
