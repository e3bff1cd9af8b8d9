"""The photos `label_image` classifies: gathering image paths from files and folders, reading
each as the pipeline's ImageExampleGen does, and running a classifier over them in batches
(one file at a time after a failed batch, so only a bad file is skipped)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from components.image_example_gen.images import NOT_AN_IMAGE, is_image_file
from tools.classifiers import Classifier, UsageError

UNDECODABLE_REASON = NOT_AN_IMAGE


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


def find_images_in_folder(folder: Path) -> list[Path]:
    """All image files below ``folder``, recursively, sorted, hidden files and folders skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        # Pruning in place stops os.walk descending into hidden folders (.git, checkpoints).
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, name) for name in filenames if is_image_file(name))
    return sorted(found)


def collect_image_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into the list of images to classify.

    A file named explicitly is taken whatever its extension; folders contribute only
    files with an image extension. Order follows the arguments, duplicates are dropped.
    Raises UsageError for a path that does not exist.
    """
    collected: dict[Path, None] = {}
    for raw_path in paths:
        path = Path(raw_path)
        if path.is_dir():
            collected.update(dict.fromkeys(find_images_in_folder(path)))
        elif path.is_file():
            collected[path] = None
        else:
            raise UsageError(f"image path does not exist: {raw_path}")
    return list(collected)


def top_k_predictions(scores: Sequence[float], classes: Sequence[str], k: int) -> list[Prediction]:
    """The ``k`` best (label, score) pairs, best first; ``k`` is capped at the class count."""
    ranked = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    return [Prediction(classes[i], float(scores[i])) for i in ranked[:k]]


def batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def classify_paths(
    classify: Classifier, paths: Sequence[Path], top_k: int
) -> Iterator[tuple[Path, list[Prediction]] | Skipped]:
    """Yield (path, predictions) for each classified path and a Skipped for each other.

    Runs the whole batch at once for speed; if it fails, retries one file at a time so
    that only the bad file is skipped.
    """
    import tensorflow as tf

    from components.image_example_gen.images import (
        UnreadableImageError,
        normalize_image,
        read_image_file,
    )

    readable: list[tuple[Path, bytes]] = []
    for path in paths:
        try:
            # The same reading and decoding as the pipeline's ImageExampleGen: EXIF rotation
            # applied, CMYK, grayscale and alpha made RGB, which TensorFlow's decoders do not do.
            readable.append((path, normalize_image(read_image_file(str(path))).encoded))
        except UnreadableImageError as error:
            yield Skipped(path, str(error))
    if not readable:
        return

    def run(group: list[tuple[Path, bytes]]) -> list[tuple[Path, list[Prediction]]]:
        scores, classes = classify([data for _, data in group])
        return [
            (path, top_k_predictions(row, classes, top_k))
            for (path, _), row in zip(group, scores, strict=True)
        ]

    if len(readable) > 1:
        try:
            results = run(readable)
        except tf.errors.OpError:
            pass  # Some file in the batch is bad; the per-file pass below finds which.
        else:
            yield from results
            return

    for single in readable:
        try:
            yield from run([single])
        except tf.errors.InvalidArgumentError:
            yield Skipped(single[0], UNDECODABLE_REASON)
        except tf.errors.OpError as error:
            first_line = (error.message.strip().splitlines() or ["unknown error"])[0]
            yield Skipped(single[0], f"model failed: {first_line}")
