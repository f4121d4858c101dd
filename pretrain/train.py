"""MGCA pretraining: one process per device, DistributedDataParallel when started by torchrun.

Per epoch: training with AdamW under the warm-up + cosine schedule (stepped every optimizer
step, gradient accumulation), prototypes frozen during the first epochs, fp32 unless the config
asks for autocast (GPU only);
then validation (the three losses and image ↔ report retrieval over the whole validation split);
a log line and a ``log.jsonl`` record (after one ``start`` record per start or resume, with the
initial weights: source, path, sha256, load report; also in ``config.json``); ``last.ckpt`` (for
resuming) and ``best.ckpt`` (lowest validation loss, what the reference's ModelCheckpoint keeps);
early stopping on the validation loss. At the end ``best.ckpt`` is exported (:func:`pretrain.export.export_checkpoint`).

A run folder that holds a ``last.ckpt`` of the same config and data is resumed; one of another
config is an error.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from benchmark.backbones.text.mgca import prepare_for_encoding, pretrained_tokenizer
from benchmark.data.prepared import PreparedDataset, ids_fingerprint
from benchmark.files import write_atomically
from pretrain import text
from pretrain.checkpoints import RESUME_KEYS, load_checkpoint, reference_img_encoder, save_atomic
from pretrain.config import SMALL_BERT, ConfigError, PretrainConfig, config_from_dict, require_initialisation, text_model_source
from pretrain.data import PairDataset, Pairs, crop_geometry, read_pairs, to_encoder_input
from pretrain.export import export_checkpoint
from pretrain.model import MGCA, Losses
from pretrain.retrieval import retrieval_accuracy
from pretrain.schedule import learning_rate, warmup_steps

# Settings that do not change what is trained: a run may be resumed with other values.
NOT_RUN_DEFINING = ("data", "out", "export", "progress", "num_workers")
LOSS_NAMES = ("ita", "cta", "cpa", "total")


# ---------------------------------------------------------------------------------------------
# Processes and devices


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def start_processes() -> Processes:
    """This process's rank and device; joins the process group when torchrun started several."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank=dist.get_rank() if world > 1 else 0, world=world, device=device)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. Autocast runs on GPUs only."""
    if device.type != "cuda":
        if precision not in ("auto", "fp32"):
            raise ConfigError(f"precision = {precision!r} needs a GPU (autocast runs on GPU only); use fp32 or auto on CPU")
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class RunData:
    train: DataLoader
    val: DataLoader
    val_pairs: Pairs
    crop: int
    encoder_input: int
    vocab_size: int
    facts: dict[str, Any]  # written into every checkpoint: pair counts, split fingerprints, geometry


def tokenizer_for(config: PretrainConfig, train: Pairs, processes: Processes) -> Any:
    """Bio_ClinicalBERT's tokenizer, or the run's WordPiece vocabulary (trained by rank 0 on the
    training captions at the start of the run, saved as ``tokenizer.json`` beside the checkpoints)."""
    if text_model_source(config) != SMALL_BERT:
        try:
            return pretrained_tokenizer(config.text_model)
        except ValueError as error:
            raise ConfigError(f"text_model = {config.text_model!r}: {error}") from None
    path = Path(config.out) / "tokenizer.json"
    if processes.main and not path.is_file():
        text.save_tokenizer(text.train_tokenizer(train.captions, config.vocab_size), path)
    processes.barrier()
    return text.load_tokenizer(path)


def load_data(config: PretrainConfig, processes: Processes, patch_size: int | None) -> RunData:
    dataset = PreparedDataset(config.data)
    train, val = read_pairs(dataset, "train"), read_pairs(dataset, "val")
    if not train.image_ids or not val.image_ids:
        raise ConfigError(f"{config.data}: the pretraining partition needs training and validation pairs "
                          f"(found {len(train.image_ids)} and {len(val.image_ids)})")
    dataset.image(train.image_ids[0])  # a damaged image cache is one error here, not one per loader worker
    tokenizer = prepare_for_encoding(tokenizer_for(config, train, processes), config.max_words)
    crop, encoder_input = crop_geometry(dataset.manifest.image_size, patch_size, config.encoder_input_size or None)

    def loader(pairs: Pairs, training: bool) -> DataLoader:
        encoded = text.encode(tokenizer, pairs.captions, config.max_words)
        pair_set = PairDataset(dataset, pairs, encoded, crop, train=training)
        # Validation shards are padded to equal length (every rank runs the same number of
        # batches); duplicates are removed again before retrieval.
        sampler = DistributedSampler(pair_set, processes.world, processes.rank, shuffle=training, seed=config.seed,
                                     drop_last=training)
        return DataLoader(pair_set, batch_size=config.batch_size, sampler=sampler, drop_last=training,
                          num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
                          pin_memory=processes.device.type == "cuda")

    facts = {
        "train_pairs": len(train.image_ids), "val_pairs": len(val.image_ids),
        "dropped_studies": {"train": train.dropped_studies, "val": val.dropped_studies},
        "train_fingerprint": ids_fingerprint(train.image_ids), "val_fingerprint": ids_fingerprint(val.image_ids),
        "geometry": {"cache_size": dataset.manifest.image_size, "crop": crop, "encoder_input": encoder_input},
        "vocab_size": tokenizer.get_vocab_size(), "dataset_demo": dataset.manifest.demo,
    }
    train_loader = loader(train, True)
    if len(train_loader) < config.accumulate:
        raise ConfigError(f"{config.data}: {len(train.image_ids)} training pairs give {len(train_loader)} batches of "
                          f"{config.batch_size} per process, fewer than accumulate = {config.accumulate}")
    return RunData(train_loader, loader(val, False), val, crop, encoder_input,
                   tokenizer.get_vocab_size(), facts)


