"""The shared mmengine hooks (benchmark/heads/hooks.py) without a runner: early stopping across a
checkpoint, and a work folder of the code before them started afresh. The tasks' tests train with them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmark.heads.hooks import StrictEarlyStoppingHook, restart_if_stale, resumed_epoch, validation_values
from benchmark.heads.outcome import EpochRecord, read_history, write_history
from benchmark.heads.stopping import Selection

SELECTION = Selection(monitor="map", rule="greater", patience=2)


def fake_runner() -> SimpleNamespace:
    return SimpleNamespace(train_loop=SimpleNamespace(stop_training=False))


def test_the_light_parts_of_the_layer_import_no_mmengine():
    code = ("import sys, benchmark.heads, benchmark.heads.outcome, benchmark.heads.stopping, tasks.classification.training; "
            "print(sorted(m for m in sys.modules if m.startswith(('mmengine', 'mmdet', 'mmseg'))))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_early_stopping_stops_the_runner_and_a_resumed_finished_run_trains_no_further():
    hook, runner = StrictEarlyStoppingHook(SELECTION), fake_runner()
    for value, stopped in [(0.1, False), (0.1, False), (0.2, False), (math.nan, False), (0.15, True)]:
        hook.after_val_epoch(runner, {"val/map": value})
        assert runner.train_loop.stop_training is stopped
    checkpoint: dict = {}
    hook.before_save_checkpoint(runner, checkpoint)
    resumed, fresh_runner = StrictEarlyStoppingHook(SELECTION), fake_runner()
    resumed.after_load_checkpoint(fresh_runner, checkpoint)
    resumed.before_train(fresh_runner)
    assert fresh_runner.train_loop.stop_training
    with pytest.raises(KeyError, match="'map'.*'loss'"):
        StrictEarlyStoppingHook(SELECTION).after_val_epoch(fake_runner(), {"val/loss": 1.0})


def test_validation_values_lose_mmengines_prefix():
    assert validation_values({"val/loss": 1, "val/dice": 0.5}) == {"loss": 1.0, "dice": 0.5}


def work_folder(path: Path, history: object) -> Path:
    path.mkdir()
    for name in ("epoch_2.pth", "best_val_map_epoch_1.pth", "config.py"):
        (path / name).write_bytes(b"x")
    (path / "last_checkpoint").write_text(str(path / "epoch_2.pth"))
    (path / "history.json").write_text(json.dumps(history))
    return path


@pytest.mark.parametrize("old", [
    [{"epoch": 1, "train_loss": 1.0, "val_map": 0.1, "seconds": 1.0, "iterations": 3}],  # detection before benchmark/heads
    {"epochs": [{"epoch": 1, "train_loss": 1.0, "val_loss": 0.5, "val_dice": 0.2, "iterations": 3,
                 "train_seconds": 1.0, "val_seconds": 0.1}]},  # segmentation before benchmark/heads
])
def test_a_work_folder_of_the_code_before_the_shared_hooks_trains_afresh(tmp_path, old, capsys):
    work = work_folder(tmp_path / "cell", old)
    assert resumed_epoch(work) == 2
    assert restart_if_stale(work)
    assert sorted(path.name for path in work.iterdir()) == ["config.py"] and resumed_epoch(work) == 0
    assert "trains from its first epoch" in capsys.readouterr().out
    assert not restart_if_stale(work)  # nothing left to resume: a fresh start, nothing to say


def test_a_work_folder_of_this_format_resumes(tmp_path):
    work = work_folder(tmp_path / "cell", {})
    epochs = [EpochRecord(epoch=1, iterations=3, train_loss=1.0, validation={"map": 0.1}, train_seconds=1.0, val_seconds=0.5)]
    write_history(work / "history.json", epochs)
    assert not restart_if_stale(work)
    assert read_history(work / "history.json") == epochs and resumed_epoch(work) == 2
    (work / "history.json").unlink()  # a checkpoint without its history cannot resume exactly
    assert restart_if_stale(work) and resumed_epoch(work) == 0
