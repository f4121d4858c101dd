"""The device self-test: one tiny cell of every task, head and mode, a few pretraining steps, and DDP.

What runs is read from the registries: every registered task with every head and mode it declares
(a new head is covered the day it is registered), each cell shrunk to seconds by the task's own
``smoke`` overrides (``tasks.registry.TaskInfo``), on synthetic data written by the demo generator
and prepared at 64 px in a scratch folder. Each cell goes through the real path: the task's adapter
on the device, then the task's scorer on the files it wrote. A task that ``requires`` more than an
image encoder (a text tower: zero-shot, retrieval) runs on the first tiny backbone that meets the
requirement: besides the two random image encoders there is one with a text tower, the shrunk demo
pretraining config at initialisation exported by ``pretrain/export.py`` (:func:`text_tower_backbone`). Pretraining runs the shipped demo
config, shrunk, with the config's precision (fp32, as the reference trains). With two or more GPUs,
two processes under ``torchrun`` (NCCL) run pretraining and one segmentation cell.

``python -m benchmark.selftest MEMORY_FILE DEVICE MODULE ARGS...`` is each process that ``torchrun``
starts: it runs ``python -m MODULE ARGS...`` and writes its peak memory to ``MEMORY_FILE.rank<RANK>``.
"""

from __future__ import annotations

import os
import re
import resource
import runpy
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmark.backbones import LoadedBackbone
    from tasks.registry import TaskInfo

IMAGE_SIZE = 64  # prepared image side: the smallest that every head's strides and a 16-pixel ViT patch take
CELL_IMAGES = 24  # per dataset: the smallest that every demo dataset the cells use can score (RSNA needs 20)
PRETRAIN_IMAGES = 40  # MIMIC demo: about 20 training pairs, three steps of 8
PRETRAIN_DATASET = "mimic"  # the pretraining corpus (image-report pairs), prepared whether a cell uses it or not
TINY_BACKBONES = ("random_resnet18", "random_vit_tiny")  # the first whose family defaults to a head runs it
TEXT_TOWER_BACKBONE = "mgca_tiny_init"  # after them: only a task that requires its text tower gets it first
# The demo config shrunk to a few steps: ViT-Tiny (patch attention), a one-layer BERT, one epoch.
PRETRAIN_OVERRIDES = (
    "arch=vit_tiny_patch16_224", "text_layers=1", "text_hidden_size=32", "text_heads=2", "text_intermediate_size=64",
    "vocab_size=300", "projection_hidden=64", "emb_dim=16", "num_prototypes=8", "batch_size=8", "epochs=1",
    "num_workers=0", "progress=false", "max_words=48", "export=",
)
DDP_TIMEOUT_S = 240
DDP_SEGMENTATION = ("--head", "unet", "--mode", "paper", "--backbone", "random_resnet18")


