"""``python -m benchmark selftest``: its CPU form end to end, and the parts that decide what it runs and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.costs import TaskCost
from benchmark.selftest import (PRETRAIN_DATASET, TEXT_TOWER_BACKBONE, Check, SelfTest, demo_datasets, human_bytes,
                                plan_cells, shared_datasets)
from tasks.registry import TaskDataset, TaskInfo, all_tasks, task_packages

ROOT = Path(__file__).resolve().parents[1]
# Every metric and training number of the self-test's cells (all tasks, heads and modes on its demo data) as the code
# gave them at 3698d81, before the head-training layer and the grid package: a refactor must not move them. fp32
# reductions run in another order on another CPU (vector width, thread split), which moves the sixth significant digit
# of a loss after a step or two: the tolerance allows that, and a change of cache dtype (fp16 maps) is already larger.
# Training keys renamed with their values unchanged for the typed history of benchmark/heads/outcome.py
# (history.N.val_map/val_loss/val_dice -> history.N.validation.map/loss/dice); segmentation's summaries derived from
# its history (val_loss_at_best, best_val_dice, ...) dropped, its feature_store moved to the config.
# Keys added later, none changed: "zeroshot rsna prompts direct (mgca_tiny_init)" when the self-test got a backbone
# with a text tower (before, zero-shot was skipped); its value is the one the first run gave (4 test images, scores
# from an untrained tower: AUROC 0.5, two of four positive-negative pairs ordered, with margins far above fp32 noise).
# "retrieval chexpert similarity direct (mgca_tiny_init)" when retrieval joined the self-test (before, its cell had no
# entry): the first run's values (the demo 5x200 hold-out, 50 images against the 60-sentence pool, an untrained tower:
# P@1/5/10 near the 1/5 of chance). The untrained texts' embeddings lie close together, so some orderings hang on
# gaps of 1e-7; the values did not move with the text tower in float64, one or two threads, oneDNN off, or other
# image and text batch sizes (similarities moved by up to 7e-7), but 1e-7 of noise flips one in 8 trials: its keys are
# checked, its values are not (UNGUARDED_VALUES), so that another CPU's rounding cannot fail the suite.
UNGUARDED_VALUES = {"retrieval chexpert similarity direct (mgca_tiny_init)"}
BEFORE_REFACTOR = Path(__file__).parent / "selftest_metrics_before_refactor.json"
FAMILIES = {"random_resnet18": "resnet", "random_vit_tiny": "vit"}


def test_the_cpu_selftest_runs_every_task_head_and_mode_and_prints_the_table(tmp_path: Path, scratch_folder) -> None:
    # Its temporary folder (TMPDIR) in memory where there is room: its detection cells write 2 GB of checkpoints.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TMPDIR": str(scratch_folder(3 * 2**30))}
    metrics_file = tmp_path.parent / f"{tmp_path.name}-metrics.json"
    finished = subprocess.run([sys.executable, "-m", "benchmark", "selftest", "--device", "cpu", "--metrics",
                               str(metrics_file)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert finished.returncode == 0, finished.stdout + finished.stderr[-5000:]
    lines = finished.stdout.splitlines()
    assert "peak RSS" in lines[1]
    # the task packages the child process sees (other tests register plugin tasks, e.g. the toy task, in this one);
    # every cell runs, a task that requires a text tower (zero-shot) on the self-test's backbone that has one
    for info in (info for info in all_tasks() if info.name in task_packages()):
        for head in info.heads:
            for mode in info.modes:
                row = next((line for line in lines if line.startswith(f"{info.name} ") and f" {head} {mode} (" in line), None)
                assert row is not None, (info.name, head, mode, finished.stdout)
                assert row.endswith("  ok"), (info.name, head, mode, finished.stdout)
                if info.requires is None:  # the image-only tasks' cells stay on the random backbones (numbers unchanged)
                    assert f"({TEXT_TOWER_BACKBONE})" not in row, row
    assert any(line.startswith("pretraining:") and line.endswith("  ok") for line in lines)
    checks = len(lines) - 4
    assert lines[-1].startswith(f"{checks} of {checks} checks passed in ") and "skipped" not in lines[-1], lines[-1]
    assert list(tmp_path.iterdir()) == []  # nothing written outside its temporary folder
    before = json.loads(BEFORE_REFACTOR.read_text())
    now = json.loads(metrics_file.read_text())
    assert sorted(now) == sorted(before)
    for cell, values in before.items():
        assert sorted(now[cell]) == sorted(values), cell
        if cell in UNGUARDED_VALUES:
            continue
        for name, value in values.items():
            assert now[cell][name] == pytest.approx(value, rel=1e-5, abs=1e-7), (cell, name)


def test_every_task_package_declares_its_smoke_overrides() -> None:
    for info in all_tasks():
        if info.name in task_packages():
            assert info.smoke, f"task {info.name!r} declares no smoke overrides: the self-test would run its full protocol"


def test_the_plan_is_every_declared_head_and_mode_on_the_backbone_whose_family_defaults_to_the_head() -> None:
    infos = [info for info in all_tasks() if info.name in task_packages()]
    plans = plan_cells(infos, {info.name: "rsna" for info in infos}, FAMILIES)
    assert {(p.task, p.head, p.mode) for p in plans} == {(i.name, h, m) for i in infos for h in i.heads for m in i.modes}
    assert len(plans) == sum(len(i.heads) * len(i.modes) for i in infos)
    chosen = {(p.task, p.head): p.backbone for p in plans}
    assert chosen[("detection", "yolov3")] == chosen[("segmentation", "unet")] == "random_resnet18"
    assert chosen[("detection", "faster_rcnn")] == chosen[("segmentation", "setr")] == "random_vit_tiny"
    assert chosen[("classification", "linear")] == "random_resnet18"  # "*": the first backbone


def toy(name: str, datasets: list[str], heads: tuple[str, ...] = ("a",), defaults: dict | None = None) -> TaskInfo:
    return TaskInfo(name=name, title=name, version=1, datasets={d: TaskDataset("classification") for d in datasets},
                    heads=heads, default_heads=defaults or {"*": heads[0]}, modes=("cached",), default_mode="cached",
                    adapter="x:y", scorer="classification",
                    cost=TaskCost(batch_size=8, max_epochs=1, head_cost=0.1, features="global", cache_dtype_bytes=4))


def test_a_head_no_family_defaults_to_runs_on_the_first_backbone() -> None:
    info = toy("t", ["rsna"], heads=("a", "b"), defaults={"vit": "a"})
    assert {p.head: p.backbone for p in plan_cells([info], {"t": "rsna"}, FAMILIES)} == {
        "b": "random_resnet18", "a": "random_vit_tiny"}


def test_a_task_with_a_requirement_runs_on_the_first_backbone_that_meets_it() -> None:
    families = {**FAMILIES, "with_text": "vit"}
    plain = toy("plain", ["rsna"], heads=("a", "b"), defaults={"vit": "b"})
    needs = replace(toy("needs", ["rsna"], heads=("a", "b"), defaults={"vit": "b"}), requires=lambda loaded: "no text")
    meets = lambda info, backbone: info.requires is None or backbone == "with_text"  # noqa: E731
    chosen = {(p.task, p.head): p.backbone for p in plan_cells([plain, needs], {"plain": "rsna", "needs": "rsna"}, families, meets)}
    # without a requirement nothing changes: the first backbone of the head's family, else the first one
    assert chosen == {("plain", "a"): "random_resnet18", ("plain", "b"): "random_vit_tiny",
                      ("needs", "a"): "with_text", ("needs", "b"): "with_text"}
    # none meets it: planned on the usual backbone, where the run reports the cell skipped with that backbone's reason
    nobody = {(p.task, p.head): p.backbone for p in plan_cells([needs], {"needs": "rsna"}, families, lambda i, b: False)}
    assert nobody == {("needs", "a"): "random_resnet18", ("needs", "b"): "random_vit_tiny"}


def test_the_selftest_has_a_text_tower_backbone_for_every_task_that_requires_one() -> None:
    from benchmark.selftest import TINY_BACKBONES

    assert TEXT_TOWER_BACKBONE not in TINY_BACKBONES
    assert [info.name for info in all_tasks() if info.name in task_packages() and info.requires is not None]  # zeroshot at least


def test_the_pretraining_corpus_is_prepared_once_whether_a_cell_uses_it_or_not() -> None:
    assert demo_datasets({"a": "rsna", "b": "covidx", "c": "rsna"}) == ["covidx", "rsna", PRETRAIN_DATASET]
    assert demo_datasets({"a": "rsna", "b": PRETRAIN_DATASET}) == [PRETRAIN_DATASET, "rsna"]


def test_each_task_runs_on_the_dataset_most_tasks_share() -> None:
    infos = [toy("A", ["x", "y"]), toy("B", ["y", "z"]), toy("C", ["z"]), toy("D", ["w", "x"])]
    # counts: x 2, y 2, z 2, w 1; equals keep the declaration order
    assert shared_datasets(infos, {"w", "x", "y", "z"}) == {"A": "x", "B": "y", "C": "z", "D": "x"}
    assert shared_datasets(infos, {"w", "y", "z"}) == {"A": "y", "B": "y", "C": "z", "D": "w"}
    with pytest.raises(ValueError, match="task 'C'"):
        shared_datasets(infos, {"x", "y", "w"})


def test_a_failing_check_is_reported_on_its_line_and_the_next_check_runs(tmp_path: Path, capsys) -> None:
    test = SelfTest("cpu", tmp_path)

    def broken() -> None:
        print("the log keeps this")
        raise RuntimeError("boom\nsecond line")

    test.run("broken", broken)
    test.run("fine", lambda: None)
    assert [(c.name, c.error) for c in test.checks] == [("broken", "RuntimeError: boom"), ("fine", None)]
    out, err = capsys.readouterr()
    assert out.splitlines()[0].endswith("RuntimeError: boom") and out.splitlines()[1].endswith("  ok")
    assert "Traceback" in err and "the log keeps this" in (tmp_path / "logs" / "broken.log").read_text()


def test_any_failed_check_makes_the_exit_code_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    import benchmark.selftest

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", ""))  # restored afterwards
    monkeypatch.setattr(benchmark.selftest, "run_selftest", lambda device, root, ddp: SelfTest("cpu", root, [Check("a"), Check("b", error="E")]))
    assert main(["selftest", "--device", "cpu", "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "1 of 2 checks passed in 0 s; failed: b"
    monkeypatch.setattr(benchmark.selftest, "run_selftest", lambda device, root, ddp: SelfTest("cpu", root, [Check("a")]))
    assert main(["selftest", "--device", "cpu"]) == 0


def test_a_non_empty_out_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    (tmp_path / "kept.txt").write_text("mine")
    assert main(["selftest", "--device", "cpu", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path}: the folder is not empty; name a new or empty one\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(capsys) -> None:
    assert main(["selftest", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda: no CUDA device") and err.count("\n") == 1


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="resetting the resident peak needs Linux")
def test_the_cpu_peak_is_the_peak_since_the_reset() -> None:
    # In a fresh process: in the test process (3 GB resident after the suite's earlier tests) the peak after the second
    # reset once equalled the first reading to the byte (CI, 2026-12-07; cause not found, it passed alone and in the
    # suite before): a process of its own has no earlier allocations or threads in the way.
    script = """
import numpy as np
from benchmark.selftest import peak_memory, reset_peak_memory
reset_peak_memory("cpu")
block = np.ones(200 * 2**20, dtype=np.uint8)  # 200 MiB, touched
high = peak_memory("cpu")
del block
reset_peak_memory("cpu")
print(high, peak_memory("cpu"))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    finished = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    high, after = map(int, finished.stdout.split())
    assert high > 200 * 2**20 and after < high - 150 * 2**20


def test_memory_is_printed_in_binary_units() -> None:
    assert [human_bytes(n) for n in (None, 0, 1023, 1024, 2**30, 1536 * 2**20, 3 * 2**40)] == [
        "-", "0 B", "1023 B", "1.0 KiB", "1.0 GiB", "1.5 GiB", "3072.0 GiB"]
