"""``python -m pretrain --config CONFIG [key=value ...]`` (under torchrun for several devices)."""

from __future__ import annotations

import argparse
import sys

from benchmark.backbones.safe_pickle import CheckpointError
from benchmark.data.prepared import DataError
from pretrain.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pretrain",
        description="MGCA pretraining on prepared MIMIC-CXR image-report pairs. Several devices: "
                    "torchrun --nproc_per_node N -m pretrain --config CONFIG.",
    )
    parser.add_argument("--config", required=True, help="a file, or a shipped config name (pretrain/configs/NAME.toml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="settings that replace the config's, e.g. epochs=2")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        from pretrain.train import train

        train(config)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