@dataclass
class Check:
    """One line of the table."""

    name: str
    seconds: float = 0.0
    peak_bytes: int | None = None
    error: str | None = None  # one line; the traceback goes to stderr
    skipped: str | None = None  # why it did not run (a task's requirement the backbone does not meet)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class SelfTest:
    device: str  # "cpu" or "cuda"
    root: Path  # scratch folder: data, work folders, logs
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # cell check -> every metric its scorer gave

    def run(self, name: str, body: Callable[[], int | None]) -> None:
        """Time ``body`` and measure its peak memory; a failure is recorded, the self-test goes on.
        ``body`` may return the peak bytes itself (checks that run in other processes)."""
        check = Check(name)
        log = self.root / "logs" / f"{re.sub(r'[^A-Za-z0-9.-]+', '_', name).strip('_')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            reset_peak_memory(self.device)
            with output_to(log):
                measured = body()
            check.peak_bytes = measured if measured is not None else peak_memory(self.device)
        except Exception as error:  # noqa: BLE001 - every check runs; each failure is reported
            message = str(error).strip()
            check.error = f"{type(error).__name__}: {message.splitlines()[0] if message else ''}"
            print(f"--- {name} failed (log: {log})\n{traceback.format_exc()}", file=sys.stderr)
            with suppress(Exception):  # the peak up to the failure (an out-of-memory error), when the device answers
                check.peak_bytes = peak_memory(self.device)
        check.seconds = time.perf_counter() - start
        self.checks.append(check)
        print(table_line(check), flush=True)


    def skip(self, name: str, reason: str) -> None:
        """A check that cannot run here, for ``reason``: shown in the table, neither passed nor failed."""
        check = Check(name, skipped=reason)
        self.checks.append(check)
        print(table_line(check), flush=True)


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """This process's stdout and stderr, the Python objects and the file descriptors (torch's C++
    warnings, torchrun's processes), into ``path``: the table stays readable."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w") as log, redirect_stdout(log), redirect_stderr(log):
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# ------------------------------------------------------------------------------------- memory

def reset_peak_memory(device: str) -> None:
    """Start a new peak: CUDA's allocator statistics, or the process's resident high-water mark
    (Linux resets VmHWM on writing 5 to clear_refs; elsewhere the peak stays the process's)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory(device: str) -> int:
    """Peak bytes since :func:`reset_peak_memory`: allocated CUDA memory, or resident memory on CPU."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


# ------------------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class CellPlan:
    task: str
    dataset: str
    head: str
    mode: str
    backbone: str

    @property
    def name(self) -> str:
        return f"{self.task} {self.dataset} {self.head} {self.mode} ({self.backbone})"


def shared_datasets(infos: list[TaskInfo], available: set[str]) -> dict[str, str]:
    """Task -> the one dataset its cells run on: of the task's datasets that the demo generator
    writes, the one the most tasks declare (RSNA serves all three), so few datasets are prepared."""
    counts: dict[str, int] = {}
    for info in infos:
        for name in info.datasets:
            counts[name] = counts.get(name, 0) + 1
    chosen = {}
    for info in infos:
        candidates = [name for name in info.datasets if name in available]
        if not candidates:
            raise ValueError(f"task {info.name!r}: none of its datasets {sorted(info.datasets)} has a demo generator")
        chosen[info.name] = max(candidates, key=lambda name: counts[name])  # max keeps the first of equals
    return chosen


def backbone_for(info: TaskInfo, head: str, families: dict[str, str]) -> str:
    """The first tiny backbone whose family gets ``head`` by default; else the first one."""
    from tasks.registry import TaskDeclarationError

    for name, family in families.items():
        try:
            if info.default_head(family) == head:
                return name
        except TaskDeclarationError:
            continue
    return next(iter(families))


def plan_cells(infos: list[TaskInfo], datasets: dict[str, str], families: dict[str, str],
               meets: Callable[[TaskInfo, str], bool] = lambda info, backbone: True) -> list[CellPlan]:
    """Every (task, head, mode), on the task's shared dataset and the head's tiny backbone: of the backbones
    that ``meets`` the task's requirement (all of them when none does: the cell is then reported skipped,
    with the first one's reason), the first whose family gets the head by default."""
    plans = []
    for info in infos:
        able = {name: family for name, family in families.items() if meets(info, name)} or families
        plans += [CellPlan(info.name, datasets[info.name], head, mode, backbone_for(info, head, able))
                  for head in info.heads for mode in info.modes]
    return plans


# ------------------------------------------------------------------------------------- the checks

def demo_datasets(datasets: dict[str, str]) -> list[str]:
    """The demo datasets to prepare: those the cells run on (task -> dataset), then the pretraining corpus."""
    cells = sorted(set(datasets.values()))
    return cells + [PRETRAIN_DATASET] * (PRETRAIN_DATASET not in cells)


def prepare_demo(root: Path, names: list[str], scored: set[str] | None = None) -> Path:
    """Demo datasets ``names`` generated and prepared at :data:`IMAGE_SIZE`; returns the prepared folder.
    ``scored``: those cells run on (default: all but the pretraining corpus), large enough to score, with every
    partition their preparers write (CheXpert's 5×200 hold-out, whose images the demo writer adds beside the
    classification splits: the retrieval cell reads it)."""
    import benchmark.data.datasets  # noqa: F401 - registers the preparers
    from benchmark.data.demo import DEMO_WRITERS, generate
    from benchmark.data.registry import DATASETS, PrepareOptions

    scored = set(names) - {PRETRAIN_DATASET} if scored is None else scored
    for name in names:
        cell_images = max(CELL_IMAGES, DEMO_WRITERS.get(name).minimum_images or 0) if name in scored else 0
        images = max(PRETRAIN_IMAGES if name == PRETRAIN_DATASET else 0, cell_images)
        generate(root / "raw", [name], images=images, size=IMAGE_SIZE, seed=0, scorable=name in scored)
        DATASETS.get(name).prepare(PrepareOptions(raw=root / "raw" / name, out=root / "prepared" / name,
                                                  image_size=IMAGE_SIZE, workers=1))
    return root / "prepared"


def run_cell(plan: CellPlan, info: TaskInfo, backbone: LoadedBackbone, prepared: Path, root: Path,
             device: str) -> dict[str, float]:
    """The task's adapter on one cell, then its scorer on the files: the path of a board's cell.
    Returns every metric value (the test suite compares them with the ones committed before a refactor)."""
    from benchmark.data.prepared import PreparedDataset
    from benchmark.scoring import scorer
    from benchmark.scoring.bootstrap import BootstrapOptions
    from tasks.registry import TaskCell

    dataset = PreparedDataset(prepared / plan.dataset)
    partition = info.dataset(plan.dataset).partition
    work = root / "work" / plan.task / f"{plan.head}-{plan.mode}"
    result = info.run(TaskCell(backbone=backbone, dataset=dataset, partition=partition, head=plan.head, fraction=100,
                               draw=0, seed=0, mode=plan.mode, work_dir=work, cache_dir=root / "cache", device=device,
                               progress=False, overrides=info.smoke))
    if result.split_fingerprints.get("test") != dataset.split_fingerprint("test", partition=partition):
        raise RuntimeError(f"the {plan.task} adapter scored a test split other than partition {partition!r}")
    scored = scorer(info.scorer).score_files(Path(result.predictions_file), Path(result.targets_file), plan.dataset,
                                             BootstrapOptions(n_resamples=20))
    metrics = scored.metric_values()
    headline = info.headline(plan.dataset).name
    if headline not in metrics:
        raise RuntimeError(f"the scorer gave no usable {headline!r}: {'; '.join(scored.warnings) or sorted(metrics)}")
    values = {name: metric.value for name, metric in metrics.items()}
    return values | {f"training.{key}": value for key, value in numeric_leaves(result.training)
                     if not key.endswith("seconds")}  # wall time is no result


def numeric_leaves(value: object, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a nested dict/list/dataclass, keyed by its path (``history.0.loss``)."""
    if hasattr(value, "__dataclass_fields__"):
        value = {name: getattr(value, name) for name in value.__dataclass_fields__}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else None
    if items is None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            yield path, float(value)
        return
    for key, item in items:
        yield from numeric_leaves(item, f"{path}.{key}" if path else str(key))


def run_pretraining(prepared: Path, out: Path) -> None:
    """A few steps of the demo config, shrunk, with the config's precision, in this process."""
    from pretrain.config import load_config
    from pretrain.train import train

    train(load_config("demo", [f"data={prepared / PRETRAIN_DATASET}", f"out={out}", *PRETRAIN_OVERRIDES]))


def text_tower_backbone(prepared: Path, out: Path) -> LoadedBackbone:
    """:data:`TEXT_TOWER_BACKBONE`: a tiny backbone with a text tower, for the tasks that require one.

    The pretraining check's model (the demo config shrunk by :data:`PRETRAIN_OVERRIDES`) at its seeded
    initialisation, with the WordPiece vocabulary of the pretraining corpus's training reports, saved as
    pretraining saves a run's checkpoint and exported by ``pretrain/export.py``: the file an image-text task
    reads (its ``text_tower`` entry), loaded through the backbone registry as a user's checkpoint. Untrained,
    so deterministic and independent of the pretraining check; a second or so on a CPU.
    """
    from benchmark.backbones import build_backbone, user_backbone_spec
    from benchmark.data.prepared import PreparedDataset
    from pretrain.checkpoints import save_atomic
    from pretrain.config import load_config
    from pretrain.data import read_pairs
    from pretrain.export import export_checkpoint
    from pretrain.text import save_tokenizer, train_tokenizer
    from pretrain.train import build_model

    config = load_config("demo", [f"data={prepared / PRETRAIN_DATASET}", f"out={out}", *PRETRAIN_OVERRIDES])
    tokenizer = train_tokenizer(read_pairs(PreparedDataset(config.data), "train").captions, config.vocab_size)
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tokenizer, out / "tokenizer.json")
    model = build_model(config, tokenizer.get_vocab_size())
    params = {"config": config.to_dict(), "data": {"vocab_size": tokenizer.get_vocab_size()}, "arch": config.arch,
              "tokenizer": "tokenizer.json", "initialisation": model.initialisation}
    save_atomic({"state_dict": model.state_dict(), "hyper_parameters": params, "epoch": 0}, out / "best.ckpt")
    checkpoint, _ = export_checkpoint(out / "best.ckpt", out / f"{TEXT_TOWER_BACKBONE}.ckpt")
    return build_backbone(user_backbone_spec(TEXT_TOWER_BACKBONE, config.arch), checkpoint=checkpoint)


def torchrun(module_args: list[str], root: Path, name: str, device: str) -> int:
    """``torchrun --standalone --nproc_per_node 2 -m benchmark.selftest ...``; returns the peak bytes
    of the busiest process (each writes its own)."""
    memory = root / f"{name}.memory"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "benchmark.selftest", str(memory), device, *module_args]
    checkout = str(Path(__file__).resolve().parents[1])
    environment = {**os.environ, "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH")]))}
    finished = subprocess.run(command, env=environment, stdout=sys.stdout, stderr=subprocess.STDOUT,
                              timeout=DDP_TIMEOUT_S, check=False)
    if finished.returncode:
        raise RuntimeError(f"torchrun exited with {finished.returncode}")
    return max(int(path.read_text()) for path in root.glob(f"{name}.memory.rank*"))


