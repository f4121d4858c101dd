"""DICOM files for the demo datasets, in the encodings a reader meets in the wild.

Every file is a Secondary Capture with a proper file meta header in Explicit VR Little Endian.
The pixel encodings differ on purpose, so that a reader that ignores PhotometricInterpretation,
bit depth or the modality LUT (RescaleSlope/Intercept) shows it on the demo data already.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


@dataclass(frozen=True)
class PixelEncoding:
    photometric: str  # MONOCHROME2: high = bright; MONOCHROME1: high = dark
    bits_stored: int  # 8 (in 8-bit words) or 12 (in 16-bit words)
    rescale: tuple[float, float] | None  # (slope, intercept) of the modality LUT, or none written


ENCODINGS = {
    "mono2_8bit": PixelEncoding("MONOCHROME2", 8, None),
    "mono1_8bit": PixelEncoding("MONOCHROME1", 8, None),
    "mono2_12bit": PixelEncoding("MONOCHROME2", 12, (1.0, 0.0)),
    "mono2_12bit_rescaled": PixelEncoding("MONOCHROME2", 12, (2.0, -100.0)),
    "mono1_12bit_rescaled": PixelEncoding("MONOCHROME1", 12, (2.0, -100.0)),
}


def stored_values(pixels: np.ndarray, encoding: PixelEncoding) -> np.ndarray:
    """Stored pixel values whose displayed image (after the modality LUT and photometric
    interpretation) is ``pixels`` (uint8, bright = dense), linearly rescaled."""
    if encoding.bits_stored == 8:
        shown = pixels.astype(np.uint8)
        return 255 - shown if encoding.photometric == "MONOCHROME1" else shown
    value = pixels.astype(np.float64) * 16  # output units of the modality LUT, 0..4080
    if encoding.photometric == "MONOCHROME1":
        value = 4080 - value
    slope, intercept = encoding.rescale or (1.0, 0.0)
    return np.round((value - intercept) / slope).astype(np.uint16)


def write_dicom(path: Path, pixels: np.ndarray, encoding: str, *, patient_id: str, sop_instance_uid: str,
                study_uid: str, series_uid: str, view_position: str = "PA", body_part: str = "CHEST") -> None:
    """Write uint8 grayscale ``pixels`` as a DICOM file with the named pixel ``encoding``."""
    spec = ENCODINGS[encoding]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["benchmark.data.demo"])

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = patient_id
    ds.PatientName = patient_id
    ds.Modality = "CR"
    ds.ConversionType = "WSD"
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view_position
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = spec.photometric
    ds.BitsAllocated = 8 if spec.bits_stored == 8 else 16
    ds.BitsStored = spec.bits_stored
    ds.HighBit = spec.bits_stored - 1
    ds.PixelRepresentation = 0
    if spec.rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = spec.rescale
        ds.RescaleType = "US"
    ds.PixelData = stored_values(pixels, spec).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def uid(*parts: object) -> str:
    """A deterministic DICOM UID derived from ``parts`` (same parts, same UID)."""
    return generate_uid(entropy_srcs=[str(part) for part in parts])
