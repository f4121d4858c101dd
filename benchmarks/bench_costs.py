"""Real-geometry costs of every (task, head, mode): the measured table behind ``run --dry-run --device-class``.

For ViT-B/16 at 224 px and ResNet-50 at 224 and 299 px (random weights; the architectures are the
registry's), each measurement in its own process (so its peak RSS is its own):

* **encoder**: images/s of the frozen encoder (batches of ``--encode-batch`` random images, after one
  warm-up batch);
* **head**: training steps/s at the protocol's batch (``TaskInfo.cost.batch_size``; ``--batch``
  overrides it), each step with its data as the task builds it: a fresh batch of samples (the
  paper mode's augmentation and encoder included), forward, backward, optimiser step. Cached
  mode reads stored features or maps of the dtype the task stores (random vectors for the linear
  probe; the encoder's real float16 maps of a demo image set at the task's size for the dense
  tasks, from memory: a disk read is not counted); paper mode reads images (random 256 px images
  for the probe, as its 256 px cache; a demo image set for the dense tasks). Median of ``--steps``
  steps after one warm-up step, and the share of a step spent building its batch (map decoding,
  augmentation; for the probe's paper mode the encoder too);
* **eval**: images/s of the trained head's forward on stored features (the validation pass of
  every epoch and the test pass: the encoder's share is the encoder's rate);
* **peak RSS** of the measuring process (libraries, model, one batch), and **cache bytes per image**
  of what the mode stores (the probe's paper mode still caches validation and test vectors; the
  dense tasks' paper mode stores nothing);
* the load average (``os.getloadavg()``) before and after each measurement: on a shared machine
  the numbers are slower than the machine is.

From the rows, each (task, head) gets its seconds per epoch in both modes on a reference dataset at
100 % (shipped split sizes: training + validation; the cached mode's one-time cache fill apart),
and their ratio: whether the cache pays.

The classification rows are measured at each size of the architecture (ResNet-50 at 224 and at
299, its linear-probe size: defect B20); ``protocol_size`` marks the size the task runs that
architecture at, the row ``run --dry-run --device-class`` reads. Heads that fit one family are
measured on it (``HEADS_BY_FAMILY``); every head of every measured task must be listed there.

    python benchmarks/bench_costs.py --device cpu --out cpu-2core-x86.json [--device-class NAME]
        [--steps 2] [--only detection ...] [--smoke]

Install the result as a device class with
``cp cpu-2core-x86.json benchmark/device_costs/`` (``benchmark/costs.py`` reads every file there).
About 12 minutes on 2 quiet x86 cores. Exit 1 when a row could not be measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.backbones import LoadedBackbone, build_backbone, normalise
from benchmark.provenance import collect_provenance, utc_now

from smoke import add_smoke_option, exit_status, parse_args

# Which heads each backbone family is measured with (a head that fits one family only on that family).
HEADS_BY_FAMILY: dict[str, dict[str, tuple[str, ...]]] = {
    "vit": {"classification": ("linear",), "detection": ("faster_rcnn",), "segmentation": ("setr",)},
    "resnet": {"classification": ("linear",), "detection": ("yolov3_mgca", "yolov3"), "segmentation": ("unet",)},
}
# The probe's image cache side (the reference's resize to 256, then a 224 crop); paper mode augments from it.
PROBE_CACHE_SIZE = 256
# The probe's costliest train transform (CheXpert's MoCo v2 colour, blur and flip); the others only crop.
PROBE_DATASET = "chexpert"


@dataclass(frozen=True)
class Job:
    """One measurement, run in its own process: an encoder (``task`` None) or a (task, head, mode)."""

    backbone: str
    size: int
    task: str | None = None
    head: str | None = None
    mode: str | None = None
    batch: int | None = None  # None: the protocol's
    steps: int = 2
    encode_images: int = 16
    encode_batch: int = 8
    data: str | None = None  # prepared demo dataset folder (the dense tasks)
    device: str = "cpu"


# ---------------------------------------------------------------------------------------------
# measurements (run in the child process)


def _timed(step: Callable[[], object], steps: int) -> float:
    """Median seconds of ``steps`` calls of ``step`` after one warm-up call."""
    return _timed_with_data(lambda _: step(), steps)[0]


def _timed_with_data(step: Callable[[Any], object], steps: int, data: Callable[[], Any] = lambda: None) -> tuple[float, float]:
    """Median seconds of ``step(data())`` over ``steps`` calls after one warm-up call, and of its ``data()`` part."""
    step(data())
    seconds, data_seconds = [], []
    for _ in range(steps):
        started = time.perf_counter()
        batch = data()
        data_seconds.append(time.perf_counter() - started)
        step(batch)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), statistics.median(data_seconds)


def _normalised(backbone: LoadedBackbone, count: int, size: int, device: str) -> torch.Tensor:
    pixels = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return normalise(pixels.to(device), backbone.preprocessing)


def measure_encoder(job: Job, backbone: LoadedBackbone) -> dict[str, Any]:
    images = _normalised(backbone, job.encode_batch, job.size, job.device)
    batches = max(1, job.encode_images // job.encode_batch)
    with torch.inference_mode():
        seconds = _timed(lambda: backbone.model(images), batches)
    return {"images_per_second": job.encode_batch / seconds, "batch": job.encode_batch, "batches": batches}


def measure_classification(job: Job, backbone: LoadedBackbone, batch: int) -> dict[str, Any]:
    from benchmark.scoring.classification import SCHEMES
    from tasks.classification.features import encode_batch
    from tasks.classification.protocol import PROTOCOL, dataset_probe, resolve_geometry
    from tasks.classification.training import ACTIVATIONS, LOSSES, build_head
    from tasks.classification.transforms import apply_per_image, to_encoder_input, train_transform

    from tasks.classification.adapter import _geometry

    probe, classes = dataset_probe(PROBE_DATASET), len(SCHEMES.get(PROBE_DATASET).classes)
    dim = backbone.model.arch.global_dim
    head = build_head(dim, classes, seed=0)
    optimizer = torch.optim.AdamW(head.parameters(), lr=PROTOCOL.lr, betas=PROTOCOL.betas, weight_decay=PROTOCOL.weight_decay)
    loss, activation = LOSSES[probe.loss], ACTIVATIONS[probe.loss]
    targets = torch.randint(0, 2, (batch, classes)).float()
    generator = torch.Generator().manual_seed(0)
    if job.mode == "cached":
        stored = torch.randn(4 * batch, dim, generator=generator)  # float32 vectors, as the cache holds them

        def features() -> torch.Tensor:
            return stored[torch.randint(0, len(stored), (batch,), generator=generator)]
        steps = 25 * job.steps  # microseconds each: more steps for a stable median
    else:
        patch = backbone.model.arch.feature_map_strides[0] if backbone.model.arch.family == "vit" else None
        geometry = resolve_geometry(PROBE_CACHE_SIZE, patch, input_size=job.size)
        augment = train_transform(PROTOCOL, probe, geometry, backbone.preprocessing)
        cache = np.random.default_rng(0).integers(0, 256, (2 * batch, PROBE_CACHE_SIZE, PROBE_CACHE_SIZE), dtype=np.uint8)

        def features() -> torch.Tensor:
            rows = np.sort(np.random.default_rng().choice(len(cache), batch, replace=False))
            return encode_batch(backbone, cache[rows], lambda images: to_encoder_input(apply_per_image(augment, images), geometry),
                                torch.device(job.device))
        steps = job.steps

    def step(batch: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss(head(batch), targets).backward()
        optimizer.step()

    seconds, data_seconds = _timed_with_data(step, steps, features)
    evaluated = torch.randn(1024, dim)
    with torch.no_grad():
        eval_seconds = _timed(lambda: activation(head(evaluated)), 5)
    return {"seconds_per_step": seconds, "data_seconds_per_step": data_seconds, "eval_images_per_second": len(evaluated) / eval_seconds, "cache_bytes_per_image": dim * 4,
            "dataset": PROBE_DATASET, "protocol_size": job.size == _geometry(backbone, PROBE_CACHE_SIZE).encoder_input_size}


def measure_detection(job: Job, backbone: LoadedBackbone, batch: int) -> dict[str, Any]:
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import OptimWrapper

    from benchmark.data.prepared import PreparedDataset
    from tasks.detection.data import ImageSource, MapSource, SplitDataset, load_split
    from benchmark.heads.features import bytes_per_image
    from tasks.detection.model import build_detector, detector_config, encoder_maps
    from tasks.detection.protocol import HEADS, PROTOCOL, resolve_geometry

    dataset = PreparedDataset(Path(job.data))
    geometry = resolve_geometry(dataset.manifest.image_size, PROTOCOL)
    ids = dataset.split_ids("train", partition=PROTOCOL.partition)[:batch]  # one batch of images, reused
    split = load_split(dataset, "train", ids, geometry.input_size)
    images = ImageSource(dataset, ids, geometry.input_size)
    items, stored_bytes = SplitDataset(split, images), 0
    if job.mode == "cached":  # the maps as the cache stores them (the protocol's dtype), read back per item
        maps = [encoder_maps(backbone, normalise(images[i][None], backbone.preprocessing)) for i in range(len(ids))]
        levels = [np.concatenate([m[level].numpy() for m in maps]).astype(PROTOCOL.cache_dtype) for level in range(len(maps[0]))]
        items, stored_bytes = SplitDataset(split, MapSource(levels)), bytes_per_image(levels)
    detector = build_detector(detector_config(HEADS.get(job.head), backbone, geometry, PROTOCOL), seed=0)
    detector.init_weights()
    if job.mode == "paper":
        detector.backbone.attach(backbone)
    wrapper = OptimWrapper(torch.optim.AdamW([p for p in detector.parameters() if p.requires_grad], lr=PROTOCOL.schedule("rsna", 100).lr,
                                             betas=PROTOCOL.betas, weight_decay=PROTOCOL.weight_decay))
    window = _Window(len(items), batch)

    def samples() -> dict:
        return pseudo_collate([items[i] for i in window.next()])

    detector.train()
    seconds, data_seconds = _timed_with_data(lambda batch: detector.train_step(batch, wrapper), job.steps, samples)
    out: dict[str, Any] = {"seconds_per_step": seconds, "data_seconds_per_step": data_seconds, "input_size": geometry.input_size, "protocol_size": True,
                           "cache_bytes_per_image": stored_bytes}
    if job.mode == "cached":
        detector.eval()
        evaluated = samples()
        with torch.no_grad():
            out["eval_images_per_second"] = len(evaluated["inputs"][0]) / _timed(lambda: detector.test_step(evaluated), 1)
    return out


def measure_segmentation(job: Job, backbone: LoadedBackbone, batch: int) -> dict[str, Any]:
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import OptimWrapper

    from benchmark.data.prepared import PreparedDataset
    from tasks.segmentation.adapter import build_model
    from tasks.segmentation.data import CachedFeatureItems, SegmentationImages
    from tasks.segmentation.features import STORE_DTYPE
    from tasks.segmentation.models import encoder_outputs
    from tasks.segmentation.protocol import load_config, resolve_geometry
    from tasks.segmentation.training import forward_batch

    dataset = PreparedDataset(Path(job.data))
    cfg = load_config(job.head, dataset.name, 100)
    size = resolve_geometry(cfg.input_size, dataset.manifest.image_size, job.head).input_size
    cfg.merge_from_dict({"input_size": size, "mode": job.mode, "seed": 0})
    ids = dataset.split_ids("train", partition="segmentation")[:batch]  # one batch of images, reused
    images = SegmentationImages(dataset, ids, size, cfg.augmentation if job.mode == "paper" else None, seed=0)
    items: Any = images
    stored_bytes = 0
    if job.mode == "cached":
        with torch.no_grad():
            outputs = [encoder_outputs(backbone, normalise(images[i]["inputs"][None], backbone.preprocessing), cfg.encoder_outputs)
                       for i in range(len(images))]
        levels = [np.concatenate([o[level].numpy() for o in outputs]).astype(STORE_DTYPE) for level in range(len(outputs[0]))]
        items = CachedFeatureItems(images, levels)
        stored_bytes = sum(level[0].nbytes for level in levels)
    model = build_model(cfg, backbone, size, job.mode, torch.device(job.device))
    optimizer = cfg.optim_wrapper.optimizer
    wrapper = OptimWrapper(torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=optimizer.lr,
                                             betas=optimizer.betas, weight_decay=optimizer.weight_decay))
    window = _Window(len(items), batch)
    epoch = iter(range(10**6))  # a new augmentation draw each step, as a new epoch's

    def samples() -> dict:
        step = next(epoch)
        return pseudo_collate([items[(i, step)] for i in window.next()])

    model.train()
    seconds, data_seconds = _timed_with_data(lambda batch: model.train_step(batch, wrapper), job.steps, samples)
    out: dict[str, Any] = {"seconds_per_step": seconds, "data_seconds_per_step": data_seconds,
                           "input_size": size, "protocol_size": True, "cache_bytes_per_image": stored_bytes}
    if job.mode == "cached":
        model.eval()
        evaluated = samples()
        with torch.no_grad():
            out["eval_images_per_second"] = len(evaluated["data_samples"]) / _timed(lambda: forward_batch(model, evaluated), 1)
    return out


class _Window:
    """Row indices of consecutive batches, wrapping around a small image set."""

    def __init__(self, n_items: int, batch: int) -> None:
        if n_items < 1:
            raise ValueError("no training images to measure with")
        self.n_items, self.batch, self.start = n_items, batch, 0

    def next(self) -> list[int]:
        rows = [(self.start + k) % self.n_items for k in range(self.batch)]
        self.start = (self.start + self.batch) % self.n_items
        return rows


MEASURES: dict[str, Callable[[Job, LoadedBackbone, int], dict[str, Any]]] = {
    "classification": measure_classification, "detection": measure_detection, "segmentation": measure_segmentation,
}


def measure(job: Job) -> dict[str, Any]:
    """One row: the job's numbers with its peak RSS and the load average around it."""
    from tasks.registry import get_task

    load_before = os.getloadavg()
    backbone = build_backbone(job.backbone)
    backbone.model.to(job.device).eval()
    row: dict[str, Any] = {"backbone": job.backbone, "arch": backbone.spec.arch, "family": backbone.model.arch.family,
                           "input_size": job.size}
    started = time.perf_counter()
    if job.task is None:
        row.update(measure_encoder(job, backbone))
    else:
        batch = job.batch or get_task(job.task).cost.batch_size
        row.update(task=job.task, head=job.head, mode=job.mode, batch=batch)
        row.update(MEASURES[job.task](job, backbone, batch))
        row["steps_per_second"] = 1 / row.pop("seconds_per_step")
        row["data_share"] = row.pop("data_seconds_per_step") * row["steps_per_second"]  # of a step: batch building (paper probe: encoder too)
    row.update(seconds=round(time.perf_counter() - started, 1), peak_rss_bytes=_peak_rss(),
               load_average=[round(x, 2) for x in (*load_before, *os.getloadavg())])
    return row


