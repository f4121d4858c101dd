"""CheXpert demo, laid out as ``CheXpert-v1.0-small``: ``train.csv``, ``valid.csv``, ``train/``, ``valid/``.

``train.csv`` holds real rows of the official ``train.csv`` (all columns byte for byte, real
paths), taken patient by patient so that patients keep their several studies and views, lateral
views and uncertain (-1.0) labels included. ``valid.csv`` holds rows of other real patients,
renumbered from ``patient64541`` as the official validation set is, with labels made certain the
way expert labels are (uncertain → 1.0, empty → 0.0). Every image draws the findings of its row;
an uncertain label draws a weaker finding. All images of a patient share one build, so a split
that ignores patients leaks.

The 5×200 hold-out: preparation takes ``demo_holdout_per_task`` rows per competition task from
``train.csv`` (``benchmark.data.datasets.chexpert``: one per 40 frontal non-candidate rows,
clipped to 10-40) by the reference's rule (``holdout_pools``: frontal, positive for that task
alone). The writer computes that size with the same function on its sampled rows and, where
the sampled patients hold fewer candidates for a task, adds the missing number of real
candidate rows, each of a patient not otherwise in the demo (one image); added candidates do
not change the size, so writer and preparer agree and every demo size can be prepared and
scored zero-shot. The rows sampled as before are unchanged; ``train.csv`` holds the added rows
beyond ``--images``, and the hold-out takes the sampled candidates (all of a task's, where they
are fewer than its size) out of the classification split. Up to 500 images: 10 per task (50
added rows at most, at the smallest sizes). At the 3,000 images of ``make bench``: 40 per task,
107 rows added, 93 of the 2,100 sampled frontal images held out (training 1,890 → 1,806,
validation 210 → 201, the 1% draw 19 → 18; 10 per task took 44: 1,850 / 206 / 18).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm

from benchmark.data.datasets.chexpert import LABEL_COLUMNS as CANDIDATE_COLUMNS, demo_holdout_per_task, holdout_pools
from benchmark.data.demo import sources
from benchmark.data.demo.base import DemoOptions, dataset_rng, demo_writer, image_rng, split_counts, write_csv, write_image, write_marker
from benchmark.data.demo.synthesis import CHEXPERT_FINDINGS, apply_findings, chexpert_strengths, new_chest, new_lateral

NAME = "chexpert"
RELEASE = "CheXpert-v1.0-small"
VALID_SHARE = 0.15
MAX_IMAGES_PER_PATIENT = 6
FIRST_VALID_PATIENT = 64541  # the official valid.csv lists patient64541 … patient64740
LABEL_COLUMNS = ["No Finding", *CHEXPERT_FINDINGS]


def patient_of(path: str) -> str:
    return path.split("/")[2]


def take_patients(order: np.ndarray, groups: dict[str, np.ndarray], start: int, count: int) -> tuple[list[int], int]:
    """Row positions of whole patients taken from ``order[start:]`` until ``count`` rows (the last
    patient cut to fit), and the next position in ``order``."""
    taken: list[int] = []
    position = start
    while len(taken) < count:
        rows_of_patient = groups[order[position]][:MAX_IMAGES_PER_PATIENT]
        taken.extend(rows_of_patient[: count - len(taken)].tolist())
        position += 1
    return sorted(taken), position


def validation_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Real rows renamed into ``valid/patient645xx/studyN/viewK_*.jpg`` with certain labels."""
    valid = rows.copy()
    numbers = {patient: FIRST_VALID_PATIENT + index for index, patient in enumerate(dict.fromkeys(valid["Path"].map(patient_of)))}
    valid["Path"] = [
        f"{RELEASE}/valid/patient{numbers[patient_of(path)]:05d}/" + "/".join(path.split("/")[3:]) for path in valid["Path"]
    ]
    for column in LABEL_COLUMNS:
        valid[column] = valid[column].replace({"-1.0": "1.0", "": "0.0"})
    return valid