# ---------------------------------------------------------------------------------------------
# State that survives a resume


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    global_step: int = 0  # optimizer steps taken
    best_val_loss: float = math.inf
    epochs_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def run_defining(config: PretrainConfig) -> dict[str, Any]:
    return {key: value for key, value in config.to_dict().items() if key not in NOT_RUN_DEFINING}


def check_resumable(stored: dict[str, Any], config: PretrainConfig, facts: dict[str, Any], path: Path,
                    initialisation: dict[str, Any]) -> None:
    """A resume continues the same run: same settings, same initial weights, same training and validation pairs."""
    before = run_defining(config_from_dict(stored["config"], str(path)))
    now = run_defining(config)
    changed = sorted(key for key in now if before.get(key) != now[key])
    if changed:
        detail = ", ".join(f"{key}: {before.get(key)!r} -> {now[key]!r}" for key in changed)
        raise ConfigError(f"{path}: the run there was started with other settings ({detail}); choose another out=... "
                          "or delete the folder to start again")
    for side, record in initialisation.items():
        before_sha = stored.get("initialisation", {}).get(side, {}).get("sha256")
        if before_sha != record["sha256"]:
            raise ConfigError(f"{path}: the run there started from other {side} weights (sha256 {before_sha} -> "
                              f"{record['sha256']}); choose another out=...")
    for key in ("train_fingerprint", "val_fingerprint"):
        if stored["data"][key] != facts[key]:
            raise ConfigError(f"{path}: the run there was trained on other pairs ({key} differs); choose another out=...")


def precision_name(precision: torch.dtype | None) -> str:
    return str(precision).removeprefix("torch.") if precision else "fp32"


