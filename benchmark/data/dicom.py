"""DICOM decoding to the 8-bit grayscale the image cache stores.

:func:`read_dicom` differs from the reference's ``read_from_dicom`` (``mgca/datasets/utils.py``
L8-25), which takes the stored pixel values and scales them with
``cv2.convertScaleAbs(x, alpha=255 / x.max())``, then inverts MONOCHROME1:

* the Modality LUT (RescaleSlope/RescaleIntercept or a Modality LUT Sequence) is applied first,
  so values are in the units the file declares rather than raw detector codes;
* the VOI LUT Sequence or WindowCenter/WindowWidth is applied where present, i.e. the contrast
  the producing site chose for display; the reference ignores it;
* the result is min-max scaled to 0..255 (the reference subtracts no minimum, so an image whose
  darkest pixel is not 0 keeps a raised black level and loses contrast; with a negative
  intercept ``convertScaleAbs`` would even fold negative values back as their absolute value).

Why: these files come from many scanners; display windowing and the modality rescale are part of
the image's meaning, and a plain max-scaling makes the same anatomy look different across sites.
For the RSNA and SIIM releases (8-bit MONOCHROME2, no rescale, no window, darkest pixel usually 0)
both decodings give the same or nearly the same pixels; the differences matter for other DICOMs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

from benchmark.data.prepared import DataError


def read_dicom(path: str | Path) -> np.ndarray:
    """uint8 H×W grayscale pixels of a single-frame DICOM, MONOCHROME1 inverted to
    MONOCHROME2 (bright bone), scaled to the full 0..255 range. Module-level and picklable, so
    :func:`benchmark.data.cache.write_image_cache` can run it in worker processes.

    Raises DataError naming the file when it is missing, not DICOM, has no pixel data, or its
    pixel data do not match the size its header declares (truncated file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: DICOM file missing")
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a readable DICOM file ({type(error).__name__}: {error})") from None
    if "PixelData" not in dataset:
        raise DataError(f"{path}: DICOM has no PixelData element (not an image)")
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - pydicom and its decoder plugins raise many types
        raise DataError(f"{path}: pixel data cannot be decoded ({type(error).__name__}: {error})") from None
    if pixels.ndim != 2:
        raise DataError(
            f"{path}: expected one grayscale frame, got pixel array of shape {pixels.shape} "
            f"({dataset.get('PhotometricInterpretation', '?')})"
        )
    values = apply_voi_lut(apply_modality_lut(pixels, dataset), dataset).astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    image = np.rint(scaled).astype(np.uint8)
    if dataset.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        image = 255 - image
    return image



def write_dicom(
    path: str | Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    bits_stored: int | None = None,
    jpeg: bool = False,
    attributes: Mapping[str, object] | None = None,
) -> Path:
    """Write a single-frame grayscale DICOM (the inverse of :func:`read_dicom`), for the demo
    data, the tests and the benchmarks.

    ``pixels`` is uint8 or uint16 H×W; ``rescale`` is (RescaleSlope, RescaleIntercept),
    ``window`` (WindowCenter, WindowWidth); ``jpeg=True`` stores uint8 pixels JPEG-baseline
    compressed, the transfer syntax of the RSNA and SIIM releases. ``attributes`` are further
    elements by keyword (PatientID, StudyInstanceUID, ...), set last; a SOPInstanceUID given there
    also becomes the file meta's, so files with fixed UIDs are byte-identical across runs.
    """
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected uint8 or uint16 H×W pixels, got {pixels.dtype} {pixels.shape}")
    if jpeg and pixels.dtype != np.uint8:
        raise ValueError("JPEG baseline stores 8-bit pixels only")
    path = Path(path)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CR"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = pixels.dtype.itemsize * 8
    dataset.BitsStored = bits_stored or dataset.BitsAllocated
    dataset.HighBit = dataset.BitsStored - 1
    dataset.PixelRepresentation = 0
    if rescale is not None:
        dataset.RescaleSlope, dataset.RescaleIntercept = (str(value) for value in rescale)
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = (str(value) for value in window)
    if jpeg:
        _, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
        dataset.PixelData = encapsulate([encoded.tobytes()])
        dataset["PixelData"].VR = "OB"
        dataset.LossyImageCompression = "01"
    else:
        dataset.PixelData = np.ascontiguousarray(pixels).tobytes()
    for keyword, value in (attributes or {}).items():
        setattr(dataset, keyword, value)
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path