def render(options: DemoOptions, row: pd.Series) -> np.ndarray:
    patient = patient_of(row["Path"])
    build = image_rng(options.seed, NAME, f"patient {patient}")
    width = round(options.size * build.uniform(0.8, 0.9))
    image_random = image_rng(options.seed, NAME, row["Path"])
    make = new_lateral if row["Frontal/Lateral"] == "Lateral" else new_chest
    chest = make(image_random, options.size, width, anatomy=build)
    apply_findings(chest, chexpert_strengths(row.to_dict()))
    return chest.render()


def label_floats(rows: pd.DataFrame) -> pd.DataFrame:
    """The view and the label columns as the preparer reads them (floats, empty → NaN): the input of ``holdout_pools``."""
    labels = rows[list(CANDIDATE_COLUMNS)].replace("", np.nan).astype(float)
    return pd.concat([rows[["Frontal/Lateral"]], labels], axis=1)


def holdout_additions(table: pd.DataFrame, train_positions: list[int], used_patients: set[str],
                      rng: np.random.Generator) -> list[int]:
    """Positions in ``table`` of the candidate rows to add so that each competition task has at least as many
    5×200 candidates among the training rows as the preparer's hold-out takes (``demo_holdout_per_task`` of the
    training rows; the added rows, all candidates, leave it unchanged): per task the shortfall, drawn from the real
    candidates of patients not in ``used_patients`` (one row per added patient)."""
    floats = label_floats(table)
    sampled = floats.iloc[train_positions]
    per_task = demo_holdout_per_task(sampled)
    present = {task: len(pool) for task, pool in holdout_pools(sampled).items()}
    taken, added = set(used_patients), []
    for task, pool in holdout_pools(floats).items():
        needed = per_task - present[task]
        for position in rng.permutation(pool.index.to_numpy()):
            if needed <= 0:
                break
            patient = patient_of(table["Path"].iat[position])
            if patient not in taken:
                taken.add(patient)
                added.append(int(position))
                needed -= 1
    return added


def demo_rows(options: DemoOptions) -> dict[str, pd.DataFrame]:
    """The rows of ``train.csv`` and ``valid.csv``: whole patients in a seeded order, then the 5×200 candidates added."""
    rng = dataset_rng(options.seed, NAME)
    table = sources.chexpert_rows()
    groups = table.groupby(table["Path"].map(patient_of), sort=False).indices
    order = rng.permutation(np.array(sorted(groups)))
    n_train, n_valid = split_counts(options.images, [1 - VALID_SHARE, VALID_SHARE], minimum=2)
    train_positions, next_patient = take_patients(order, groups, 0, n_train)
    valid_positions, _ = take_patients(order, groups, next_patient, n_valid)
    used = {patient_of(path) for path in table["Path"].iloc[train_positions + valid_positions]}
    train_positions = sorted(train_positions + holdout_additions(table, train_positions, used, rng))
    return {"train": table.iloc[train_positions], "valid": validation_rows(table.iloc[valid_positions])}


@demo_writer(NAME, "train.csv, valid.csv (official columns; Path = CheXpert-v1.0-small/...), train/, valid/", minimum_images=96)
def write_chexpert(options: DemoOptions) -> dict[str, int]:
    splits = demo_rows(options)
    columns = list(sources.chexpert_rows().columns)
    for split, rows in splits.items():
        write_csv(options.out / f"{split}.csv", columns, rows.to_numpy().tolist())
        for _, row in tqdm(rows.iterrows(), total=len(rows), desc=f"demo chexpert {split}", unit="img"):
            relative = row["Path"].split("/", 1)[1]  # drop the release folder
            write_image(options.out / relative, render(options, row))
    write_marker(options, NAME)
    return {split: len(rows) for split, rows in splits.items()} | {
        "patients": sum(rows["Path"].map(patient_of).nunique() for rows in splits.values()),
        "lateral": sum(int((rows["Frontal/Lateral"] == "Lateral").sum()) for rows in splits.values()),
    }
