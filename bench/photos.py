"""The photos of a class-folder data dir as the pipeline sees them: its classes, its hash split,
the bytes ImageExampleGen makes of each photo. No TensorFlow."""

from __future__ import annotations

import collections
import os

from components.image_example_gen import images, scan


def read_encoded(path: str) -> bytes:
    """The bytes label_image sends to a model: upright RGB JPEG, as ImageExampleGen makes."""
    return images.normalize_image(images.read_image_file(path)).encoded


def list_photos(data_dir: str, testing_percentage: int = 10, validation_percentage: int = 10):
    """The class names and [(relative path, class index, split)] of every photo, class by
    class, with ImageExampleGen's hash split of the file name (`which_split`)."""
    class_names = scan.discover_classes(data_dir)
    rows = []
    for index, name in enumerate(class_names):
        for relative in scan.list_class_images(data_dir, name):
            split = images.which_split(relative, testing_percentage, validation_percentage)
            rows.append((relative, index, split))
    return class_names, rows


def split_files(data_dir: str, testing_percentage: int, validation_percentage: int):
    """{split: [(path, label index)]}, the class names and how many files were left out, as
    ImageExampleGen splits them: byte-identical copies in one class go to the split of the
    first copy, and a photo found in two classes is left out."""
    class_names, rows = list_photos(data_dir, testing_percentage, validation_percentage)
    by_content = collections.defaultdict(list)
    for relative, label, _ in rows:
        raw = images.read_image_file(os.path.join(data_dir, relative))
        by_content[images.content_hash(raw)].append((relative, label))
    splits = {split: [] for split in images.SPLITS}
    conflicts = 0
    for copies in by_content.values():
        copies.sort()
        if len({label for _, label in copies}) > 1:
            conflicts += len(copies)  # one photo with two labels: every copy is left out
            continue
        split = images.which_split(copies[0][0], testing_percentage, validation_percentage)
        for relative, label in copies:
            splits[split].append((os.path.join(data_dir, relative), label))
    for files in splits.values():
        files.sort()
    return splits, class_names, conflicts


def count_photos(data_dir: str) -> int:
    """Files with an image name in the class folders (what ImageExampleGen tries to read)."""
    return sum(
        len(scan.list_class_images(data_dir, entry.name))
        for entry in os.scandir(data_dir)
        if entry.is_dir() and not entry.name.startswith(".")
    )
