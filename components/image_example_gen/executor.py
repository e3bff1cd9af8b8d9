"""ImageExampleGen's executor: a Beam job from a folder of images to tf.Example TFRecords.

One tf.Example per image (encoded RGB JPEG, integer label, label name, file name, size), in
train / eval / test splits chosen by retrain.py's stable hash of the file name. The files are
those of images.list_photos, the listing the driver fingerprinted. Unreadable files are skipped
and listed in `conversion_report.json` beside the splits, never fatal; so are the entries passed
over (hidden, not an image), copies of one photo, byte-identical or near (a perceptual hash
within `near_duplicate_distance` bits: all copies go to the split of the oldest,
near_duplicates.py) and label conflicts (copies in two classes: no copy is kept). Thumbnails of
every grouped photo go to `grouped_photos.tfrecord.gz` beside it, for the run report.
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
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from components.image_example_gen import images, near_duplicates
from models import features
from pipeline import config as config_lib

logger = logging.getLogger(__name__)
REPORT_FILE = "conversion_report.json"
# tf.Examples (image/filename, image/encoded: a small JPEG) of the photos of every group.
GROUPED_PHOTOS_FILE = "grouped_photos.tfrecord.gz"
_SKIPPED_PREFIX = "_skipped"
_COUNTS_PREFIX = "_counts"
_DUPLICATES_PREFIX = "_duplicates"
_NEAR_DUPLICATES_PREFIX = "_near_duplicates"
_CONFLICTS_PREFIX = "_conflicts"
_DROP = near_duplicates.DROP
_PROGRESS_EVERY = 250
# Largest class / smallest class above which the run warns (the flowers are at 1.4x).
DEFAULT_MAX_CLASS_IMBALANCE = 3.0


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
                "image/height": _int_feature(image.height),
                "image/width": _int_feature(image.width),
            }
        )
    )


def _fingerprint(photo: images.Photo, data_dir: str, max_distance: int):
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

    def process(self, photo: images.Photo, overrides: dict[str, str]):
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


def mixed_order(photos: list[images.Photo]) -> list[images.Photo]:
    """The photos in a fixed order that mixes the classes (by a hash of each path)."""
    return sorted(photos, key=lambda photo: hashlib.sha1(photo.path.encode("utf-8")).digest())


def _check_unchanged_since_fingerprint(
    data_dir: str, listing: images.ClassFiles, exec_properties: dict[str, Any]
) -> None:
    """Stops when the folder changed between the driver's fingerprint and this listing.

    Going on would file these examples in TFX's cache under a fingerprint of other photos.
    A fingerprint not made by our driver (Kubeflow V2 runs TFX's own) cannot be compared.
    """
    recorded = exec_properties.get(example_gen_utils.FINGERPRINT_PROPERTY_NAME) or ""
    if images.FINGERPRINT_MARK not in recorded:
        return
    if images.folder_fingerprint(listing.photos) != recorded:
        raise images.DataDirError(
            f"image folder {images.one_line(data_dir)} changed between its fingerprint and the "
            "conversion (a photo was added, removed or edited meanwhile); run the same command "
            "again once nothing writes to it"
        )


def _split_index(record, num_splits: int, split_names: list[str]) -> int:
    return split_names.index(record[0])


class Executor(BaseExampleGenExecutor):
    """Converts the images under `input_base` in one Beam pass, with retrain.py's split."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        # Unused: GenerateExamplesByBeam reads every image once and splits it itself.
        raise NotImplementedError

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.pvalue.PCollection]:
        data_dir = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        settings = _conversion_settings(exec_properties)
        class_names = list(settings["class_names"])
        listing = images.list_photos(data_dir, class_names)
        _check_unchanged_since_fingerprint(data_dir, listing, exec_properties)
        photos = listing.photos
        self._listing = listing
        logger.info(
            "ImageExampleGen: converting %d images of %d classes from %s",
            len(photos), len(class_names), data_dir,
        )
        split_names = list(images.SPLITS)
        report_dir = self._report_dir
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
            ("duplicate", _DUPLICATES_PREFIX), ("near_duplicate", _NEAR_DUPLICATES_PREFIX),
            ("conflict", _CONFLICTS_PREFIX),
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
                class_names,
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
                os.path.join(report_dir, GROUPED_PHOTOS_FILE), shard_name_template=""
            )
        )
        (
            results[_ImageToExampleFn.SKIPPED]
            | "WriteSkipped"
            >> beam.io.WriteToText(
                os.path.join(report_dir, _SKIPPED_PREFIX), shard_name_template=""
            )
        )
        (
            examples
            | "KeyBySplitAndClass" >> beam.Map(lambda record: ((record[0], record[1]), 1))
            | "Count" >> beam.CombinePerKey(sum)
            | "FormatCounts" >> beam.Map(lambda item: json.dumps([item[0][0], item[0][1], item[1]]))
            | "WriteCounts"
            >> beam.io.WriteToText(os.path.join(report_dir, _COUNTS_PREFIX), shard_name_template="")
        )
        partitions = examples | "SplitByFileNameHash" >> beam.Partition(
            _split_index, len(split_names), split_names
        )
        return {
            name: partitions[index] | f"Serialize[{name}]" >> beam.Map(lambda record: record[2])
            for index, name in enumerate(split_names)
        }

    def _write_examples(self, examples, exec_properties: dict[str, Any]) -> None:
        """BaseExampleGenExecutor.Do without its Reshuffle before each write.

        On the DirectRunner a Reshuffle holds every serialized photo in memory at once (about
        580 MB per 2,436 photos); the paths were already mixed and spread before the reading.
        """
        examples.split_names = artifact_utils.encode_split_names(list(images.SPLITS))
        with self._make_beam_pipeline() as pipeline:
            for name, records in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                (
                    records
                    | f"WriteSplit[{name}]"
                    >> beam.io.WriteToTFRecord(
                        os.path.join(
                            artifact_utils.get_split_uri([examples], name),
                            write_split.DEFAULT_FILE_NAME,
                        ),
                        file_name_suffix=".gz",
                    )
                )
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP)
        )

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY]
        )
        self._report_dir = examples.uri
        self._write_examples(examples, exec_properties)
        settings = _conversion_settings(exec_properties)
        report = _write_report(examples.uri, settings["class_names"], self._listing, settings)
        examples.set_int_custom_property("num_images", report["num_images"])
        examples.set_string_custom_property(
            "class_imbalance_ratio", f"{report['class_balance']['ratio']:.2f}"
        )
        examples.set_int_custom_property("num_skipped", len(report["skipped"]))
        for name, value in copy_counts(report).items():
            examples.set_int_custom_property(name, value)
        examples.set_string_custom_property("class_names", json.dumps(report["class_names"]))


