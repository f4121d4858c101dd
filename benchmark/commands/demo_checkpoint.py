"""Verb ``demo-checkpoint``: a seeded random encoder saved in MGCA's released checkpoint layout.

It gives the demo a second checkpoint to submit and compare (``make submit`` without arguments),
and users a template of the key layout the loader expects.
"""

from __future__ import annotations

import argparse
import sys

from benchmark.commands import command
from benchmark.commands.arguments import SEED_RANGE, int_between, output_file


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="resnet18", help="architecture (default resnet18)")
    parser.add_argument("--seed", type=int_between(*SEED_RANGE), default=1, help="initialisation seed (default 1; the demo backbones use 0)")
    parser.add_argument("--out", type=output_file, required=True, help="checkpoint file to write (.ckpt)")


@command("demo-checkpoint", "write a seeded random encoder as an MGCA-layout checkpoint (for the demo)", _configure)
def _demo_checkpoint(args: argparse.Namespace) -> int:
    import torch

    from benchmark.backbones import BackboneSpec, build_backbone
    from benchmark.registry import RegistryError

    spec = BackboneSpec(name="demo", arch=args.arch, weights="random", seed=args.seed, description="demo checkpoint")
    try:
        encoder = build_backbone(spec).model.model
    except RegistryError as error:  # an unknown or unbuildable architecture
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {f"img_encoder_q.model.{key}": value for key, value in encoder.state_dict().items()}
    torch.save({"state_dict": state, "note": f"random {args.arch}, seed {args.seed}: demo only"}, args.out)
    print(f"wrote {args.out} ({args.arch}, seed {args.seed})")
    return 0
