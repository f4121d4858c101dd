"""Checkpoint paths that hold no weights: refused by name and kind, before anything reads them
(a FIFO would block, /dev/zero never ends) and, in ``check-checkpoint``, before torch is imported."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.backbones.checkpoint import CheckpointError, checkpoint_sha256, read_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def bad_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    fifo = tmp_path / "weights.pth"
    os.mkfifo(fifo)
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "notes.json").write_text("{}")
    return {
        "missing": (tmp_path / "nothing.pth", "checkpoint file not found"),
        "fifo": (fifo, "is a FIFO (named pipe), not a checkpoint file"),
        "device": (Path("/dev/zero"), "is a character device, not a checkpoint file"),
        "empty": (tmp_path / "empty.ckpt", "empty file (0 bytes), truncated or not a checkpoint"),
        "json": (tmp_path / "notes.json", "unknown checkpoint format"),
    }


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_the_loaders_name_what_the_path_is(tmp_path: Path) -> None:
    for path, message in bad_paths(tmp_path).values():
        for reader in (read_checkpoint, checkpoint_sha256):
            with pytest.raises(CheckpointError, match=f"^{re.escape(f'{path}: {message}')}"):
                reader(path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_check_checkpoint_refuses_them_without_importing_torch(tmp_path: Path) -> None:
    cases = bad_paths(tmp_path)
    paths = [str(path) for path, _ in cases.values()]
    script = ("import sys; from benchmark.cli import main; "
              f"codes = [main(['check-checkpoint', path, '--arch', 'resnet18']) for path in {paths!r}]; "
              "print(codes, sorted(name for name in ('torch', 'timm', 'sklearn', 'transformers') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == f"{[2] * len(paths)} []", result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {path}: {message}" + line.split(message, 1)[1] for (path, message), line in zip(cases.values(), lines)]