def _conversion_settings(exec_properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "class_names": json.loads(exec_properties["class_names"]),
        "testing_percentage": int(exec_properties["testing_percentage"]),
        "validation_percentage": int(exec_properties["validation_percentage"]),
        "max_class_imbalance": float(
            exec_properties.get("max_class_imbalance") or DEFAULT_MAX_CLASS_IMBALANCE
        ),
        # Absent (an older component spec): the default; 0 groups byte-identical files only.
        "near_duplicate_distance": int(
            config_lib.DEFAULT_NEAR_DUPLICATE_DISTANCE
            if exec_properties.get("near_duplicate_distance") is None
            else exec_properties["near_duplicate_distance"]
        ),
    }


def copy_counts(report: dict[str, Any]) -> dict[str, int]:
    """The Examples artifact's counts of copies (custom properties in ML Metadata)."""
    return {
        "num_duplicate_groups": len(report["duplicates"]),
        "num_near_duplicate_groups": len(report["near_duplicates"]),
        "num_near_duplicate_photos": sum(len(item["files"]) for item in report["near_duplicates"]),
        "num_label_conflicts": len(report["label_conflicts"]),
    }


def copies_message(report: dict[str, Any]) -> str:
    """One line for the log and the run summary: the copies found and what became of them."""
    counts = copy_counts(report)
    return (
        f"{counts['num_near_duplicate_groups']} groups of near-duplicates "
        f"({counts['num_near_duplicate_photos']} photos) and {counts['num_duplicate_groups']} of "
        f"identical files, each kept in one split; {counts['num_label_conflicts']} label "
        "conflicts (copies in two classes) left out"
    )


def class_balance(
    counts: dict[str, dict[str, int]], max_ratio: float, splits=images.SPLITS
) -> dict[str, Any]:
    """How uneven the classes are: largest / smallest class, and the classes each of `splits`
    (those that should hold photos) lacks."""
    totals = {name: sum(by_split.values()) for name, by_split in counts.items()}
    largest = max(totals, key=lambda name: (totals[name], name))
    smallest = min(totals, key=lambda name: (totals[name], name))
    ratio = totals[largest] / totals[smallest] if totals[smallest] else float("inf")
    return {
        "ratio": round(ratio, 2),
        "max_ratio": max_ratio,
        "imbalanced": ratio > max_ratio,
        "largest": {"class": largest, "images": totals[largest]},
        "smallest": {"class": smallest, "images": totals[smallest]},
        "missing_from_splits": {
            split: [name for name in counts if totals[name] and not counts[name].get(split)]
            for split in splits
            if any(totals[name] and not counts[name].get(split) for name in counts)
        },
    }


def imbalance_message(balance: dict[str, Any]) -> str:
    """One line for the log and the run summary when the classes are too uneven."""
    return (
        f"class imbalance {balance['ratio']:g}x is over {balance['max_ratio']:g}x: "
        f"{balance['largest']['class']} has {balance['largest']['images']} images, "
        f"{balance['smallest']['class']} {balance['smallest']['images']}; add photos to the "
        "small classes (training weights the classes to compensate)"
    )


def _expected_splits(settings: dict[str, Any]) -> list[str]:
    """The splits that get photos: a 0 % test split is meant to be empty."""
    return [images.TRAIN, images.EVAL] + ([images.TEST] if settings["testing_percentage"] else [])


