"""What the repository publishes as a board's rendered tables is what the code renders now.

Every versioned real-data board with a committed ``rendered/`` folder is rendered again (from a
copy, so nothing is written into the repository) and compared file by file; a renderer change
that is not followed by ``python -m benchmark tables --board NAME`` fails here (and so in CI).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark.board.render import render_board
from benchmark.board.store import Board

LEADERBOARDS = Path(__file__).resolve().parents[2] / "leaderboards"
PUBLISHED = sorted(folder.parent.name for folder in LEADERBOARDS.glob("*/rendered")
                   if not json.loads((folder.parent / "protocol.json").read_text())["demo"])  # the demo's is made by `make bench`


def files_under(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_versioned_board_publishes_rendered_tables() -> None:
    assert "mgca-cxr-v1" in PUBLISHED


@pytest.mark.parametrize("name", PUBLISHED)
def test_committed_rendered_tables_are_what_the_code_renders(tmp_path: Path, name: str) -> None:
    board = tmp_path / name
    shutil.copytree(LEADERBOARDS / name, board, ignore=shutil.ignore_patterns("rendered", ".cache", ".lock", ".locks"))
    render_board(Board(board), out=tmp_path / "rendered")
    committed, fresh = files_under(LEADERBOARDS / name / "rendered"), files_under(tmp_path / "rendered")
    stale = sorted(path for path in committed.keys() | fresh.keys() if committed.get(path) != fresh.get(path))
    assert not stale, (f"leaderboards/{name}/rendered is stale ({', '.join(stale)}): run "
                       f"`python -m benchmark tables --board {name}` and commit the result")
