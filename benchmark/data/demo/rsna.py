"""RSNA Pneumonia demo: ``stage_2_train_labels.csv`` + ``stage_2_train_images/<patientId>.dcm``.

Real patients with their real boxes (scaled from 1024 to the demo size), positives oversampled
to 40% (the real file has 22%) so that 1% label fractions hold positives. Each box gets an
airspace opacity. DICOM encodings vary (see benchmark.data.demo.dicom).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from benchmark.data.demo import sources
from benchmark.data.demo.base import DemoOptions, dataset_rng, demo_writer, image_rng, write_csv, write_marker
from benchmark.data.demo.dicom import uid, write_demo_dicom
from benchmark.data.demo.synthesis import add_box_opacity, new_chest

NAME = "rsna"
ORIGINAL_SIDE = 1024
POSITIVE_SHARE = 0.4
ENCODING_MIX = {"mono2_8bit": 0.6, "mono1_8bit": 0.1, "mono2_12bit": 0.1, "mono2_12bit_rescaled": 0.1, "mono1_12bit_rescaled": 0.1}


def sample_patients(labels, images: int, rng: np.random.Generator) -> list[str]:
    """``images`` real patientIds, 40% of them with boxes, in the order of the real file."""
    targets = labels.groupby("patientId", sort=False)["Target"].max()
    positives, negatives = targets.index[targets == 1].to_numpy(), targets.index[targets == 0].to_numpy()
    n_positive = round(images * POSITIVE_SHARE)
    chosen = set(rng.choice(positives, n_positive, replace=False)) | set(rng.choice(negatives, images - n_positive, replace=False))
    return [patient for patient in targets.index if patient in chosen]


@demo_writer(NAME, "stage_2_train_labels.csv (patientId,x,y,width,height,Target), stage_2_train_images/<patientId>.dcm", minimum_images=20)
def write_rsna(options: DemoOptions) -> dict[str, int]:
    rng = dataset_rng(options.seed, NAME)
    labels = sources.rsna_labels()
    patients = sample_patients(labels, options.images, rng)
    rows = labels[labels["patientId"].isin(set(patients))]
    scale = options.size / ORIGINAL_SIDE
    boxes: dict[str, list[tuple[float, float, float, float]]] = {patient: [] for patient in patients}
    csv_rows = []
    for patient, x, y, width, height, target in rows.itertuples(index=False):
        if target == 1:
            x, y, width, height = (round(value * scale, 1) for value in (x, y, width, height))
            width, height = min(width, options.size - x), min(height, options.size - y)
            boxes[patient].append((x, y, x + width, y + height))
            csv_rows.append([patient, x, y, width, height, 1])
        else:
            csv_rows.append([patient, None, None, None, None, 0])
    write_csv(options.out / "stage_2_train_labels.csv", ["patientId", "x", "y", "width", "height", "Target"], csv_rows)

    encodings, weights = list(ENCODING_MIX), np.array(list(ENCODING_MIX.values()))
    for patient in tqdm(patients, desc="demo rsna", unit="img"):
        image_random = image_rng(options.seed, NAME, patient)
        chest = new_chest(image_random, options.size)
        for box in boxes[patient]:
            add_box_opacity(chest, box)
        encoding = encodings[int(image_random.choice(len(encodings), p=weights))]
        write_demo_dicom(options.out / "stage_2_train_images" / f"{patient}.dcm", chest.render(), encoding, {
            "PatientID": patient, "SOPInstanceUID": uid(NAME, options.seed, patient),
            "StudyInstanceUID": uid(NAME, options.seed, patient, "study"),
            "SeriesInstanceUID": uid(NAME, options.seed, patient, "series"),
            "ViewPosition": ("PA", "AP")[int(image_random.integers(2))],
        })
    write_marker(options, NAME)
    return {"patients": len(patients), "positive": sum(bool(b) for b in boxes.values()), "boxes": sum(map(len, boxes.values()))}
