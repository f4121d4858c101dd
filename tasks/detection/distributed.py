"""Several processes per cell: BatchNorm on the global batch, on any device and backend.

With DistributedDataParallel each process sees its share of the global batch. The YOLOv3 neck
and head normalise with BatchNorm in training, so per-process statistics would make a
W-process run differ from the single-process run on the same global batch. torch's
``SyncBatchNorm`` fixes that on GPUs only; :class:`GlobalBatchNorm` does the same with a
differentiable all-reduce of the per-channel sums, which works with gloo on CPUs as well (the
2-process test) and with NCCL on GPUs.

The YOLOv3 losses are sums over the images, so the all-reduced (averaged) gradient is 1/W of
the single-process gradient; AdamW's update does not depend on that scale (up to its epsilon).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional
from torch import nn


def world_size() -> int:
    """Processes of this cell: the initialised group's size, else ``WORLD_SIZE`` (torchrun), else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def first_process_first() -> Iterator[None]:
    """Process 0 runs the block before the others (which then find what it wrote)."""
    distributed = dist.is_available() and dist.is_initialized()
    if distributed and dist.get_rank() != 0:
        dist.barrier()
    yield
    if distributed and dist.get_rank() == 0:
        dist.barrier()


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics (and running estimates) are those of the global batch."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        wide = x.double()  # sums of squares in float64: no cancellation against the mean
        count = torch.tensor([x.numel() / channels], dtype=torch.float64, device=x.device)
        totals = dist_functional.all_reduce(torch.cat([wide.sum(dims), (wide * wide).sum(dims), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        var = totals[channels : 2 * channels] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.to(self.running_mean.dtype))
                unbiased = var * n / (n - 1)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var.dtype))
        shape = [1, channels] + [1] * (x.dim() - 2)
        out = (wide - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        out = out.to(x.dtype)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def global_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a :class:`GlobalBatchNorm` holding its
    parameters and statistics (``nn.SyncBatchNorm.convert_sync_batchnorm``'s pattern)."""
    converted = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.training = module.training
    for name, child in module.named_children():
        converted.add_module(name, global_batchnorm(child))
    return converted
