"""Where a result came from: code version, package versions, hardware and time.

Every run record carries :func:`collect_provenance`'s output so that a number on the board can
be traced to a commit (and told apart when the working tree had uncommitted changes), to the
library versions that produced it and to the machine it ran on.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import benchmark

# Distributions whose versions can change a number on the board.
TRACKED_PACKAGES = (
    "mgca-cxr-bench", "torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "scipy",
    "torchmetrics", "opencv-python-headless", "pydicom", "albumentations", "pycocotools",
    "mmcv", "mmdet", "mmsegmentation", "mmengine",
)
SOURCE_ROOT = Path(benchmark.__file__).resolve().parent.parent


def utc_now() -> str:
    """Current time, ISO 8601 in UTC (second precision)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version(folder: Path = SOURCE_ROOT) -> dict[str, object]:
    """Commit of the checkout holding ``folder`` and whether tracked files differ from it.

    Untracked files do not make a checkout dirty (work and data folders often sit inside it).

    ``commit`` is None outside a git checkout (e.g. an installed wheel); the package version
    then identifies the code, and ``dirty`` is None (unknown).
    """
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "package_version": benchmark.__version__,
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "source": str(folder),
    }


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def hardware() -> dict[str, object]:
    """CPU, memory, accelerators and the thread count torch uses."""
    import torch

    gpus = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "torch_threads": torch.get_num_threads(),
        "gpus": gpus,
        "cuda": torch.version.cuda if gpus else None,
    }


def collect_provenance(started: str, finished: str | None = None) -> dict[str, object]:
    """Everything a run record says about how it was produced (times as :func:`utc_now` gives them)."""
    return {
        "code": code_version(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "hardware": hardware(),
        "started": started,
        "finished": finished or utc_now(),
    }
