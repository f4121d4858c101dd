"""Sharding, executors (submitit), dry-run plan and status on the toy task (tests/board/toy_task/)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "board"))
import toy_task  # noqa: E402 - registers the toy task

from benchmark.backbones import build_backbone  # noqa: E402
from benchmark.board.store import Board, failure_message  # noqa: E402
from benchmark.cli import main  # noqa: E402
from benchmark.commands.status import progress  # noqa: E402
from benchmark.data.prepared import PreparedDataset  # noqa: E402
from benchmark.executors import GridJob, JobRequest, shard_device, slurm_script  # noqa: E402
from benchmark.records import CellIdentity, RunRecord  # noqa: E402
from benchmark.grid import BackboneChoice, GridRequest, GridSummary, plan_grid, run_grid  # noqa: E402
from benchmark.sharding import Shard, ShardError, cache_group, partition  # noqa: E402

BACKBONE = "random_resnet18"
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- pure sharding

def _grid() -> list[CellIdentity]:
    """A multi-task grid of two backbones: classification 3 datasets, detection and segmentation 2."""
    cells = []
    slots = [("classification", "chexpert"), ("classification", "rsna"), ("classification", "covidx"),
             ("detection", "rsna"), ("detection", "object_cxr"), ("segmentation", "siim"), ("segmentation", "rsna")]
    for weights, (task, dataset), fraction, seed in product("ab", slots, (1, 10, 100), (0, 1, 2)):
        for draw in ((0,) if fraction == 100 else (0, 1, 2)):
            cells.append(CellIdentity("b", f"net{weights}", weights * 64, task, dataset, "p", "h", fraction, draw, seed, "cached"))
    return cells


def _cost(cell: CellIdentity) -> float:
    return {"classification": 1.0}.get(cell.task, 100.0) * cell.fraction


@pytest.mark.parametrize("count", range(1, 8))
def test_shards_partition_the_grid_deterministically_and_balanced(count: int) -> None:
    cells = _grid()
    shards = partition(cells, count, _cost)
    flat = [cell for shard in shards for cell in shard]
    assert len(flat) == len(cells) and set(flat) == set(cells)  # every cell exactly once
    shuffled = random.Random(count).sample(cells, len(cells))
    assert partition(shuffled, count, _cost) == shards  # the same grid planned again (in any order)
    loads = [sum(map(_cost, shard)) for shard in shards]
    assert max(loads) <= 1.1 * sum(loads) / count
    homes = {(cache_group(cell), k) for k, shard in enumerate(shards) for cell in shard}
    small = {cache_group(cell) for cell in cells if cell.task == "classification"}  # 1/100 of a detection group
    assert all(sum(group == home for home, _ in homes) == 1 for group in small)  # never split
    if count <= 2:
        assert len(homes) == 14  # no group split at all


def test_shard_specifications_are_checked() -> None:
    assert Shard.parse("2/3") == Shard(2, 3)
    for text in ("0/3", "4/3", "1/0", "a/b", "3", "-1/2"):
        with pytest.raises(ShardError, match="--shard"):
            Shard.parse(text)


def test_a_job_pins_its_tasks_to_their_gpus() -> None:
    assert shard_device("auto", 1, 0, 4) == "auto"
    assert shard_device("auto", 4, 2, 4) == "cuda:2"  # a task seeing all of the job's GPUs
    assert shard_device("auto", 4, 2, 1) == "cuda:0"  # SLURM's one GPU per task
    assert shard_device("cpu", 4, 2, 4) == "cpu"


# ----------------------------------------------------------------------------- toy grids

@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_task.write_toy_dataset(tmp_path_factory.mktemp("data"))


def _board(folder: Path) -> Board:
    return Board(toy_task.write_toy_board(folder, seeds=(0, 1)))


def _request(data: Path, folder: Path, **changes) -> GridRequest:
    return GridRequest(backbones=(BackboneChoice(BACKBONE),), data_dir=data, work_dir=folder / "work",
                       cache_dir=folder / "cache", progress=False, isolate=False, **changes)


def _records(board: Board) -> dict[str, dict]:
    """cell key -> headline metrics, of every record on the board."""
    out = {}
    for path in sorted((board.root / "results").rglob("*.json")):
        record = RunRecord.read(path)
        out[record.identity.cell_key] = {name: metric.value for name, metric in record.metrics.items()}
    return out


@pytest.fixture(scope="module")
def unsharded(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Board:
    folder = tmp_path_factory.mktemp("plain")
    board = _board(folder / "boards")
    summary = run_grid(board, _request(data, folder))
    assert (summary.cells, summary.ran) == (10, 10)
    return board


def test_shards_run_alone_fill_the_board_of_the_plain_run(data: Path, unsharded: Board, tmp_path: Path) -> None:
    board = _board(tmp_path / "boards")
    sizes = [run_grid(board, _request(data, tmp_path, shard=Shard(k, 3))).ran for k in (1, 2, 3)]
    assert sum(sizes) == 10 and all(sizes)
    assert _records(board) == _records(unsharded)
    record = RunRecord.read(next((board.root / "results").rglob("*.json")))
    assert record.provenance["device"] == "cpu" and record.provenance["shard"] in {"1/3", "2/3", "3/3"}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests' / 'board'}", "OMP_NUM_THREADS": "1"}


def _cli_args(board: Board, data: Path, folder: Path) -> list[str]:
    return ["run", "--backbone", BACKBONE, "--board", str(board.root), "--data", str(data), "--plugins", "toy_task",
            "--work-dir", str(folder / "work"), "--cache-dir", str(folder / "cache"), "--no-progress"]


def test_two_local_jobs_through_submitit_fill_the_board_of_the_plain_run(
        data: Path, unsharded: Board, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    board = _board(tmp_path / "boards")
    monkeypatch.setattr(os, "environ", _env())  # the jobs import this tree and the toy task
    code = main([*_cli_args(board, data, tmp_path), "--in-process", "--executor", "local", "--jobs", "2",
                 "--log-dir", str(tmp_path / "jobs")])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "submitted 2 local job(s)" in output and str(tmp_path / "jobs") in output
    assert _records(board) == _records(unsharded)
    logs = "".join(path.read_text() for path in (tmp_path / "jobs").rglob("*_log.out"))
    assert "in shard 1/2" in logs and "in shard 2/2" in logs


def test_a_shard_killed_mid_cell_completes_without_duplicates_when_run_again(data: Path, unsharded: Board, tmp_path: Path) -> None:
    board = _board(tmp_path / "boards")
    shards = [[item.cell.identity for item in plan_grid(board, _request(data, tmp_path, shard=Shard(k, 2)), GridSummary())]
              for k in (1, 2)]
    command = [sys.executable, "-m", "benchmark", *_cli_args(board, data, tmp_path), "--in-process", "--shard", "1/2"]
    process = subprocess.Popen(command, env={**_env(), "TOY_SLEEP": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not list((board.root / "results").rglob("*.json")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next cell
    state = progress(board)
    assert len(state.running) == 1 and state.running[0]["holder"].split()[2] == str(process.pid)  # "host pid N since T"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = len(_records(board))
    again = run_grid(board, _request(data, tmp_path, shard=Shard(1, 2)))  # the same shard started again
    assert (again.failed, again.ran + again.done_before) == ([], len(shards[0]))
    assert 1 <= killed_at <= again.done_before < len(shards[0])
    assert run_grid(board, _request(data, tmp_path, shard=Shard(2, 2))).ran == len(shards[1])
    assert _records(board) == _records(unsharded)  # every cell once, no duplicate file
    assert len(list((board.root / "results").rglob("*.json"))) == 10
    assert progress(board).running == []  # the killed claim is not shown as running


# ----------------------------------------------------------------------------- dry run, status

def test_the_dry_run_counts_what_the_run_then_evaluates(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    board = _board(tmp_path / "boards")
    run_grid(board, _request(data, tmp_path, fractions=(1,)))  # 4 cells done before
    args = [*_cli_args(board, data, tmp_path), "--dry-run", "--format", "json", "--throughput", "100", "--jobs", "2"]
    assert main(args) == 0
    plan = json.loads(capsys.readouterr().out)
    total = plan["total"]
    assert (total["cells"], total["done"], total["to_run"]) == (10, 4, 6)
    assert sum(item["cells"] for item in plan["per_shard"]) == 6 and len(plan["per_shard"]) == 2
    # toy: cached mode, 200 training images; val 60 + test 60 once, 10 % draws 0-1 (20 each), 100 % (200)
    assert total["encoder_passes"] == 60 + 60 + 20 + 20 + 200
    assert not list((board.root / "results").glob("*/*10pct*.json"))  # nothing ran
    summary = run_grid(board, _request(data, tmp_path))
    assert (summary.ran, summary.done_before) == (6, 4)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_planning_leaves_the_board_untouched_and_the_run_registers_the_entry(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The dry run, `status --backbone` and plan_grid only read the board; the run adds the backbone's entry."""
    board = _board(tmp_path / "boards")
    before = _files(board.root)
    assert main([*_cli_args(board, data, tmp_path), "--dry-run", "--throughput", "100"]) == 0
    assert main(["status", "--board", str(board.root), "--backbone", BACKBONE, "--data", str(data), "--plugins", "toy_task"]) == 0
    assert len(plan_grid(board, _request(data, tmp_path), GridSummary())) == 10
    capsys.readouterr()
    assert _files(board.root) == before and board.entries() == {}
    run_grid(board, _request(data, tmp_path, fractions=(1,)))
    assert [entry.name for entry in board.entries().values()] == [BACKBONE]


