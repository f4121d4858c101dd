"""Nothing is downloaded (README): the hub clients of transformers, huggingface_hub, timm and open_clip
read these variables when first imported, so every entry point sets them before any of those is imported
(the CLI, a cluster job), and every process the suite starts (cells, executor jobs) inherits them."""

from __future__ import annotations

import os

OFFLINE_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                       "HF_HUB_DISABLE_TELEMETRY": "1"}


def stay_offline() -> None:
    """Set :data:`OFFLINE_ENVIRONMENT` in this process (and so in every process it starts)."""
    os.environ.update(OFFLINE_ENVIRONMENT)