def _peak_rss() -> int:
    """This process's peak resident set, in bytes (``ru_maxrss`` is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# ---------------------------------------------------------------------------------------------
# the plan and the table (the parent process)


def plan(args: argparse.Namespace, data: dict[str, Path]) -> list[Job]:
    """Every measurement: each backbone's encoder at each size, then each (task, head, mode) on it."""
    from tasks.registry import get_task

    sizes = {"vit": args.vit_sizes, "resnet": args.resnet_sizes}
    names = {"vit": args.vit, "resnet": args.resnet}
    common = dict(steps=args.steps, batch=args.batch, device=args.device)
    jobs = []
    for family in args.families:
        backbone = names[family]
        for size in sizes[family]:
            jobs.append(Job(backbone, size, encode_images=args.encode_images, encode_batch=args.encode_batch, device=args.device))
        for task, heads in HEADS_BY_FAMILY[family].items():
            for size in sizes[family] if task == "classification" else [args.dense_size]:
                jobs += [Job(backbone, size, task, head, mode, data=str(data.get(task, "")) or None, **common)
                         for head in heads if not args.only or {task, f"{task}/{head}"} & set(args.only)
                         for mode in get_task(task).modes]
    for task in HEADS_BY_FAMILY["vit"]:
        unmeasured = set(get_task(task).heads) - {head for family in HEADS_BY_FAMILY.values() for head in family.get(task, ())}
        if unmeasured:
            raise SystemExit(f"{task}: heads {sorted(unmeasured)} are on no backbone family in HEADS_BY_FAMILY; add them")
    return jobs


