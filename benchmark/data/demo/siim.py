"""SIIM-ACR Pneumothorax demo: ``train-rle.csv`` + ``dicom-images-train/<study>/<series>/<ImageId>.dcm``.

Real ImageIds with their real masks: each RLE row of the official file (Kaggle RLE on 1024×1024,
relative starts, column-major) is decoded, downscaled to the demo size and re-encoded, one row
per instance as in the official file. Positives are oversampled to 40% (22% in the real file).
The pneumothorax shows as air without lung markings over exactly the mask.
"""

from __future__ import annotations

import cv2
import numpy as np
from tqdm import tqdm

from benchmark.data.demo import sources
from benchmark.data.demo.base import DemoOptions, dataset_rng, demo_writer, image_rng, write_marker
from benchmark.data.demo.dicom import write_demo_dicom
from benchmark.data.demo.synthesis import add_pneumothorax, new_chest
from benchmark.data.datasets.siim import NEGATIVE, rle_to_mask

NAME = "siim"
ORIGINAL_SIDE = 1024
POSITIVE_SHARE = 0.4


def rle_encode(mask: np.ndarray) -> str:
    """bool mask → Kaggle SIIM RLE (relative starts, column-major; the inverse of
    :func:`benchmark.data.datasets.siim.rle_to_mask`); ``-1`` when empty."""
    flat = np.concatenate([[0], mask.T.reshape(-1).astype(np.int8), [0]])
    changes = np.flatnonzero(np.diff(flat))
    starts, ends = changes[0::2], changes[1::2]
    if len(starts) == 0:
        return NEGATIVE
    gaps = starts - np.concatenate([[0], ends[:-1]])
    return " ".join(f"{gap} {length}" for gap, length in zip(gaps, ends - starts))


def downscale_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Area-downscaled mask thresholded at half coverage; a tiny instance keeps its densest pixel."""
    coverage = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    small = (coverage >= 0.5).astype(np.uint8)
    if not small.any():
        small.flat[int(np.argmax(coverage))] = 1
    return small


def dicom_folders(image_id: str) -> tuple[str, str]:
    """(StudyInstanceUID, SeriesInstanceUID) of a stage-1 ImageId, as numbered in the real release:
    root ``...3.1.4.`` becomes ``...3.1.2.`` (study) and ``...3.1.3.`` (series), and the last
    component is one and two lower."""
    head, last = image_id.rsplit(".", 1)
    prefix, rest = head.split(".3.1.4.", 1)
    return f"{prefix}.3.1.2.{rest}.{int(last) - 1}", f"{prefix}.3.1.3.{rest}.{int(last) - 2}"


def sample_images(table, images: int, rng: np.random.Generator) -> list[str]:
    """``images`` real ImageIds, 40% positive, in the order of the real file."""
    positive = table.groupby("ImageId", sort=False)["EncodedPixels"].agg(lambda values: (values != NEGATIVE).any())
    n_positive = round(images * POSITIVE_SHARE)
    chosen = set(rng.choice(positive.index[positive].to_numpy(), n_positive, replace=False))
    chosen |= set(rng.choice(positive.index[~positive].to_numpy(), images - n_positive, replace=False))
    return [image_id for image_id in positive.index if image_id in chosen]


@demo_writer(NAME, "train-rle.csv (ImageId, EncodedPixels), dicom-images-train/<study>/<series>/<ImageId>.dcm", minimum_images=28)
def write_siim(options: DemoOptions) -> dict[str, int]:
    rng = dataset_rng(options.seed, NAME)
    table = sources.siim_rle()
    image_ids = sample_images(table, options.images, rng)
    rows = table[table["ImageId"].isin(set(image_ids))]
    masks: dict[str, np.ndarray] = {image_id: np.zeros((options.size, options.size), np.uint8) for image_id in image_ids}
    lines = [sources.siim_header()]
    for image_id, rle in rows.itertuples(index=False):
        if rle == NEGATIVE:
            lines.append(f"{image_id},{NEGATIVE}")
            continue
        instance = downscale_mask(rle_to_mask(rle, ORIGINAL_SIDE, ORIGINAL_SIDE), options.size)
        masks[image_id] |= instance
        lines.append(f"{image_id},{rle_encode(instance)}")
    (options.out / "train-rle.csv").write_text("\n".join(lines) + "\n")

    for image_id in tqdm(image_ids, desc="demo siim", unit="img"):
        chest = new_chest(image_rng(options.seed, NAME, image_id), options.size)
        if masks[image_id].any():
            add_pneumothorax(chest, masks[image_id])
        study, series = dicom_folders(image_id)
        write_demo_dicom(options.out / "dicom-images-train" / study / series / f"{image_id}.dcm", chest.render(), "mono2_8bit", {
            "PatientID": image_id.split(".")[-3], "SOPInstanceUID": image_id,
            "StudyInstanceUID": study, "SeriesInstanceUID": series, "ViewPosition": "PA",
        })
    write_marker(options, NAME)
    return {"images": len(image_ids), "positive": sum(bool(mask.any()) for mask in masks.values()), "rows": len(rows)}
