"""DICOM pixel encodings for the demo datasets, written with :func:`benchmark.data.dicom.write_dicom`.

Every file is an uncompressed Secondary Capture (Explicit VR Little Endian) with a proper file
meta header. The encodings differ on purpose, so that a reader that ignores
PhotometricInterpretation, bit depth or the Modality LUT (RescaleSlope/Intercept) shows it on the
demo data already. UIDs are derived from fixed inputs, so the files are byte-identical per seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from benchmark.data.dicom import write_dicom


@dataclass(frozen=True)
class PixelEncoding:
    photometric: str  # MONOCHROME2: high = bright; MONOCHROME1: high = dark
    bits_stored: int  # 8 (in 8-bit words) or 12 (in 16-bit words)
    rescale: tuple[float, float] | None  # (RescaleSlope, RescaleIntercept), or none written


ENCODINGS = {
    "mono2_8bit": PixelEncoding("MONOCHROME2", 8, None),
    "mono1_8bit": PixelEncoding("MONOCHROME1", 8, None),
    "mono2_12bit": PixelEncoding("MONOCHROME2", 12, None),
    "mono2_12bit_rescaled": PixelEncoding("MONOCHROME2", 12, (2.0, -100.0)),
    "mono1_12bit_rescaled": PixelEncoding("MONOCHROME1", 12, (2.0, -100.0)),
}


def stored_values(pixels: np.ndarray, encoding: PixelEncoding) -> np.ndarray:
    """Stored values whose displayed image (Modality LUT, then the photometric interpretation) is
    ``pixels`` (uint8, bright = dense), up to a linear rescale."""
    if encoding.bits_stored == 8:
        return 255 - pixels if encoding.photometric == "MONOCHROME1" else pixels.copy()
    value = pixels.astype(np.float64) * 16  # Modality LUT output, 0..4080
    if encoding.photometric == "MONOCHROME1":
        value = 4080 - value
    slope, intercept = encoding.rescale or (1.0, 0.0)
    return np.round((value - intercept) / slope).astype(np.uint16)


def write_demo_dicom(path: Path, pixels: np.ndarray, encoding: str, attributes: dict[str, object]) -> None:
    """uint8 ``pixels`` as a DICOM in the named ``encoding``, with the given identifying elements."""
    spec = ENCODINGS[encoding]
    write_dicom(path, stored_values(pixels, spec), photometric=spec.photometric, rescale=spec.rescale,
                bits_stored=spec.bits_stored, attributes={"Modality": "CR", "BodyPartExamined": "CHEST", **attributes})


def uid(*parts: object) -> str:
    """A deterministic DICOM UID derived from ``parts`` (same parts, same UID)."""
    return generate_uid(entropy_srcs=[str(part) for part in parts])
