"""One process of the 2-process gloo check of the distributed Sinkhorn (run by test_distributed.py).

Every process builds the same global batch from a fixed seed, keeps its half, computes the
prototype codes and loss with the Sinkhorn sums all-reduced, and rank 0 saves what all ranks
computed (gathered) to the file named on the command line.
"""

import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from pretrain.losses import prototype_alignment_loss, sinkhorn_codes


def global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(8, 16, generator=generator), dim=1)
    txt = F.normalize(torch.randn(8, 16, generator=generator), dim=1)
    prototypes = F.normalize(torch.randn(12, 16, generator=generator), dim=1)  # the model keeps them normalised
    return img, txt, prototypes


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    img, txt, prototypes = global_batch()
    local = slice(rank * len(img) // world, (rank + 1) * len(img) // world)
    scores = img[local] @ prototypes.t()
    codes = sinkhorn_codes(scores)
    loss = prototype_alignment_loss(img[local], txt[local], prototypes)
    gathered_codes = [torch.empty_like(codes) for _ in range(world)]
    gathered_losses = [torch.empty_like(loss) for _ in range(world)]
    dist.all_gather(gathered_codes, codes)
    dist.all_gather(gathered_losses, loss.detach())
    if rank == 0:
        torch.save({"codes": torch.cat(gathered_codes), "losses": torch.stack(gathered_losses)}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
