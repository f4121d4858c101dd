"""Verbs ``backbones`` and ``check-checkpoint``."""

from __future__ import annotations

import argparse
import sys

from benchmark.cli import command, print_json


def _configure_backbones(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the registry as JSON")


@command("backbones", "list the registered backbones and architectures", _configure_backbones)
def _backbones(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from benchmark.backbones import ARCHITECTURES, BACKBONES

    if args.json:
        print_json({"backbones": [asdict(spec) for _, spec in BACKBONES.items()], "architectures": ARCHITECTURES.names()})
        return 0
    rows = [("name", "architecture", "weights", "description")]
    for name, spec in BACKBONES.items():
        weights = f"random (seed {spec.seed})" if spec.weights == "random" else spec.checkpoint_file
        rows.append((name, spec.arch, weights, spec.description))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
    print(f"\narchitectures for --arch: {', '.join(ARCHITECTURES.names())}")
    return 0


def _configure_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help=".ckpt/.pth/.pt/.bin (read without executing code) or .safetensors")
    parser.add_argument("--arch", required=True, help="timm/torchvision name, e.g. vit_base_patch16_224, resnet50")
    parser.add_argument("--prefix", default=None, help="key prefix of the encoder (default: detected)")
    parser.add_argument("--allow-partial", action="store_true", help="accept an incomplete encoder")
    parser.add_argument("--keys", action="store_true", help="list keys instead of counting them")


@command("check-checkpoint", "report how a checkpoint loads into an architecture (JSON)", _configure_check)
def _check_checkpoint(args: argparse.Namespace) -> int:
    from benchmark.backbones import ARCHITECTURES, CheckpointError, CheckpointMismatchError
    from benchmark.backbones.checkpoint import load_encoder_weights

    arch = ARCHITECTURES.get(args.arch)
    try:
        report = load_encoder_weights(arch.build(), args.checkpoint, arch, args.prefix, args.allow_partial)
    except CheckpointMismatchError as error:
        report = error.report
        print(f"error: {error}", file=sys.stderr)
    except CheckpointError as error:
        print_json({"checkpoint": args.checkpoint, "arch": args.arch, "ok": False, "error": str(error)})
        return 1
    result = report.to_dict()
    if not args.keys:
        for key in ("missing", "unexpected", "mismatched", "ignored"):
            result[key] = len(result[key])
    print_json(result)
    return 0 if report.complete or args.allow_partial else 1
