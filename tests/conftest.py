"""Shared fixtures: small threads budget so tests behave the same on 2-core CI machines, and model
folders written as their libraries publish them, for the backbone and the task tests."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True, scope="session")
def _board_caches_in_the_test_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Boards' local caches (benchmark/board/integrity.py) go to the tests' temporary folders, not the user's
    cache; session-wide, so that module fixtures building boards use them too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MGCA_BENCH_LOCAL_CACHE", str(tmp_path_factory.getbasetemp() / "local-cache"))
        yield


MEMORY_FOLDER = Path("/dev/shm")  # tmpfs on Linux: files there are pages of memory, never written to a disk
GiB = 2**30


def _memory_available() -> int:
    """Bytes this process may still fill: the kernel's MemAvailable, within its memory cgroup's limit (v2 or v1)."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        available = int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        return 0
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit, usage = Path(limit_file).read_text().strip(), Path(usage_file).read_text().strip()
        except OSError:
            continue
        if limit != "max":
            available = min(available, int(limit) - int(usage))
        break
    return available


def _remove_scratch_of_dead_sessions() -> None:
    """Memory scratch folders of this user's test sessions that died before removing them (killed): memory held
    until the next boot otherwise. A folder names its session's process; a live process's folders stay."""
    for folder in MEMORY_FOLDER.glob("pytest-scratch-*-*"):
        try:
            pid = int(folder.name.split("-")[2])
            if folder.stat().st_uid != os.getuid() or pid == os.getpid():
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, OSError):
            continue


ScratchFolder = Callable[[int], Path]


@pytest.fixture()
def scratch_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchFolder]:
    """``scratch(nbytes)``: a new empty folder for a test whose code under test writes about ``nbytes`` of files
    (the detection heads' checkpoints: up to 250 MB each). In memory (tmpfs) when there is room to spare, so that
    the test does not wait for the disk: once the kernel's dirty-page budget is spent, each write waits for the
    disk (about 100 MB/s on the 2-core test machine). Else in the tests' temporary folder (beside ``tmp_path``, not
    in it). Removed after the test either way; where the files lie changes nothing that is checked."""
    made: list[Path] = []

    def scratch(nbytes: int) -> Path:
        room = 0
        if MEMORY_FOLDER.is_dir() and os.access(MEMORY_FOLDER, os.W_OK):
            _remove_scratch_of_dead_sessions()
            room = min(shutil.disk_usage(MEMORY_FOLDER).free - nbytes, _memory_available() - nbytes - 6 * GiB)
        if room > nbytes:  # the files, twice over, and 6 GiB for the processes that write them
            folder = Path(tempfile.mkdtemp(prefix=f"pytest-scratch-{os.getpid()}-", dir=MEMORY_FOLDER))
        else:
            folder = tmp_path_factory.mktemp("scratch")
        made.append(folder)
        return folder

    yield scratch
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


OpenClipFolder = Callable[..., Path]


@pytest.fixture(scope="session")
def write_open_clip_folder() -> OpenClipFolder:
    """``write(folder, width, image_size=32, trunk=None, text_vocab=64)``: a tiny open_clip model written as
    open_clip publishes one (open_clip_config.json + state dict), patch 8, or a timm ``trunk`` (BiomedCLIP's
    layout); ``text_vocab=49408`` gives a text tower that open_clip's bundled tokenizer can feed."""

    def write(folder: Path, width: int, image_size: int = 32, trunk: str | None = None, text_vocab: int = 64) -> Path:
        import open_clip

        vision = {"image_size": image_size, "layers": 2, "width": width, "patch_size": 8, "head_width": 16}
        if trunk:
            vision = {"timm_model_name": trunk, "timm_model_pretrained": False, "timm_pool": "", "timm_proj": "linear",
                      "image_size": image_size}
        text = {"context_length": 8, "vocab_size": text_vocab, "width": 16, "heads": 2, "layers": 1}
        folder.mkdir(parents=True)
        config = {"model_cfg": {"embed_dim": 24, "vision_cfg": vision, "text_cfg": text},
                  "preprocess_cfg": {"mean": [0.39, 0.39, 0.39], "std": [0.33, 0.33, 0.33]}}
        (folder / "open_clip_config.json").write_text(json.dumps(config))
        torch.manual_seed(3)
        model = open_clip.create_model(f"local-dir:{folder}").eval()
        torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
        return folder

    return write
