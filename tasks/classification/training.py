"""Training the linear head: AdamW, early stopping on validation loss, best epoch kept.

A plain PyTorch loop (no mmengine: the probe trains in seconds), under the same selection and
early-stopping rule as the mmengine heads (``benchmark/heads/stopping.py``), reporting the same
:class:`~benchmark.heads.outcome.TrainingOutcome`.

The loop is the same for both modes; only where a training batch's features come from
differs (cached features, or images re-encoded through a random transform every epoch).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from benchmark.heads.outcome import EpochRecord, TrainingOutcome
from benchmark.heads.stopping import EarlyStopping, Selection
from tasks.classification.protocol import Loss, ProbeProtocol

# (logits [n, C], label matrix [n, C]) -> mean loss over the images
LOSSES: dict[Loss, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "bce": lambda logits, targets: F.binary_cross_entropy_with_logits(logits, targets.float()),
    "cross_entropy": lambda logits, targets: F.cross_entropy(logits, targets.argmax(1)),
}
# logits -> scores written to the prediction file (probabilities)
ACTIVATIONS: dict[Loss, Callable[[torch.Tensor], torch.Tensor]] = {
    "bce": torch.sigmoid,
    "cross_entropy": lambda logits: torch.softmax(logits, dim=1),
}

BatchSource = Callable[[torch.Tensor], Iterable[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class TrainResult:
    head: nn.Linear  # weights of the best validation-loss epoch
    outcome: TrainingOutcome


def selection(protocol: ProbeProtocol) -> Selection:
    """The lowest validation loss is tested; training stops after ``early_stopping_patience`` epochs
    without a strictly lower one (Lightning ModelCheckpoint + EarlyStopping with min_delta 0, as the reference)."""
    return Selection(monitor="loss", rule="less", patience=protocol.early_stopping_patience)


def build_head(in_features: int, n_outputs: int, seed: int) -> nn.Linear:
    """Linear(D, C) with PyTorch's default initialisation, drawn from ``seed`` (SSLEvaluator, dropout 0)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(in_features, n_outputs)


def shuffled_batches(n_items: int, batch_size: int, drop_last: bool, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Row indices of one epoch, shuffled by ``generator``; the last partial batch dropped when
    ``drop_last`` and at least one full batch exists."""
    order = torch.randperm(n_items, generator=generator)
    stop = n_items - n_items % batch_size if drop_last and n_items >= batch_size else n_items
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def batches_per_epoch(n_items: int, protocol: ProbeProtocol) -> int:
    if protocol.train_drop_last and n_items >= protocol.batch_size:
        return n_items // protocol.batch_size
    return -(-n_items // protocol.batch_size)


@torch.no_grad()
def mean_loss(head: nn.Linear, features: torch.Tensor, targets: torch.Tensor, loss: Loss) -> float:
    """Loss over every image (no dropped batch: defect B7)."""
    return float(LOSSES[loss](head(features), targets))


def train_head(
    head: nn.Linear,
    train_batches: BatchSource,
    val_features: torch.Tensor,
    val_targets: torch.Tensor,
    loss: Loss,
    protocol: ProbeProtocol,
    generator: torch.Generator,
    description: str = "training",
) -> TrainResult:
    """Train ``head`` for up to ``max_epochs`` under :func:`selection`; return the head of the best epoch."""
    optimizer = torch.optim.AdamW(head.parameters(), lr=protocol.lr, betas=protocol.betas, weight_decay=protocol.weight_decay)
    loss_fn = LOSSES[loss]
    chosen = selection(protocol)
    stopping = EarlyStopping(chosen)
    best_loss, best_state = chosen.worst, copy.deepcopy(head.state_dict())
    history: list[EpochRecord] = []
    epochs = tqdm(range(1, protocol.max_epochs + 1), desc=description, unit="epoch")
    for epoch in epochs:
        started = time.perf_counter()
        head.train()
        total, count, steps = 0.0, 0, 0
        for features, targets in train_batches(generator):
            optimizer.zero_grad(set_to_none=True)
            batch_loss = loss_fn(head(features), targets)
            batch_loss.backward()
            optimizer.step()
            total += float(batch_loss.detach()) * len(features)
            count += len(features)
            steps += 1
        trained = time.perf_counter()
        head.eval()
        val_loss = mean_loss(head, val_features, val_targets, loss)
        # the training loss is the mean over the epoch's images (batches weighted by their size)
        history.append(EpochRecord(epoch=epoch, iterations=steps, train_loss=total / max(count, 1),
                                   validation={"loss": val_loss}, train_seconds=trained - started,
                                   val_seconds=time.perf_counter() - trained))
        epochs.set_postfix(val_loss=f"{val_loss:.4f}")
        if chosen.better(val_loss, best_loss):
            best_loss, best_state = val_loss, copy.deepcopy(head.state_dict())
        if stopping.update(val_loss):
            break
    epochs.close()
    head.load_state_dict(best_state)
    return TrainResult(head, chosen.outcome(history, protocol.max_epochs))
