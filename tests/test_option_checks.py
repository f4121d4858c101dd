"""Every option is checked before anything is built, allocated or written: one error line, exit 2 (issue 19, section 2).

Each probe is what a careless or hostile user typed; before these checks they allocated tens of
GB (``--n-resamples``), killed every cell (``--cell-timeout -5``), failed each cell in turn
(``--device cuda:N``) or ended in a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "board"))
import toy_task  # noqa: E402 - registers the toy task

from benchmark.cli import main  # noqa: E402


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        return int(exit_.code)


def _assert_one_error_line(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith(("error:", "python -m benchmark"))]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(word in lines[0] for word in words), err


@pytest.mark.parametrize("argv, words", [
    (["score", "classification", "--n-resamples", "1000000000"], ["--n-resamples", "10000"]),
    (["score", "classification", "--n-resamples", "0"], ["--n-resamples"]),
    (["score", "classification", "--seed", "-1"], ["--seed", "-1"]),
    (["run", "--backbone", "x", "--seeds", "-1"], ["--seeds", "-1"]),
    (["run", "--backbone", "x", "--seeds", "0,1,99999999999"], ["--seeds"]),
    (["run", "--backbone", "x", "--device", "tpu"], ["--device", "tpu"]),
    (["run", "--backbone", "x", "--device", "cuda:x"], ["--device"]),
    (["run", "--backbone", "x", "--dry-run", "--throughput", "0"], ["--throughput", "'0'"]),
    (["run", "--backbone", "x", "--dry-run", "--throughput", "nan"], ["--throughput", "nan"]),
    (["run", "--backbone", "x", "--cell-timeout", "-5"], ["--cell-timeout", "-5"]),
    (["run", "--backbone", "x", "--cell-timeout", "inf"], ["--cell-timeout"]),
    (["run", "--backbone", "x", "--plugins", "no_such_plugin_module"], ["--plugins", "no_such_plugin_module"]),
    (["run", "--backbone", "x", "--plugins", "no_such_package.sub"], ["--plugins", "no_such_package.sub"]),
    (["prepare", "rsna", "--raw", "r", "--out", "o", "--image-size", "100000"], ["--image-size", "4096"]),
    (["demo-checkpoint", "--out", "x.ckpt", "--seed", "-3"], ["--seed"]),
])
def test_bad_options_are_usage_errors_at_parse_time(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _exit_code(argv) == 2
    _assert_one_error_line(capsys.readouterr().err, *words)
    assert not list(tmp_path.iterdir())  # nothing written


def test_demo_checkpoint_refuses_a_folder_and_an_unknown_arch_without_writing(tmp_path, capsys):
    assert _exit_code(["demo-checkpoint", "--out", str(tmp_path)]) == 2
    _assert_one_error_line(capsys.readouterr().err, "is a folder")
    (tmp_path / "file").write_text("")
    assert _exit_code(["demo-checkpoint", "--out", str(tmp_path / "file" / "x.ckpt")]) == 2
    _assert_one_error_line(capsys.readouterr().err, "is a file, not a folder")
    assert _exit_code(["demo-checkpoint", "--out", str(tmp_path / "new" / "x.ckpt"), "--arch", "bogus"]) == 2
    _assert_one_error_line(capsys.readouterr().err, "unknown architecture 'bogus'")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]


def test_a_gpu_the_machine_lacks_is_one_error_before_the_grid(tmp_path, capsys):
    """Not one failure record per cell: the device is checked once, before any cell or record."""
    data = toy_task.write_toy_dataset(tmp_path / "data")
    board = toy_task.write_toy_board(tmp_path / "boards", seeds=(0,))
    before = sorted(path for path in board.rglob("*"))
    code = main(["run", "--backbone", "random_resnet18", "--board", str(board), "--data", str(data), "--plugins", "toy_task",
                 "--work-dir", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
                 "--in-process", "--device", "cuda:999"])
    assert code == 2
    _assert_one_error_line(capsys.readouterr().err, "--device cuda:999", "CUDA device(s)")
    assert sorted(path for path in board.rglob("*")) == before and not (tmp_path / "work").exists()


@pytest.mark.parametrize("task, content, words", [
    ("segmentation", b"", ["bad.npz", "not an NPZ"]),
    ("detection", b"[" * 100_000 + b"]" * 100_000, ["nested too deeply"]),
])
def test_malformed_prediction_files_are_one_line(task, content, words, tmp_path, capsys):
    path = tmp_path / ("bad.npz" if task == "segmentation" else "bad.json")
    path.write_bytes(content)
    assert main(["score", task, "--predictions", str(path), "--targets", str(path)]) == 2
    _assert_one_error_line(capsys.readouterr().err, str(path), *words)
