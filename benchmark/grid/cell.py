"""Evaluating one cell: the task's adapter on the cell's data, its files scored by the task's
scorer (the number on the board is the number ``python -m benchmark score`` prints), and the
record written to the board with where and how the cell ran."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from benchmark import scoring
from benchmark.backbones import LoadedBackbone
from benchmark.board.protocol import ComparisonSettings
from benchmark.board.store import Board
from benchmark.data.prepared import PreparedDataset
from benchmark.grid.request import Cell, GridError, GridRequest, resolve_device
from benchmark.provenance import collect_provenance, utc_now
from benchmark.records import CellIdentity, RunRecord
from benchmark.scoring import scorer
from benchmark.scoring.bootstrap import BootstrapOptions
from benchmark.sharding import Shard
from tasks.registry import TaskCell, TaskResult

def placement(device: str, shard: Shard | None) -> dict[str, Any]:
    """Where a cell ran: the resolved device (and its GPU's name), the shard, the SLURM job."""
    import torch

    where: dict[str, Any] = {"device": device}
    if device.startswith("cuda"):
        where["device_name"] = torch.cuda.get_device_name(torch.device(device))
        where["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    if shard is not None:
        where["shard"] = str(shard)
    slurm = {key: os.environ[f"SLURM_{key.upper()}"] for key in ("job_id", "array_job_id", "array_task_id", "job_nodelist")
             if f"SLURM_{key.upper()}" in os.environ}
    if slurm:
        where["slurm"] = slurm
    return where


def cell_work_dir(request: GridRequest, board: Board, identity: CellIdentity) -> Path:
    return request.work_dir / board.name / identity.entry_key / identity.cell_key


def load_report_summary(report: Any) -> dict[str, Any]:
    """A checkpoint's load report with its key lists as counts (the record and the board entry keep these)."""
    summary = report.to_dict()
    return {key: (len(value) if isinstance(value, list) else value) for key, value in summary.items()}


def evaluate_cell(board: Board, cell: Cell, loaded: LoadedBackbone, request: GridRequest) -> RunRecord:
    """Run one cell's adapter, score its files with the task's scorer and store the record."""
    identity, info = cell.identity, cell.task
    dataset = PreparedDataset(cell.dataset_root)
    work = cell_work_dir(request, board, identity)
    work.mkdir(parents=True, exist_ok=True)  # kept across attempts: adapters resume from their checkpoints
    device = resolve_device(request.device)
    started, clock = utc_now(), time.perf_counter()
    result = info.run(TaskCell(
        backbone=loaded, dataset=dataset, partition=identity.partition, head=identity.head, fraction=identity.fraction,
        draw=identity.draw, seed=identity.seed, mode=identity.mode, work_dir=work, cache_dir=request.cache_dir,
        device=device, progress=request.progress, overrides=board.protocol.task(identity.task).overrides,
    ))
    total = time.perf_counter() - clock
    if not isinstance(result, TaskResult):
        raise GridError(f"the {identity.task} adapter returned {type(result).__name__}, not a TaskResult")
    fingerprints = dict(result.split_fingerprints)
    expected_test = dataset.split_fingerprint("test", partition=identity.partition)
    if fingerprints.get("test") != expected_test:
        raise GridError(f"{identity.task} adapter scored a test split other than partition {identity.partition!r} of {dataset.root}")
    settings: ComparisonSettings = board.protocol.comparison
    options = BootstrapOptions(n_resamples=settings.bootstrap_resamples, seed=settings.bootstrap_seed)
    scored = scorer(info.scorer).score_files(Path(result.predictions_file), Path(result.targets_file), identity.dataset, options)
    metrics = scored.metric_values()
    headline = info.headline(identity.dataset).name
    if headline not in metrics:
        raise GridError(f"{identity.task} on {identity.dataset}: the scorer gave no usable {headline!r} "
                        f"({'; '.join(scored.warnings) or 'metrics: ' + ', '.join(sorted(metrics))})")
    # the test split's ground truth, which the board checks against its pin
    truth = scoring.record_target_set(info.scorer, Path(result.targets_file), identity.dataset, identity.partition)
    board.check_pin(truth)  # before anything is stored
    predictions = board.store_artifact(identity, "predictions", Path(result.predictions_file), info.large_artifacts)
    targets = board.store_artifact(identity, "targets", Path(result.targets_file), info.large_artifacts)
    provenance = collect_provenance(started)
    provenance.update(placement(device, request.shard))
    record = RunRecord(
        identity=identity, protocol_version=board.protocol.protocol_version, scorer=info.scorer, metrics=metrics,
        headline_metric=headline, predictions=predictions, targets=targets,
        target_set=truth,
        timings={**{k: float(v) for k, v in result.timings.items()}, "total": total},
        config={**result.config, "task_version": info.version,
                "board_overrides": dict(board.protocol.task(identity.task).overrides)},
        training=result.training.to_json() if result.training is not None else {},
        split_fingerprints=fingerprints,
        backbone={"arch": loaded.spec.arch, "weights": loaded.spec.weights,
                  "pretraining_data": list(loaded.spec.pretraining_data),
                  # what every task fed the encoder: size, channels, range, mean/std, and --preprocess
                  "preprocessing": loaded.preprocessing.to_dict(),
                  # which encoder of the checkpoint file was evaluated (prefix, keys matched)
                  "load_report": load_report_summary(loaded.load_report) if loaded.load_report is not None else None},
        provenance=provenance, created=utc_now(),
        notes=list(result.notes) + scored.notes() + list(result.warnings),
    )
    board.add(record)
    if not request.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return record

