"""Verbs ``backbones`` and ``check-checkpoint``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.commands import command, print_json
from benchmark.commands.arguments import PREPROCESS_CHOICES


def _configure_backbones(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the registry as JSON")
    parser.add_argument("--all", action="store_true", help="also list the architecture sources and how to name a model of each")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths)) + "  " + row[-1])


@command("backbones", "list the registered backbones, architectures and architecture sources", _configure_backbones)
def _backbones(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from benchmark.backbones import ARCHITECTURES, BACKBONES, SOURCES

    sources = [{key: value for key, value in asdict(source).items() if key != "resolve"} for _, source in SOURCES.items()]
    if args.json:
        print_json({"backbones": [asdict(spec) for _, spec in BACKBONES.items()], "architectures": ARCHITECTURES.names(),
                    **({"sources": sources} if args.all else {})})
        return 0
    _table([("name", "architecture", "weights", "description")] + [
        (name, spec.arch, f"random (seed {spec.seed})" if spec.weights == "random" else spec.checkpoint_file, spec.description)
        for name, spec in BACKBONES.items()
    ])
    print(f"\nshort architecture names (MGCA's, with MGCA's preprocessing) for --arch: {', '.join(ARCHITECTURES.names())}")
    if not args.all:
        print(f"any other model: --arch <source>:<name> with source one of {', '.join(SOURCES.names())} (see --all)")
        return 0
    print("\narchitecture sources: --arch <source>:<name>; nothing is ever downloaded")
    for source in sources:
        print(f"\n  {source['syntax']}    e.g. --arch {source['example']}")
        for key in ("covers", "weights", "preprocessing"):
            print(f"    {key + ':':<15}{source[key]}")
    return 0


def _configure_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help=".ckpt/.pth/.pt/.bin (read without executing code), .safetensors, a shard "
                                           "index *.index.json, or a save_pretrained folder")
    parser.add_argument("--arch", required=True, help="a short name (resnet50, vit_base_patch16_224, ...) or <source>:<name> "
                                                      "(timm:, torchvision:, hf:, open_clip:, xrv:); see `backbones --all`")
    parser.add_argument("--prefix", default=None, help="key prefix of the encoder (default: detected)")
    parser.add_argument("--allow-partial", action="store_true", help="accept an incomplete encoder")
    parser.add_argument("--keys", action="store_true", help="list keys instead of counting them")
    parser.add_argument("--preprocess", choices=PREPROCESS_CHOICES, default="model",
                        help="print the preprocessing a run with this --preprocess would use (default: the model's own)")


@command("check-checkpoint", "report how a checkpoint loads into an architecture and the preprocessing it gets (JSON)",
         _configure_check)
def _check_checkpoint(args: argparse.Namespace) -> int:
    """Exit 0: the encoder loads completely (or partially with --allow-partial); 2: it cannot be used as given."""
    from benchmark.checkpoint_files import CheckpointError, weights_file

    try:  # a file that holds no weights is refused before torch and the model libraries are imported
        if not Path(args.checkpoint).is_dir():  # a model folder's config.json is checked first, with the architecture
            weights_file(args.checkpoint)
    except CheckpointError as failure:
        print(f"error: {failure}", file=sys.stderr)
        return 2
    from benchmark.backbones import CheckpointMismatchError, resolve_architecture, resolve_preprocessing
    from benchmark.backbones.checkpoint import read_encoder_weights
    from benchmark.registry import RegistryError

    try:
        arch = resolve_architecture(args.arch)
        report = read_encoder_weights(args.checkpoint, arch, args.prefix, args.allow_partial)[1]  # nothing is built
        error = None
    except CheckpointMismatchError as mismatch:
        report, error = mismatch.report, mismatch
    except (RegistryError, CheckpointError) as failure:  # unknown architecture, unusable file
        print(f"error: {failure}", file=sys.stderr)
        return 2
    result = report.to_dict()
    if not args.keys:
        for key in ("missing", "unexpected", "mismatched", "ignored"):
            result[key] = len(result[key])
    result["architecture"] = {"source": arch.source, "family": arch.family, "global_dim": arch.global_dim,
                              "feature_map_dims": list(arch.feature_map_dims), "feature_map_strides": list(arch.feature_map_strides)}
    result["preprocessing"] = resolve_preprocessing(arch.preprocessing, args.preprocess).to_dict()
    print_json(result)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
