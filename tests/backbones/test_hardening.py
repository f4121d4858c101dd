"""Checkpoint hardening (issue 14, section 2): legacy Lightning files, plain data, malformed pickles, bad names.

Every failure of the loader is one CheckpointError line that names the file; nothing in a file
ever runs; torch's advice to load with ``weights_only=False`` is never repeated.
"""

from __future__ import annotations

import os
import pathlib
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.backbones import ARCHITECTURES, CheckpointError, UnsafeCheckpointError
from benchmark.backbones.checkpoint import load_encoder_weights, read_checkpoint
from benchmark.backbones.safe_pickle import torch_load_safely
from benchmark.cli import main

RESNET18 = ARCHITECTURES.get("resnet18")


def assert_one_line_naming(error: BaseException, path: Path) -> None:
    message = str(error)
    assert str(path) in message and "\n" not in message and "weights_only" not in message, message


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-non-zip"])
def test_lightning_checkpoint_with_attribute_dict_and_namespace_loads_in_both_formats(tmp_path, tiny_states, save_mgca_checkpoint, legacy):
    path = save_mgca_checkpoint(tmp_path / "resnet_50.ckpt", tiny_states["resnet18"], "resnet_18", legacy=legacy)
    assert zipfile.is_zipfile(path) != legacy
    model = RESNET18.build()
    report = load_encoder_weights(model, path, RESNET18)
    assert report.complete and report.matched == report.expected == 100 and report.prefix == "img_encoder_q.model."
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny_states["resnet18"].items())


def test_plain_data_written_by_real_libraries_loads_as_inert_data(tmp_path, tiny_states):
    """Lightning hyper-parameters with numpy values, a pathlib path and an OmegaConf config (GLoRIA-style)."""
    from omegaconf import OmegaConf

    hyper_parameters = {
        "data_dir": pathlib.Path("/data/mimic/files"), "mean": np.float64(0.5), "crop": np.int64(224),
        "weights": np.arange(6, dtype=np.float32).reshape(2, 3), "dtype": np.dtype("float16"),
        "config": OmegaConf.create({"model": {"vision": {"model_name": "resnet_50"}}, "lr": 1e-4, "sizes": [224, 256]}),
    }
    torch.save({"state_dict": tiny_states["resnet18"], "hyper_parameters": hyper_parameters}, tmp_path / "plain.ckpt")
    assert load_encoder_weights(RESNET18.build(), tmp_path / "plain.ckpt", RESNET18).complete
    content = torch_load_safely(tmp_path / "plain.ckpt")["hyper_parameters"]
    assert content["data_dir"] == pathlib.PurePosixPath("/data/mimic/files") and not isinstance(content["data_dir"], pathlib.Path)
    assert content["mean"] == 0.5 and content["crop"] == 224 and content["dtype"] == np.float16
    assert np.array_equal(content["weights"], hyper_parameters["weights"])
    assert type(content["config"]).__module__ != "omegaconf.dictconfig"  # an inert stand-in, never OmegaConf's class


class _CallsNumpyIO:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (np.save, (str(self.path), np.zeros(1)))


class _CallsPathMethod:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.path, "pwned"))


@pytest.mark.parametrize("payload", [_CallsNumpyIO, _CallsPathMethod], ids=["numpy.save", "Path.write_text"])
def test_anything_beyond_plain_data_stays_refused(tmp_path, tiny_states, payload):
    marker = tmp_path / "pwned.npy"
    torch.save({"state_dict": tiny_states["resnet18"], "hyper_parameters": {"x": payload(marker)}}, tmp_path / "evil.ckpt")
    with pytest.raises(UnsafeCheckpointError, match="tries to run code") as error:
        read_checkpoint(tmp_path / "evil.ckpt")
    assert_one_line_naming(error.value, tmp_path / "evil.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize("content", [
    pytest.param(b"\x80\x02h\x05.", id="bad-memo-key"),
    pytest.param(b"\x80\x02.", id="stop-on-empty-stack"),
    pytest.param(b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", id="undecodable-string"),
    pytest.param(b"\x80\x02X\x01\x00\x00\x00aQ.", id="persistent-id-of-the-wrong-type"),
    pytest.param(b"\x80\x02}q\x00(X\x01\x00\x00\x00a", id="truncated-stack"),
    pytest.param(b"\x80\x02K\x01K\x02s.", id="setitem-on-an-int"),
])
def test_structurally_malformed_pickles_are_one_line(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert_one_line_naming(error.value, path)


def _data_pkl_span(raw: bytes, path: Path) -> tuple[int, int]:
    """Offset and length of data.pkl inside a torch zip checkpoint (stored uncompressed)."""
    info = next(i for i in zipfile.ZipFile(path).infolist() if i.filename.endswith("data.pkl"))
    name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    return info.header_offset + 30 + name_length + extra_length, info.compress_size


def test_fuzzed_checkpoints_never_escape_the_loader(tmp_path, tiny_states, save_mgca_checkpoint):
    """200 seeded 1-3 bit flips of a Lightning checkpoint's data.pkl: each loads or fails as one CheckpointError line."""
    state = {k: v for k, v in tiny_states["resnet18"].items() if k.startswith("layer4.1.")}
    base = save_mgca_checkpoint(tmp_path / "base.ckpt", state, "resnet_18")
    raw = base.read_bytes()
    start, length = _data_pkl_span(raw, base)
    rng, outcomes = random.Random(0), {"loaded": 0, "refused": 0}
    path = tmp_path / "flipped.ckpt"
    for _ in range(200):
        flipped = bytearray(raw)
        for _ in range(rng.randint(1, 3)):
            flipped[start + rng.randrange(length)] ^= 1 << rng.randrange(8)
        path.write_bytes(flipped)
        try:
            read_checkpoint(path)
            outcomes["loaded"] += 1
        except CheckpointError as error:
            assert_one_line_naming(error, path)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100  # most flips break the file; none escapes as another exception


def test_check_checkpoint_exits_2_with_one_line_on_a_corrupt_file(tmp_path, capsys):
    (tmp_path / "corrupt.ckpt").write_bytes(b"\x80\x02h\x05.")
    assert main(["check-checkpoint", str(tmp_path / "corrupt.ckpt"), "--arch", "resnet18"]) == 2
    out, err = capsys.readouterr()
    assert not out and err.startswith(f"error: {tmp_path / 'corrupt.ckpt'}:") and err.count("\n") == 1


@pytest.mark.parametrize("arch, hint", [("nope", "Short names: resnet18"), ("resnet5", "Did you mean 'resnet50'"),
                                        ("vit_base_patch16", "Did you mean 'vit_base_patch16_224'")])
def test_check_checkpoint_with_an_unknown_arch_gives_the_registry_message(tmp_path, capsys, arch, hint):
    torch.save({"a": torch.zeros(1)}, tmp_path / "w.pth")
    assert main(["check-checkpoint", str(tmp_path / "w.pth"), "--arch", arch]) == 2
    out, err = capsys.readouterr()
    assert not out and err.startswith(f"error: unknown architecture {arch!r}") and hint in err and err.count("\n") == 1


def test_legacy_refusal_of_a_call_names_the_call_not_torchs_advice(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match=r"refused, the file tries to run code \(.*posix.system") as error:
        read_checkpoint(tmp_path / "evil.pt")
    assert_one_line_naming(error.value, tmp_path / "evil.pt")
