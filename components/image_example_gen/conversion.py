"""ImageExampleGen's Beam job: the listed photos to serialized tf.Examples by split.

One tf.Example per image (encoded RGB JPEG, integer label, label name, file name, size), in
train / eval / test splits chosen by retrain.py's stable hash of the file name. Unreadable
files become 'skipped' records, never failures; copies of one photo, byte-identical or near (a
perceptual hash within `near_duplicate_distance` bits: all copies go to the split of the
oldest, near_duplicates.py), and label conflicts (copies in two classes: no copy is kept) become
report records. Those records, the counts per split and class, and the thumbnails of every
grouped photo are written beside the splits, where report.write_report gathers them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any

import apache_beam as beam
import tensorflow as tf

from components.image_example_gen import images, near_duplicates, report, scan
from models import features

logger = logging.getLogger(__name__)
_DROP = near_duplicates.DROP
_PROGRESS_EVERY = 250


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_example(
    image: images.NormalizedImage, label: int, label_name: str, file_name: str
) -> tf.train.Example:
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                features.IMAGE_KEY: _bytes_feature(image.encoded),
                features.LABEL_KEY: _int_feature(label),
                features.LABEL_NAME_KEY: _bytes_feature(label_name.encode("utf-8")),
                features.FILENAME_KEY: _bytes_feature(file_name.encode("utf-8")),
                features.HEIGHT_KEY: _int_feature(image.height),
                features.WIDTH_KEY: _int_feature(image.width),
            }
        )
    )


def _fingerprint(photo: scan.Photo, data_dir: str, max_distance: int):
    """The Fingerprint of one file (its perceptual hash only when grouping is on); nothing for
    a file that cannot be read, which the conversion reports."""
    try:
        raw = images.read_image_file(os.path.join(data_dir, photo.path), photo)
    except images.UnreadableImageError:
        return
    phash = ""
    if max_distance > 0:
        try:
            phash = images.perceptual_hash(raw)
        except images.UnreadableImageError:
            pass  # grouped by its bytes alone; the conversion says why it is skipped
    yield near_duplicates.Fingerprint(photo.path, images.class_of(photo.path), photo.mtime_ns,
                                      images.content_hash(raw), phash)


class _GroupCopies(beam.PTransform):
    """Photos -> ("override", (path, split)) and report records of their copies.

    Only the fingerprints (hashes and a path, no pixels) are gathered in one place: linking
    near copies compares every pair, which needs them all (2,436 photos: 0.5 s here).
    """

    def __init__(self, data_dir: str, settings: dict[str, Any]):
        super().__init__()
        self._data_dir, self._settings = data_dir, settings

    def expand(self, photos):
        settings = self._settings
        return (
            photos
            | "Fingerprint"
            >> beam.FlatMap(_fingerprint, self._data_dir, settings["near_duplicate_distance"])
            | "AllFingerprints" >> beam.combiners.ToList()
            | "Resolve"
            >> beam.FlatMap(
                near_duplicates.resolve, settings["near_duplicate_distance"],
                settings["testing_percentage"], settings["validation_percentage"],
            )
        )


class _ImageToExampleFn(beam.DoFn):
    """Reads one image file; emits (split, class, serialized tf.Example) or a 'skipped' record.

    `overrides` (path -> split) keeps the copies of a photo in one split and drops label
    conflicts. It is a side input computed before any photo is converted, so the examples stream
    to the writer instead of waiting, all in memory, for the duplicate check. A photo in it
    also gets a thumbnail (a serialized tf.Example) in the THUMBNAILS output.
    """

    SKIPPED = "skipped"
    THUMBNAILS = "thumbnails"

    def __init__(self, data_dir, class_names, testing_percentage, validation_percentage, total):
        self._data_dir = data_dir
        self._labels = {name: index for index, name in enumerate(class_names)}
        self._testing_percentage = testing_percentage
        self._validation_percentage = validation_percentage
        self._total = total
        self._converted = beam.metrics.Metrics.counter("ImageExampleGen", "images_converted")
        self._skipped = beam.metrics.Metrics.counter("ImageExampleGen", "images_skipped")

    def setup(self):
        self._seen = 0
        self._started = None

    def process(self, photo: scan.Photo, overrides: dict[str, str]):
        relative_path = photo.path
        class_name = images.class_of(relative_path)
        # From the first photo, not from setup: the duplicate check runs in between.
        self._started = self._started or time.time()
        self._seen += 1
        if self._seen % _PROGRESS_EVERY == 0:
            rate = self._seen / max(time.time() - self._started, 1e-6)
            logger.info(
                "ImageExampleGen: read %d of %d images (%.0f/s in this worker)",
                self._seen, self._total, rate,
            )
        split = overrides.get(relative_path)
        if split is None:
            split = images.which_split(
                relative_path, self._testing_percentage, self._validation_percentage
            )
        try:
            raw = images.read_image_file(os.path.join(self._data_dir, relative_path), photo)
            image = images.normalize_image(raw)
        except images.UnreadableImageError as error:  # read_image_file turns OSError into it
            self._skipped.inc()
            yield beam.pvalue.TaggedOutput(
                self.SKIPPED, json.dumps({"file": relative_path, "reason": str(error)})
            )
            return
        if relative_path in overrides:
            yield beam.pvalue.TaggedOutput(self.THUMBNAILS, thumbnail_example(image, relative_path))
        if split == _DROP:
            return
        self._converted.inc()
        example = make_example(image, self._labels[class_name], class_name, relative_path)
        yield split, class_name, example.SerializeToString()


def thumbnail_example(image: images.NormalizedImage, relative_path: str) -> bytes:
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                features.FILENAME_KEY: _bytes_feature(relative_path.encode("utf-8")),
                features.IMAGE_KEY: _bytes_feature(images.thumbnail_jpeg(image.encoded)),
            }
        )
    ).SerializeToString()


def mixed_order(photos: list[scan.Photo]) -> list[scan.Photo]:
    """The photos in a fixed order that mixes the classes (by a hash of each path)."""
    return sorted(photos, key=lambda photo: hashlib.sha1(photo.path.encode("utf-8")).digest())


def _split_index(record, num_splits: int, split_names: list[str]) -> int:
    return split_names.index(record[0])



def convert_photos(
    pipeline: beam.Pipeline, data_dir: str, photos: list[scan.Photo], settings: dict[str, Any],
    report_dir: str,
) -> dict[str, beam.pvalue.PCollection]:
    """The serialized tf.Examples of each split (images.SPLITS), the report's side outputs
    written under `report_dir` on the way. `settings`: the executor's conversion settings."""
    split_names = list(images.SPLITS)
    paths = (
        pipeline
        # In the hash order of the paths, not class by class: the written files mix the
        # classes, so that a reader's shuffle buffer smaller than the data still mixes them.
        | "ListImages" >> beam.Create(mixed_order(photos))
        # Spreads the file reads over the workers instead of one bundle.
        | "Reshuffle" >> beam.Reshuffle()
    )
    copies = paths | "GroupCopies" >> _GroupCopies(data_dir, settings)
    overrides = copies | "Overrides" >> beam.FlatMap(
        lambda record: [record[1]] if record[0] == "override" else []
    )
    for kind, prefix in (
        ("duplicate", report.DUPLICATES_PREFIX), ("near_duplicate", report.NEAR_DUPLICATES_PREFIX),
        ("conflict", report.CONFLICTS_PREFIX),
    ):
        (
            copies
            | f"Select[{kind}]"
            >> beam.FlatMap(lambda record, k=kind: [record[1]] if record[0] == k else [])
            | f"Format[{kind}]" >> beam.Map(json.dumps)
            | f"Write[{kind}]"
            >> beam.io.WriteToText(os.path.join(report_dir, prefix), shard_name_template="")
        )
    results = paths | "ReadAndConvert" >> beam.ParDo(
        _ImageToExampleFn(
            data_dir,
            settings["class_names"],
            settings["testing_percentage"],
            settings["validation_percentage"],
            len(photos),
        ),
        overrides=beam.pvalue.AsDict(overrides),
    ).with_outputs(_ImageToExampleFn.SKIPPED, _ImageToExampleFn.THUMBNAILS, main="examples")
    examples = results.examples
    (
        results[_ImageToExampleFn.THUMBNAILS]
        | "WriteThumbnails"
        >> beam.io.WriteToTFRecord(
            os.path.join(report_dir, report.GROUPED_PHOTOS_FILE), shard_name_template=""
        )
    )
    (
        results[_ImageToExampleFn.SKIPPED]
        | "WriteSkipped"
        >> beam.io.WriteToText(
            os.path.join(report_dir, report.SKIPPED_PREFIX), shard_name_template=""
        )
    )
    (
        examples
        | "KeyBySplitAndClass" >> beam.Map(lambda record: ((record[0], record[1]), 1))
        | "Count" >> beam.CombinePerKey(sum)
        | "FormatCounts" >> beam.Map(lambda item: json.dumps([item[0][0], item[0][1], item[1]]))
        | "WriteCounts"
        >> beam.io.WriteToText(
            os.path.join(report_dir, report.COUNTS_PREFIX), shard_name_template=""
        )
    )
    partitions = examples | "SplitByFileNameHash" >> beam.Partition(
        _split_index, len(split_names), split_names
    )
    return {
        name: partitions[index] | f"Serialize[{name}]" >> beam.Map(lambda record: record[2])
        for index, name in enumerate(split_names)
    }