def test_status_counts_done_failed_and_to_run(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    board = _board(tmp_path / "boards")
    monkeypatch.setenv("TOY_FAIL", "10")
    run_grid(board, _request(data, tmp_path, fractions=(1, 10)))
    monkeypatch.delenv("TOY_FAIL")
    assert main(["status", "--board", str(board.root), "--backbone", BACKBONE, "--data", str(data), "--plugins", "toy_task"]) == 0
    text = capsys.readouterr().out
    assert "toy/rsna                          4       4        0       2" in text
    assert "failed: random_resnet18@" in text and "RuntimeError: toy failure at 10%" in text and "traceback: " in text
    assert main(["status", "--board", str(board.root), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows["toy/rsna"] == {"done": 4, "failed": 4, "running": 0, "to_run": None}
    assert failure_message("Traceback (most recent call last):\n  File x\nValueError: bad\n\n--- last output of the cell (p) ---\n...") == "ValueError: bad"


# ----------------------------------------------------------------------------- bad input, SLURM script

@pytest.mark.parametrize("extra, message", [
    (["--shard", "0/3"], "K must be between 1 and N=3"),
    (["--shard", "4/3"], "K must be between 1 and N=3"),
    (["--executor", "local", "--jobs", "0"], "--jobs 0: expected at least 1 job"),
    (["--executor", "kubernetes"], "unknown executor"),
    (["--executor", "slurm", "--time", "90"], "--time '90'"),
    (["--executor", "slurm", "--time", "1:00:00", "--slurm-arg", "account"], "expected KEY=VALUE"),
    (["--executor", "slurm", "--jobs", "2"], "--executor slurm needs --time"),
])
def test_bad_cluster_options_are_one_error_line(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 extra: list[str], message: str) -> None:
    board = _board(tmp_path / "boards")
    assert main([*_cli_args(board, data, tmp_path), *extra]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and message in error


def test_an_unwritable_board_folder_is_one_error_line(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    board = _board(tmp_path / "boards")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == board.root else real_access(path, mode))
    assert main(_cli_args(board, data, tmp_path)) == 2  # tests run as root, for whom chmod changes nothing
    error = capsys.readouterr().err
    assert error == f"error: {board.root}: the board folder is not writable; records cannot be stored there\n"


def test_the_slurm_submission_script(tmp_path: Path) -> None:
    request = JobRequest(jobs=6, log_dir=tmp_path / "jobs", gpus_per_job=2, cpus_per_job=16, time="1-02:30:00",
                         partition="gpu", slurm_args={"account": "cxr", "qos": "high"})
    script = slurm_script(request)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --array=0-5%6", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --ntasks-per-node=2", "#SBATCH --cpus-per-task=8", "#SBATCH --time=1590",
                 "#SBATCH --account=cxr", "#SBATCH --qos=high", f"#SBATCH --output={tmp_path / 'jobs'}/%A_%a/%A_%a_0_log.out"):
        assert line in script, line
    # each task of array job k unpickles run_shard(grid, k, ...) and runs shard K/N of the grid (executors.py)
    assert f"srun --unbuffered --output {tmp_path / 'jobs'}/%A_%a/%A_%a_%t_log.out" in script
    assert f"-m submitit.core._submit {tmp_path / 'jobs'}/%j" in script
    assert request.shards == 12


def test_the_feature_cache_key_ignores_the_device(data: Path, tmp_path: Path) -> None:
    """One cache serves every device (features of equal weights and inputs agree to float precision),
    so a cluster's CPU and GPU shards share it; the record says where each cell ran."""
    from benchmark.heads.features import EncodeStats
    from tasks.classification.features import cached_features

    root = data / toy_task.TOY_DATASET
    dataset = PreparedDataset(root)
    ids = dataset.split_ids("test", partition="classification")[:4]
    if not (root / "images.npy").is_file():
        np.save(root / "images.npy", np.random.default_rng(0).integers(0, 255, (len(dataset.records), 32, 32), dtype=np.uint8))
        (root / "images.ids.txt").write_text("".join(f"{i}\n" for i in dataset.records.index))
    backbone = build_backbone(BACKBONE)
    prepare = lambda images: images.float().div(255)  # noqa: E731 - already 3 channels
    first, hit = cached_features(tmp_path, backbone, dataset, ids, {"eval": 1}, prepare, 4, torch.device("cpu"), EncodeStats(), "test")
    again, hit_again = cached_features(tmp_path, backbone, dataset, ids, {"eval": 1}, prepare, 4, torch.device("cpu", 0), EncodeStats(), "test")
    assert (hit, hit_again) == (False, True) and torch.equal(first, again)


@pytest.mark.slow
def test_two_local_jobs_on_demo_data_give_the_records_of_the_plain_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """The real linear probe on demo RSNA (random ViT-Tiny, 64 px): 2 submitit jobs == one plain run."""
    assert main(["demo-data", "--out", str(tmp_path / "raw"), "--datasets", "rsna", "--images", "120", "--size", "64"]) == 0
    assert main(["prepare", "rsna", "--raw", str(tmp_path / "raw" / "rsna"), "--out", str(tmp_path / "prepared"), "--image-size", "64"]) == 0
    boards = []
    for name in ("plain", "sharded"):
        folder = tmp_path / name / "demo-mgca-cxr-v1"
        folder.mkdir(parents=True)
        (folder / "protocol.json").write_text((ROOT / "leaderboards" / "demo-mgca-cxr-v1" / "protocol.json").read_text())
        boards.append(Board(folder))
    grid = ["run", "--backbone", "random_vit_tiny", "--tasks", "classification", "--datasets", "rsna", "--fractions", "1,100",
            "--draws", "0,1", "--data", str(tmp_path / "prepared"), "--no-progress"]
    assert main([*grid, "--board", str(boards[0].root), "--work-dir", str(tmp_path / "w0"), "--cache-dir", str(tmp_path / "c0"),
                 "--in-process"]) == 0
    monkeypatch.setattr(os, "environ", _env())
    assert main([*grid, "--board", str(boards[1].root), "--work-dir", str(tmp_path / "w1"), "--cache-dir", str(tmp_path / "c1"), "--executor", "local",
                 "--jobs", "2", "--log-dir", str(tmp_path / "jobs")]) == 0
    capsys.readouterr()
    assert len(_records(boards[0])) == 3 and _records(boards[1]) == _records(boards[0])


def test_cell_costs_by_hand() -> None:
    from benchmark.costs import SplitCounts, estimate
    from tasks.registry import get_task

    classification, segmentation = get_task("classification"), get_task("segmentation")
    cell = CellIdentity("b", "n", "a" * 64, "classification", "rsna", "classification", "linear", 10, 1, 0, "cached")
    work = estimate(cell, SplitCounts(train=100, val=30, test=20), classification.cost, classification.epochs({}))
    assert (work.epochs, work.training_steps, work.training_samples, work.uncached_passes) == (50, 50 * 2, 5000, 0)
    assert sorted(work.cache_entries.values()) == [20, 30, 100] and work.cost(0.002) == 150 + 10.0
    paper = estimate(CellIdentity("b", "n", "a" * 64, "segmentation", "siim", "segmentation", "unet", 100, 0, 0, "paper"),
                     SplitCounts(train=16, val=4, test=5), segmentation.cost, segmentation.epochs({"max_epochs": 3}))
    assert (paper.training_steps, paper.uncached_passes, paper.cache_entries) == (3 * 2, 3 * 16 + 3 * 4 + 5, {})


def test_a_grid_is_planned_from_the_shipped_split_sizes(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    args = ["run", "--backbone", BACKBONE, "--board", "mgca-cxr-v1", "--tasks", "classification", "--datasets", "rsna",
            "--data", str(tmp_path / "nothing"), "--dry-run", "--from-splits", "--throughput", "10", "--format", "json"]
    assert main(args) == 0
    plan = json.loads(capsys.readouterr().out)
    row = plan["rows"]["classification/rsna"]
    # benchmark/splits/rsna/source.json: val 4,003 + test 4,003 once, 1 % draws 3 × 187, 10 % 3 × 1,868, 100 % 18,678
    assert (row["cells"], row["encoder_passes"]) == (21, 4003 + 4003 + 3 * 187 + 3 * 1868 + 18678)
    assert row["cache_bytes"] == row["encoder_passes"] * 512 * 4  # ResNet-18: 512 float32 per image
    assert main([*args[:-2], "--datasets", "covidx"]) == 2
    assert "covidx" in capsys.readouterr().err


def test_local_jobs_get_their_own_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import submitit

    from benchmark.executors import run_shard, submit

    seen = []
    monkeypatch.setattr(submitit.LocalExecutor, "submit",
                        lambda self, function, *args: seen.append((function, args, dict(self.parameters))) or len(seen))
    grid = GridJob(tmp_path / "board", GridRequest((BackboneChoice("x"),), tmp_path / "data"), ("toy_task",))
    submit("local", grid, JobRequest(jobs=3, log_dir=tmp_path, gpus_per_job=2))
    assert [parameters["visible_gpus"] for *_, parameters in seen] == [[0, 1], [2, 3], [4, 5]]
    assert all(p["gpus_per_node"] == 2 and p["tasks_per_node"] == 2 and p["timeout_min"] > 10**5 for *_, p in seen)
    assert [(function, args) for function, args, _ in seen] == [
        (run_shard, (grid, job, 3, 2)) for job in range(3)]  # job k: shards 2k+1, 2k+2 of 6


def test_a_job_task_runs_its_shard_on_its_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    import pickle

    import submitit

    import benchmark.grid
    from benchmark.executors import run_shard

    board = _board(tmp_path / "boards")
    calls = []
    failed = GridSummary(cells=3, ran=2, failed=["x: toy failure"], shard="6/6")
    monkeypatch.setattr(benchmark.grid, "run_grid", lambda board, request: calls.append((board.root, request)) or failed)
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: type("Env", (), {"local_rank": 1})())
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    request = GridRequest((BackboneChoice("x"),), tmp_path / "data", tasks=("toy",), modes={None: "cached"})
    grid = pickle.loads(pickle.dumps(GridJob(board.root, request, ("toy_task",))))  # what a job receives
    assert run_shard(grid, 2, 3, 2) == 1  # job 3 of 3, its second task; a failed cell is exit code 1
    assert calls == [(board.root, GridRequest((BackboneChoice("x"),), tmp_path / "data", tasks=("toy",),
                                              modes={None: "cached"}, shard=Shard(6, 6), device="cuda:1"))]
    assert capsys.readouterr().out.splitlines() == ["shard 6/6 on cuda:1", *failed.lines()]
