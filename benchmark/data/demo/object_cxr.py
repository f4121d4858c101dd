"""Object-CXR demo: ``train.csv`` / ``dev.csv`` (``image_name,annotation``) + ``train/``, ``dev/`` JPGs.

Half of the images hold one to three foreign objects (clips as rectangles, buttons as ellipses,
wires as polygons), drawn bright where their annotation says; the other half have an empty
annotation. Names run ``00001.jpg`` … for train and on from ``08001.jpg`` for dev as in the
release; image sizes vary around ``--size`` as the real images vary.
"""

from __future__ import annotations

from tqdm import tqdm

from benchmark.data.demo.base import DemoOptions, dataset_rng, demo_writer, image_rng, split_counts, write_csv, write_image, write_marker
from benchmark.data.demo.synthesis import FOREIGN_OBJECTS, new_chest

NAME = "object_cxr"
DEV_SHARE = 0.2
POSITIVE_SHARE = 0.5
FIRST_DEV_NUMBER = 8001  # the official dev images are 08001.jpg … 09000.jpg
MAX_OBJECTS = 3


# minimum_images: with seed 0 every size from 97 up puts a box in train, validation and test
# (96 leaves the validation split without one; preparation refuses such a split).
@demo_writer(NAME, "train.csv, dev.csv (image_name,annotation), train/<name>.jpg, dev/<name>.jpg", minimum_images=97)
def write_object_cxr(options: DemoOptions) -> dict[str, int]:
    rng = dataset_rng(options.seed, NAME)
    n_train, n_dev = split_counts(options.images, [1 - DEV_SHARE, DEV_SHARE], minimum=2)
    kinds = FOREIGN_OBJECTS.names()
    counts = {}
    for split, total, first in (("train", n_train, 1), ("dev", n_dev, max(FIRST_DEV_NUMBER, n_train + 1))):
        positive = rng.permutation(total) < round(total * POSITIVE_SHARE)
        rows = []
        for index in tqdm(range(total), desc=f"demo object_cxr {split}", unit="img"):
            name = f"{first + index:05d}.jpg"
            image_random = image_rng(options.seed, NAME, name)
            width = round(options.size * image_random.uniform(0.8, 1.0))
            chest = new_chest(image_random, options.size, width)
            objects = []
            if positive[index]:
                for _ in range(int(image_random.integers(1, MAX_OBJECTS + 1))):
                    objects.append(FOREIGN_OBJECTS.get(kinds[int(image_random.integers(len(kinds)))])(chest))
            write_image(options.out / split / name, chest.render())
            rows.append([name, ";".join(objects)])
        write_csv(options.out / f"{split}.csv", ["image_name", "annotation"], rows)
        counts[split] = total
        counts[f"{split}_with_objects"] = int(positive.sum())
    write_marker(options, NAME)
    return counts