def _check_splits(counts: dict[str, dict[str, int]], settings: dict[str, Any]) -> None:
    """Stops when a whole split is empty: evaluation or training would have nothing."""
    flags = {
        images.TRAIN: "",
        images.EVAL: "--validation-percentage",
        images.TEST: "--testing-percentage",
    }
    percentages = {
        images.TRAIN: 100 - settings["testing_percentage"] - settings["validation_percentage"],
        images.EVAL: settings["validation_percentage"],
        images.TEST: settings["testing_percentage"],
    }
    num_images = sum(sum(by_split.values()) for by_split in counts.values())
    for split in images.SPLITS:
        if percentages[split] and not any(by_split.get(split) for by_split in counts.values()):
            fix = "add photos" + (f" or change {flags[split]}" if flags[split] else "")
            if split == images.TEST:
                fix += " (0 skips the test split)"
            raise images.DataDirError(
                f"the {split} split is empty: {num_images} photos are too few for "
                f"{percentages[split]}% of them to land there by retrain.py's hash; {fix}"
            )


def _read_json_lines(path: str) -> list:
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _write_report(
    uri: str, class_names: list[str], listing: images.ClassFiles, settings: dict[str, Any]
) -> dict:
    """Gathers the Beam side outputs into one JSON report and checks every class kept photos.

    Skipped are the entries the listing could not use (broken links, FIFOs...) and the photos
    the conversion could not read.
    """
    skipped_path = os.path.join(uri, _SKIPPED_PREFIX)
    counts_path = os.path.join(uri, _COUNTS_PREFIX)
    skipped = sorted(
        listing.skipped + _read_json_lines(skipped_path), key=lambda item: item["file"]
    )
    ignored = listing.ignored
    duplicates_path = os.path.join(uri, _DUPLICATES_PREFIX)
    near_duplicates_path = os.path.join(uri, _NEAR_DUPLICATES_PREFIX)
    conflicts_path = os.path.join(uri, _CONFLICTS_PREFIX)
    duplicates = sorted(_read_json_lines(duplicates_path), key=lambda item: item["files"])
    near = sorted(_read_json_lines(near_duplicates_path), key=lambda item: item["files"])
    conflicts = sorted(_read_json_lines(conflicts_path), key=lambda item: item["files"])
    counts: dict[str, dict[str, int]] = {name: {} for name in class_names}
    for split, class_name, count in _read_json_lines(counts_path):
        counts[class_name][split] = count
    report = {
        "class_names": list(class_names),
        "num_images": sum(sum(by_split.values()) for by_split in counts.values()),
        "counts": counts,
        "skipped": skipped,
        "ignored": ignored,
        "near_duplicate_distance": settings["near_duplicate_distance"],
        "duplicates": duplicates,
        "near_duplicates": near,
        "label_conflicts": conflicts,
    }
    if all(counts.values()):
        report["class_balance"] = class_balance(
            counts, settings["max_class_imbalance"], _expected_splits(settings)
        )
    with tf.io.gfile.GFile(os.path.join(uri, REPORT_FILE), "w") as report_file:
        json.dump(report, report_file, indent=2)
    for path in (skipped_path, counts_path, duplicates_path, near_duplicates_path,
                 conflicts_path):
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    logger.info(
        "ImageExampleGen: wrote %d examples; skipped %d unreadable files (listed in %s)",
        report["num_images"], len(skipped), os.path.join(uri, REPORT_FILE),
    )
    for item in skipped:
        # one_line: a file name may hold a line break, and each log record stays one line.
        logger.warning(
            "ImageExampleGen: skipped %s: %s", images.one_line(item["file"]), item["reason"]
        )
    if ignored:
        logger.info(
            "ImageExampleGen: ignored %d files that are hidden or not images (listed in %s)",
            len(ignored), REPORT_FILE,
        )
    for kind, items in (("identical files", duplicates), ("near-duplicates", near)):
        for item in items:
            logger.info(
                "ImageExampleGen: %s kept together in %s (the split of the oldest, %s): %s",
                kind, item["split"], images.one_line(item["oldest"]),
                ", ".join(map(images.one_line, item["files"])),
            )
    for item in conflicts:
        logger.warning(
            "ImageExampleGen: the same photo%s is in classes %s (%s); left out of every split: "
            "keep it in one class folder only",
            "" if item["identical"] else " (near-duplicates)", " and ".join(item["classes"]),
            ", ".join(map(images.one_line, item["files"])),
        )
    logger.info("ImageExampleGen: %s (%s)", copies_message(report), REPORT_FILE)
    no_photos = [name for name in class_names if not counts[name]]
    if no_photos:
        raise images.DataDirError(
            f"class {no_photos[0]!r} has no readable images (see {REPORT_FILE}); "
            "replace its files with JPEG/PNG/GIF/BMP/WebP/TIFF photos or remove the folder"
        )
    _check_splits(counts, settings)
    balance = report["class_balance"]
    if balance["imbalanced"]:
        logger.warning("ImageExampleGen: %s", imbalance_message(balance))
    for split, names in balance["missing_from_splits"].items():
        logger.warning(
            "ImageExampleGen: no %s photo of class %s: too few photos for every split to have "
            "some; add photos to %s", split, ", ".join(names), " and ".join(names),
        )
    return report