def prepare(folder: Path, size: int, images: int) -> dict[str, Path]:
    """Demo RSNA (detection's boxes) and SIIM (segmentation's masks) at ``size`` px."""
    from benchmark.data import datasets  # noqa: F401 - registers the preparers
    from benchmark.data.demo import generate
    from benchmark.data.registry import DATASETS, PrepareOptions

    generate(folder / "raw", ["rsna", "siim"], images=images, size=size, seed=0)
    out = {}
    for task, name in (("detection", "rsna"), ("segmentation", "siim")):
        DATASETS.get(name).prepare(PrepareOptions(raw=folder / "raw" / name, out=folder / "data" / name, image_size=size,
                                                  verify_shipped=False))
        out[task] = folder / "data" / name
    return out


def run_isolated(job: Job) -> dict[str, Any]:
    """``measure(job)`` in a fresh interpreter: its peak RSS is the job's alone."""
    done = subprocess.run([sys.executable, __file__, "--job", json.dumps(job.__dict__)], capture_output=True, text=True)
    if done.returncode:
        return {**job.__dict__, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def default_device_class(device: str) -> str:
    """``cpu-<cores>core-<machine>`` or the GPU's name, e.g. ``cpu-2core-x86_64``, ``cuda-nvidia-h100-80gb-hbm3``."""
    if device.startswith("cuda"):
        return "cuda-" + "-".join(torch.cuda.get_device_name(torch.device(device)).lower().split())
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'backbone':16}{'size':>5} {'task/head/mode':34}{'enc img/s':>10}{'steps/s':>9}{'batch':>6}{'data':>5}{'eval img/s':>11}"
          f"{'peak RSS':>10}{'cache/img':>11}  load avg")
    for row in rows:
        what = "/".join(row[key] for key in ("task", "head", "mode")) if row.get("task") else "encoder"
        if "error" in row:
            print(f"{row['backbone']:16}{row['size']:>5} {what:34}FAILED: {row['error']}")
            continue
        print(f"{row['backbone']:16}{row['input_size']:>5} {what:34}{row.get('images_per_second', float('nan')):>10.2f}"
              f"{row.get('steps_per_second', float('nan')):>9.3f}{row.get('batch', ''):>6}{row.get('data_share', float('nan')):>5.0%}{row.get('eval_images_per_second', float('nan')):>11.1f}"
              f"{row['peak_rss_bytes'] / 2**30:>8.2f}GB{row.get('cache_bytes_per_image', 0) / 1e3:>9.1f}kB  {row['load_average'][0]:.2f}")


