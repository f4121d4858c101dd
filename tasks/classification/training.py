"""Training the linear head: AdamW, early stopping on validation loss, best epoch kept.

The loop is the same for both modes; only where a training batch's features come from
differs (cached features, or images re-encoded through a random transform every epoch).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

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
    best_epoch: int  # 1-based
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


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
    """Train ``head`` for up to ``max_epochs``; stop after ``patience`` epochs without a strictly
    lower validation loss; return the head of the best epoch (Lightning ModelCheckpoint +
    EarlyStopping with min_delta 0, as the reference)."""
    optimizer = torch.optim.AdamW(head.parameters(), lr=protocol.lr, betas=protocol.betas, weight_decay=protocol.weight_decay)
    loss_fn = LOSSES[loss]
    best_loss, best_state, best_epoch, waited = float("inf"), copy.deepcopy(head.state_dict()), 0, 0
    history: list[dict[str, float]] = []
    epochs = tqdm(range(1, protocol.max_epochs + 1), desc=description, unit="epoch")
    epoch = 0
    for epoch in epochs:
        started = time.perf_counter()
        head.train()
        total, count = 0.0, 0
        for features, targets in train_batches(generator):
            optimizer.zero_grad(set_to_none=True)
            batch_loss = loss_fn(head(features), targets)
            batch_loss.backward()
            optimizer.step()
            total += float(batch_loss.detach()) * len(features)
            count += len(features)
        head.eval()
        val_loss = mean_loss(head, val_features, val_targets, loss)
        history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": val_loss,
                        "seconds": time.perf_counter() - started})
        epochs.set_postfix(val_loss=f"{val_loss:.4f}")
        if val_loss < best_loss:
            best_loss, best_state, best_epoch, waited = val_loss, copy.deepcopy(head.state_dict()), epoch, 0
        else:
            waited += 1
            if waited >= protocol.early_stopping_patience:
                break
    epochs.close()
    head.load_state_dict(best_state)
    return TrainResult(head, best_epoch, epoch, epoch < protocol.max_epochs, history)