def hyper_parameters(config: PretrainConfig, facts: dict[str, Any], precision: torch.dtype | None, processes: Processes,
                     initialisation: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's ``hyper_parameters``: the run's facts, and the reference's own names for
    the architecture and head sizes (``img_encoder``, ``emb_dim``, ``num_prototypes``), which its
    ``MGCA.load_from_checkpoint`` builds the module from."""
    return {
        "config": config.to_dict(), "data": facts, "arch": config.arch, "world_size": processes.world,
        "img_encoder": reference_img_encoder(config.arch), "emb_dim": config.emb_dim,
        "num_prototypes": config.num_prototypes, "initialisation": initialisation,
        "precision": precision_name(precision), "tokenizer": "tokenizer.json",
        "deviations": [
            "BERT inputs passed by keyword: positions 0..L-1 (the reference passes token types as position ids, B10)",
            "word attention of a word = its own tokens' attention (the reference shifts it by one token, B11)",
            "Sinkhorn sums all-reduced across processes (the reference runs Sinkhorn per GPU, B13)",
            "validation = the official validate split, every image counted (the reference merges validate and test "
            "and drops the last partial batch, B7)",
            "transformers' BERT adds its token-type-0 embedding to every token (BLIP's med.py has none)",
            *([] if precision is None else [f"{precision_name(precision)} autocast (the reference trains in fp32)"]),
        ],
    }


# ---------------------------------------------------------------------------------------------
# Epochs


def forward_backward(model: Any, batch: dict[str, torch.Tensor], encoder_input: int, scaler: torch.amp.GradScaler,
                     accumulate: int, device: torch.device, precision: torch.dtype | None) -> Losses:
    """One batch's losses, backpropagated (scaled by 1 / accumulate)."""
    images = to_encoder_input(batch["images"].to(device, non_blocking=True), encoder_input)
    inputs = [batch[key].to(device, non_blocking=True) for key in ("input_ids", "attention_mask", "word_slots")]
    with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
        losses, _, _ = model(images, *inputs)
    scaler.scale(losses.total / accumulate).backward()
    return losses


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def make_optimizer(core: MGCA, config: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW over every parameter, as the reference (mgca_module.py L391-396)."""
    return torch.optim.AdamW(core.parameters(), lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay)


def train_epoch(model: Any, core: MGCA, data: RunData, optimizer: torch.optim.Optimizer, scheduler: Any,
                scaler: torch.amp.GradScaler, config: PretrainConfig, processes: Processes, progress: Progress,
                precision: torch.dtype | None) -> dict[str, float]:
    model.train()
    data.train.sampler.set_epoch(progress.epoch)
    torch.manual_seed(config.seed + 1000 * progress.epoch + processes.rank)  # crops: reproducible on resume
    totals = dict.fromkeys(LOSS_NAMES, 0.0)
    batches = len(data.train) - len(data.train) % config.accumulate  # whole optimizer steps only
    bar = tqdm(total=batches, desc=f"epoch {progress.epoch + 1}/{config.epochs}", unit="batch",
               disable=not (config.progress and processes.main), leave=False)
    for index, batch in enumerate(data.train):
        if index == batches:
            break
        stepping = (index + 1) % config.accumulate == 0
        sync = contextlib.nullcontext() if stepping or processes.world == 1 else model.no_sync()
        with sync:
            losses = forward_backward(model, batch, data.encoder_input, scaler, config.accumulate, processes.device, precision)
        if stepping:
            if progress.epoch < config.freeze_prototypes_epochs:  # mgca_module.py L339-343
                core.prototype_layer.weight.grad = None
            optimizer_step(optimizer, scaler)
            scheduler.step()
            progress.global_step += 1
        values = losses.detached()
        for name in LOSS_NAMES:
            totals[name] += values[name]
        bar.update()
        bar.set_postfix({name: f"{values[name]:.3f}" for name in LOSS_NAMES})
    bar.close()
    return {f"train_{name}": _mean_over_processes(totals[name] / max(1, batches), processes) for name in LOSS_NAMES}


def _mean_over_processes(value: float, processes: Processes) -> float:
    if processes.world == 1:
        return value
    tensor = torch.tensor(value, dtype=torch.float64, device=processes.device)
    dist.all_reduce(tensor)
    return float(tensor) / processes.world


def _gather(tensor: torch.Tensor, processes: Processes) -> torch.Tensor:
    if processes.world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(processes.world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def validate(core: MGCA, data: RunData, processes: Processes, precision: torch.dtype | None) -> dict[str, float]:
    """Losses over every validation batch (weighted by batch size) and retrieval over the split."""
    core.eval()
    sums = dict.fromkeys(LOSS_NAMES, 0.0)
    count = 0
    indices, image_embs, text_embs = [], [], []
    for batch in data.val:
        images = to_encoder_input(batch["images"].to(processes.device), data.encoder_input)
        inputs = [batch[key].to(processes.device) for key in ("input_ids", "attention_mask", "word_slots")]
        with torch.autocast(processes.device.type, dtype=precision, enabled=precision is not None):
            losses, image, report = core(images, *inputs)
        for name, value in losses.detached().items():
            sums[name] += value * len(images)
        count += len(images)
        indices.append(batch["index"].to(processes.device))
        image_embs.append(image.global_emb.float())
        text_embs.append(report.global_emb.float())
    metrics = {f"val_{name}": _mean_over_processes(sums[name] / count, processes) for name in LOSS_NAMES}
    index = _gather(torch.cat(indices), processes).cpu()
    image_emb, text_emb = _gather(torch.cat(image_embs), processes).cpu(), _gather(torch.cat(text_embs), processes).cpu()
    order = {int(i): row for row, i in enumerate(index)}  # drops the duplicates of padded shards
    rows = torch.tensor([order[i] for i in range(len(data.val_pairs.image_ids))])
    metrics.update({f"val_{key}": value for key, value in
                    retrieval_accuracy(image_emb[rows], text_emb[rows], data.val_pairs.studies).items()})
    return metrics


# ---------------------------------------------------------------------------------------------
# The run


def log_line(record: dict[str, Any]) -> str:
    losses = " ".join(f"{name} {record[f'train_{name}']:.3f}/{record[f'val_{name}']:.3f}" for name in LOSS_NAMES)
    retrieval = " ".join(f"{key.removeprefix('val_')} {value:.3f}" for key, value in record.items() if "@" in key)
    return (f"epoch {record['epoch']}: loss train/val {losses} | retrieval {retrieval} | lr {record['lr']:.2e} "
            f"| {record['seconds']:.0f} s")


def train(config: PretrainConfig) -> Path:
    """Run (or resume) the pretraining described by ``config``; returns the best checkpoint."""
    processes = start_processes()
    try:
        return _train(config, processes)
    finally:
        if processes.world > 1:
            dist.destroy_process_group()


def describe_initialisation(side: str, record: dict[str, Any]) -> str:
    """One log line: where an encoder's initial weights came from."""
    if record["path"] is None:
        what = "random initialisation (trained from scratch)" if record["source"] == "random" else \
            "a small BERT from random initialisation (trained from scratch)"
        return f"{side} encoder: {what}"
    report = record["load_report"]
    counts = f", {report['matched']}/{report['expected']} keys" if "matched" in report else ""
    return f"{side} encoder: initial weights {record['path']} (sha256 {record['sha256'][:12]}{counts})"


def _train(config: PretrainConfig, processes: Processes) -> Path:
    require_initialisation(config)  # before any data is read or anything is written
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    precision = autocast_dtype(config.precision, processes.device)
    data = load_data(config, processes, _patch_size(config.arch))
    core = build_model(config, data.vocab_size).to(processes.device)
    initialisation = core.initialisation
    model = DistributedDataParallel(core) if processes.world > 1 else core
    optimizer = make_optimizer(core, config)
    steps_per_epoch = len(data.train) // config.accumulate
    total_steps = steps_per_epoch * config.epochs
    warmup = warmup_steps(total_steps, config.warmup_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate(step, total_steps, warmup, config.lr, config.min_lr) / config.lr)
    scaler = torch.amp.GradScaler(processes.device.type, enabled=precision == torch.float16)
    progress = Progress()
    params = hyper_parameters(config, data.facts, precision, processes, initialisation)
    last, best = out / "last.ckpt", out / "best.ckpt"
    if last.is_file():
        stored = load_checkpoint(last, required=("state_dict", "hyper_parameters", *RESUME_KEYS))
        check_resumable(stored["hyper_parameters"], config, data.facts, last, initialisation)
        core.load_state_dict(stored["state_dict"])
        optimizer.load_state_dict(stored["optimizer_states"][0])
        scheduler.load_state_dict(stored["lr_schedulers"][0])
        scaler.load_state_dict(stored["grad_scaler"])
        progress = Progress(**stored["early_stopping"])
        if processes.main:
            print(f"resuming {last}: {progress.epoch} of {config.epochs} epochs done", file=sys.stderr)
    if processes.main:
        start = {"config": config.to_dict(), "initialisation": initialisation, "img_encoder": params["img_encoder"]}
        write_atomically(out / "config.json", json.dumps(start, indent=1) + "\n")
        with open(out / "log.jsonl", "a") as log:
            log.write(json.dumps({"start": {"resumed_at_epoch": progress.epoch, "initialisation": initialisation}}) + "\n")
        for side in ("image", "text"):
            print(describe_initialisation(side, initialisation[side]), file=sys.stderr, flush=True)

    while progress.epoch < config.epochs and not _stopped(progress, config):
        started = time.perf_counter()
        record = train_epoch(model, core, data, optimizer, scheduler, scaler, config, processes, progress, precision)
        record |= validate(core, data, processes, precision)
        progress.epoch += 1
        record |= {"epoch": progress.epoch, "global_step": progress.global_step, "lr": scheduler.get_last_lr()[0],
                   "seconds": time.perf_counter() - started}
        improved = record["val_total"] < progress.best_val_loss
        progress.best_val_loss = min(progress.best_val_loss, record["val_total"])
        progress.epochs_without_improvement = 0 if improved else progress.epochs_without_improvement + 1
        progress.history.append(record)
        if processes.main:
            checkpoint = {"state_dict": core.state_dict(), "hyper_parameters": params, "epoch": progress.epoch,
                          "global_step": progress.global_step}
            if improved:
                save_atomic(checkpoint, best)
            save_atomic(checkpoint | {"optimizer_states": [optimizer.state_dict()], "lr_schedulers": [scheduler.state_dict()],
                                      "grad_scaler": scaler.state_dict(), "early_stopping": vars(progress)}, last)
            with open(out / "log.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")
            print(log_line(record), file=sys.stderr, flush=True)
        processes.barrier()

    if processes.main and config.export:
        ckpt, tensors = export_checkpoint(best, Path(config.export))
        print(f"exported {ckpt} and {tensors} (best validation loss {progress.best_val_loss:.4f})", file=sys.stderr)
    return best


def build_model(config: PretrainConfig, vocab_size: int) -> MGCA:
    """The model at initialisation: the same weights in every process and on every run of ``config``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return MGCA(config, vocab_size)


def _stopped(progress: Progress, config: PretrainConfig) -> bool:
    return 0 < config.early_stopping_patience <= progress.epochs_without_improvement


def _patch_size(arch: str) -> int | None:
    from benchmark.backbones import ARCHITECTURES

    with torch.device("meta"):
        module = ARCHITECTURES.get(arch).build()
    embed = getattr(module, "patch_embed", None)
    return embed.patch_size[0] if embed is not None else None