# Per-epoch comparison of the two modes on a reference dataset of each task at 100 % (shipped split sizes).
EPOCH_DATASETS = {"classification": "rsna", "detection": "rsna", "segmentation": "siim"}


def epochs_by_mode(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Seconds per epoch of each mode (training + validation; the cached mode's one-time fill apart) from the measured rows."""
    from benchmark.costs import DeviceClass, SplitCounts, estimate
    from benchmark.datasources import size_sources
    from benchmark.records import CellIdentity
    from tasks.registry import get_task

    measured = DeviceClass(table["device_class"], table["machine"], table["date"], table["encoders"], table["heads"])
    out = []
    for task, head, arch in sorted({(row["task"], row["head"], row["arch"]) for row in table["heads"] if row["protocol_size"]}):
        info, dataset = get_task(task), EPOCH_DATASETS[task]
        source = size_sources(Path("."))(dataset)
        counts = source.counts(source.partition(info.dataset(dataset).partition), 100, 0)
        row: dict[str, Any] = {"task": task, "head": head, "arch": arch, "dataset": dataset, "train": counts.train, "val": counts.val}
        try:
            for mode in info.modes:
                identity = CellIdentity("b", "n", "0" * 64, task, dataset, "p", head, 100, 0, 0, mode)
                rates = measured.rates(task, head, mode, arch)
                work = estimate(identity, SplitCounts(counts.train, counts.val, 0), info.cost, epochs=1)
                row[f"{mode}_seconds_per_epoch"] = rates.seconds(work, encoded_images=0)
                if mode == "cached":
                    row["cache_fill_seconds"] = (counts.train + 2 * counts.val) / rates.encoder_images_per_second
        except KeyError:  # a mode not measured (--only, a failed row)
            continue
        row["paper_over_cached"] = row["paper_seconds_per_epoch"] / row["cached_seconds_per_epoch"]
        out.append(row)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", help=argparse.SUPPRESS)  # a child process: one measurement, a JSON row on stdout
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--device-class", help="the table's name (default: cpu-<cores>core-<machine>, or the GPU's name)")
    parser.add_argument("--out", type=Path, help="write the table here (JSON; a device class once copied to benchmark/device_costs/)")
    parser.add_argument("--vit", default="random_vit")
    parser.add_argument("--resnet", default="random_resnet50")
    parser.add_argument("--vit-sizes", type=int, nargs="+", default=[224])
    parser.add_argument("--resnet-sizes", type=int, nargs="+", default=[224, 299])
    parser.add_argument("--dense-size", type=int, default=224, help="image side of the detection and segmentation rows (the protocol's)")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per row, after one warm-up step")
    parser.add_argument("--batch", type=int, default=None, help="training batch (default: each task's protocol batch)")
    parser.add_argument("--encode-images", type=int, default=16)
    parser.add_argument("--encode-batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=40, help="demo images generated per dense dataset")
    parser.add_argument("--only", nargs="+", metavar="TASK[/HEAD]", help="only these tasks or heads (the encoders are always measured)")
    parser.add_argument("--families", nargs="+", choices=sorted(HEADS_BY_FAMILY), default=sorted(HEADS_BY_FAMILY, reverse=True),
                        help="backbone families measured (default: vit resnet)")
    parser.add_argument("--in-process", action="store_true", help="measure in this process (peak RSS is then the running maximum)")
    add_smoke_option(parser, families=["resnet"], resnet="random_resnet18", resnet_sizes=[32], dense_size=32,
                     only=["classification", "detection/yolov3_mgca", "segmentation"], steps=1, batch=2, encode_images=2,
                     encode_batch=2, images=28, in_process=True)
    args = parse_args(parser)
    if args.job:
        print(json.dumps(measure(Job(**json.loads(args.job)))))
        return 0
    started = utc_now()
    with tempfile.TemporaryDirectory(prefix="bench-costs-") as scratch:
        data = prepare(Path(scratch), args.dense_size, args.images)
        jobs = plan(args, data)
        rows = []
        for job in jobs:
            rows.append(measure(job) if args.in_process else run_isolated(job))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print_table(rows)
    hardware = collect_provenance(started)
    table = {
        "device_class": args.device_class or default_device_class(args.device), "device": args.device,
        "machine": f"{hardware['hardware']['cpu']}, {hardware['hardware']['cpu_count']} cores, {args.device}",
        "date": started, "isolated": not args.in_process, "smoke": args.smoke,
        "encoders": [row for row in rows if "task" not in row and "error" not in row],
        "heads": [row for row in rows if "task" in row and "error" not in row],
        "failed": [row for row in rows if "error" in row], "provenance": hardware,
    }
    table["epochs"] = epochs_by_mode(table)
    print(f"\nper epoch at 100 % (shipped split sizes; training + validation; the cached mode's one-time cache fill apart, about val = test):")
    for row in table["epochs"]:
        print(f"{row['task']}/{row['head']} on {row['arch']}, {row['dataset']} ({row['train']} train, {row['val']} val): "
              f"cached {row['cached_seconds_per_epoch'] / 60:.1f} min, paper {row['paper_seconds_per_epoch'] / 60:.1f} min, "
              f"paper/cached {row['paper_over_cached']:.2f}; cache fill {row['cache_fill_seconds'] / 60:.1f} min once")
    if args.out:
        args.out.write_text(json.dumps(table, indent=1) + "\n")
        print(f"written: {args.out}")
    return exit_status([f"{row}" for row in table["failed"]], args.smoke)


if __name__ == "__main__":
    sys.exit(main())
