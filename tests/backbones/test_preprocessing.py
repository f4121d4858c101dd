"""The backbone's preprocessing as every task applies it (``normalise``), and ``--preprocess protocol``."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from benchmark.backbones import (
    MGCA_PREPROCESSING,
    PREPROCESS_MODES,
    Preprocessing,
    normalise,
    protocol_preprocessing,
    resolve_preprocessing,
)
from benchmark.backbones.preprocessing import PreprocessingError
from benchmark.commands.arguments import PREPROCESS_CHOICES

XRV = Preprocessing(224, 1, (0.0,), (1.0,), value_range=(-1024.0, 1024.0), source="torchxrayvision")
IMAGENET = Preprocessing(224, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), source="timm")
PIXELS = torch.tensor([[0, 255], [51, 204]], dtype=torch.uint8).expand(3, 2, 2)


def test_normalise_by_hand():
    """torchxrayvision: one channel, 0 -> -1024, 255 -> 1024; MGCA: three channels, 0 -> -1, 255 -> 1."""
    assert torch.allclose(normalise(PIXELS, XRV), torch.tensor([[[-1024.0, 1024.0], [-614.4, 614.4]]]), atol=1e-3)
    mgca = normalise(PIXELS, MGCA_PREPROCESSING)
    assert mgca.shape == (3, 2, 2) and torch.allclose(mgca[1], torch.tensor([[-1.0, 1.0], [-0.6, 0.6]]), atol=1e-6)
    assert torch.allclose(normalise(PIXELS, IMAGENET)[0, 0, 1], torch.tensor((1 - 0.485) / 0.229))


def test_normalise_is_torchvisions_to_dtype_and_normalize_bit_for_bit_on_uint8_and_float_pixels():
    """The classification probe's numbers from before the function was shared stay identical."""
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    expected = v2.Normalize(list(IMAGENET.mean), list(IMAGENET.std))(v2.ToDtype(torch.float32, scale=True)(images))
    assert torch.equal(normalise(images, IMAGENET), expected)
    assert torch.equal(normalise(images.float(), IMAGENET), expected)  # mmseg's pre-processor hands 0-255 floats


def test_protocol_mode_keeps_size_and_channels_and_replaces_the_normalisation():
    protocol = resolve_preprocessing(XRV, "protocol")
    assert (protocol.input_size, protocol.channels, protocol.mean, protocol.std, protocol.value_range, protocol.mode) == \
        (224, 1, (0.5,), (0.5,), (0.0, 1.0), "protocol")
    assert torch.allclose(normalise(PIXELS, protocol), torch.tensor([[[-1.0, 1.0], [-0.6, 0.6]]]), atol=1e-6)
    assert resolve_preprocessing(XRV, "model") is XRV
    assert protocol_preprocessing(MGCA_PREPROCESSING).pixels() == MGCA_PREPROCESSING.pixels()  # MGCA's own is the protocol's
    with pytest.raises(PreprocessingError, match="one of"):
        resolve_preprocessing(XRV, "imagenet")


def test_the_record_form_round_trips_and_names_the_mode():
    recorded = protocol_preprocessing(IMAGENET).to_dict()
    assert recorded["mode"] == "protocol" and recorded["mean"] == [0.5, 0.5, 0.5]
    assert Preprocessing.from_dict(recorded) == protocol_preprocessing(IMAGENET)
    assert "mode" not in IMAGENET.pixels() and "source" not in IMAGENET.pixels()


def test_the_cli_offers_exactly_the_modes():
    assert PREPROCESS_CHOICES == PREPROCESS_MODES
