"""MGCA pretraining throughput: image-report pairs per second, tiny and full-size, CPU (and GPU).

    .venv/bin/python benchmarks/bench_pretrain.py                 # demo, ViT-B/16 and ResNet-50 configs
    .venv/bin/python benchmarks/bench_pretrain.py --configs demo --steps 10
    .venv/bin/python benchmarks/bench_pretrain.py --smoke                         # the test suite's run

Each configuration runs the training step that ``python -m pretrain`` runs (forward, the three
losses, backward, AdamW step; :func:`pretrain.train.forward_backward`) on synthetic batches of the
config's crop size and report length (uniform 40-112 tokens). Full-size text encoders have
Bio_ClinicalBERT's shape (6 layers, 768 wide, 28,996 words) with random weights: the same
compute. On CPU the full-size configs run with a small batch (``--cpu-full-batch``); on a GPU every
config runs at its own batch size under the autocast the config resolves to. Exits 1 when the demo
config is slower than ``--min-demo-rate`` pairs/s on CPU: the demo MGCA must pretrain in a few
minutes on a laptop (``make checkpoints/mgca_demo.ckpt``).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from pretrain.config import PretrainConfig, load_config
from pretrain.data import crop_geometry
from pretrain.train import autocast_dtype, build_model, forward_backward, make_optimizer, optimizer_step

from smoke import add_smoke_option, exit_status, parse_args

BIO_CLINICALBERT_SHAPE = ("text_layers=6", "text_hidden_size=768", "text_heads=12", "text_intermediate_size=3072")
BIO_CLINICALBERT_VOCAB = 28996
CACHE_SIZE = {"demo": 128}  # the demo's prepared images; real data: the reference's 256


def synthetic_batch(config: PretrainConfig, batch_size: int, crop: int, vocab: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    length = config.max_words
    lengths = torch.randint(40, length + 1, (batch_size,), generator=generator)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids = torch.randint(5, vocab, (batch_size, length), generator=generator) * mask
    slots = torch.where(mask.bool(), torch.arange(length)[None].expand(batch_size, -1), torch.tensor(length))
    images = torch.randint(0, 256, (batch_size, crop, crop), dtype=torch.uint8, generator=generator)
    return {"images": images, "input_ids": ids, "attention_mask": mask, "word_slots": slots}


def geometry(name: str) -> tuple[PretrainConfig, int, int, int | None]:
    """A config (full-size ones with Bio_ClinicalBERT's text shape), its vocabulary size, crop and
    encoder input size; the model is built on the meta device (no memory, no compute) to read its patch size."""
    full_size = name != "demo"
    config = load_config(name, list(BIO_CLINICALBERT_SHAPE) if full_size else [])
    vocab = BIO_CLINICALBERT_VOCAB if full_size else config.vocab_size
    with torch.device("meta"):
        patch = getattr(build_model(config, vocab).img_encoder_q.model, "patch_embed", None)
    crop, encoder_input = crop_geometry(CACHE_SIZE.get(name, 256), patch.patch_size[0] if patch else None,
                                        config.encoder_input_size or None)
    return config, vocab, crop, encoder_input


def pairs_per_second(name: str, device: torch.device, batch_size: int | None, steps: int) -> tuple[float, int, str]:
    config, vocab, crop, encoder_input = geometry(name)
    batch_size = batch_size or config.batch_size
    precision = autocast_dtype(config.precision, device)
    core = build_model(config, vocab).to(device).train()
    optimizer = make_optimizer(core, config)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)
    generator = torch.Generator().manual_seed(0)
    batch = synthetic_batch(config, batch_size, crop, vocab, generator)
    for step in range(steps + 1):  # the first step warms up (allocations, kernel selection)
        if step == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        forward_backward(core, batch, encoder_input, scaler, 1, device, precision)
        optimizer_step(optimizer, scaler)
    if device.type == "cuda":
        torch.cuda.synchronize()
    label = str(precision).removeprefix("torch.") if precision else "fp32"
    return steps * batch_size / (time.perf_counter() - start), batch_size, label


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="demo,mimic_vit_base,mimic_resnet50", help="comma list of pretrain/configs names")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after one warm-up step)")
    parser.add_argument("--cpu-full-batch", type=int, default=8, help="batch of the full-size configs on CPU")
    parser.add_argument("--min-demo-rate", type=float, default=20.0, help="pairs/s the demo config must reach on CPU")
    parser.add_argument("--demo-batch", type=int, default=None, help="batch of the demo config (default: its own)")
    parser.add_argument("--build-only-full-size", action="store_true",
                        help="full-size configs: load and build them (meta device), do not time them")
    add_smoke_option(parser, demo_batch=4, steps=1, build_only_full_size=True)
    args = parse_args(parser)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch threads: {torch.get_num_threads()}")
    missed = []
    for device in devices:
        for name in args.configs.split(","):
            if name != "demo" and args.build_only_full_size:
                config, _, crop, encoder_input = geometry(name)
                print(f"{device.type:4s} {name:15s} {config.arch} built (crop {crop}, encoder input {encoder_input}), not timed")
                continue
            batch = args.demo_batch if name == "demo" else args.cpu_full_batch if device.type == "cpu" else None
            rate, batch_size, precision = pairs_per_second(name, device, batch, args.steps)
            print(f"{device.type:4s} {name:15s} batch {batch_size:3d} {precision:8s} {rate:8.1f} pairs/s", flush=True)
            if device.type == "cpu" and name == "demo" and rate < args.min_demo_rate:
                missed.append(f"the demo config runs {rate:.1f} pairs/s on CPU; it needs {args.min_demo_rate:.0f}")
    return exit_status(missed, args.smoke)


if __name__ == "__main__":
    sys.exit(main())