# ------------------------------------------------------------------------------------- the table

def human_bytes(count: int | None) -> str:
    if count is None:
        return "-"
    if count < 1024:
        return f"{count} B"
    exponent = min((count.bit_length() - 1) // 10, 3)  # exact for powers of 1024, unlike a float log
    return f"{count / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"


WIDTH = 64


def table_header(device: str) -> list[str]:
    memory = "peak GPU memory" if device == "cuda" else "peak RSS"
    return [f"{'check':<{WIDTH}} {'seconds':>8} {memory:>16}  result", "-" * (WIDTH + 36)]


def table_line(check: Check) -> str:
    result = check.error or (f"skipped: {check.skipped}" if check.skipped else "ok")
    return f"{check.name:<{WIDTH}} {check.seconds:>8.1f} {human_bytes(check.peak_bytes):>16}  {result}"


def run_selftest(device: str, root: Path, ddp: bool) -> SelfTest:
    """Every check, in order; prints the table as it goes and returns the checks and the cells' metrics."""
    from benchmark.backbones import build_backbone
    from benchmark.data.demo import DEMO_WRITERS
    from tasks.registry import all_tasks
    from tasks.segmentation.protocol import config_options

    test = SelfTest(device, root)
    for line in table_header(device):
        print(line)
    infos = all_tasks()
    by_name = {info.name: info for info in infos}
    datasets = shared_datasets(infos, set(DEMO_WRITERS.names()))
    names = demo_datasets(datasets)
    state: dict = {}

    def prepare() -> None:
        state["prepared"] = prepare_demo(root / "data", names, scored=set(datasets.values()))

    test.run(f"data: demo {', '.join(names)} at {IMAGE_SIZE} px", prepare)
    if "prepared" not in state:
        return test
    prepared = state["prepared"]

    backbones: dict[str, LoadedBackbone] = {}

    def load() -> None:
        for name in TINY_BACKBONES:
            backbones[name] = build_backbone(name)

    test.run(f"backbones: {', '.join(TINY_BACKBONES)}", load)
    if any(info.requires is not None for info in infos):  # only tasks with a requirement run on it

        def load_text_tower_backbone() -> None:
            backbones[TEXT_TOWER_BACKBONE] = text_tower_backbone(prepared, root / TEXT_TOWER_BACKBONE)

        test.run(f"backbone with a text tower: {TEXT_TOWER_BACKBONE}", load_text_tower_backbone)
    if all(name in backbones for name in TINY_BACKBONES):
        families = {name: loaded.model.arch.family for name, loaded in backbones.items()}
        reasons: dict[tuple[str, str], str | None] = {}

        def unmet(info: TaskInfo, backbone: str) -> str | None:
            if (info.name, backbone) not in reasons:
                reasons[info.name, backbone] = info.unmet_requirement(backbones[backbone])
            return reasons[info.name, backbone]

        for plan in plan_cells(infos, datasets, families, lambda info, backbone: unmet(info, backbone) is None):
            reason = unmet(by_name[plan.task], plan.backbone)
            if reason is not None:
                test.skip(plan.name, reason)
                continue

            def cell(plan: CellPlan = plan) -> None:
                test.metrics[plan.name] = run_cell(plan, by_name[plan.task], backbones[plan.backbone], prepared, root,
                                                   device)

            test.run(plan.name, cell)
    test.run("pretraining: demo config, a few steps", lambda: run_pretraining(prepared, root / "pretrain"))
    if ddp:
        test.run("pretraining: 2 processes (DDP)", lambda: torchrun(
            ["pretrain", "--config", "demo", f"data={prepared / PRETRAIN_DATASET}", f"out={root / 'pretrain-ddp'}",
             *PRETRAIN_OVERRIDES], root, "pretrain-ddp", device))
        test.run("segmentation: 2 processes (DDP)", lambda: torchrun(
            ["tasks.segmentation", *DDP_SEGMENTATION, "--data", str(prepared / datasets["segmentation"]),
             "--device", device, "--work-dir", str(root / "segmentation-ddp"), "--cfg-options",
             *(f"{key}={value}" for key, value in config_options(by_name["segmentation"].smoke).items())],
            root, "segmentation-ddp", device))
    return test


def _worker(memory: Path, device: str, module: str, args: list[str]) -> int:
    """One torchrun process: ``python -m module args`` on its GPU, then its peak memory to a file."""
    if device == "cuda":
        import torch

        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    reset_peak_memory(device)
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    Path(f"{memory}.rank{os.environ['RANK']}").write_text(str(peak_memory(device)))
    return code


if __name__ == "__main__":
    sys.exit(_worker(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]))
