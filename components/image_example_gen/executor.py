"""ImageExampleGen's executor: a Beam job from a folder of images to tf.Example TFRecords.

One tf.Example per image (encoded RGB JPEG, integer label, label name, file name, size), in
train / eval / test splits chosen by retrain.py's stable hash of the file name. Unreadable files
are skipped and listed in `conversion_report.json` beside the splits, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.types import artifact_utils, standard_component_specs

from components.image_example_gen import images
from pipeline import config as config_lib

logger = logging.getLogger(__name__)
REPORT_FILE = "conversion_report.json"
_SKIPPED_PREFIX = "_skipped"
_COUNTS_PREFIX = "_counts"
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
                config_lib.IMAGE_KEY: _bytes_feature(image.encoded),
                config_lib.LABEL_KEY: _int_feature(label),
                config_lib.LABEL_NAME_KEY: _bytes_feature(label_name.encode("utf-8")),
                config_lib.FILENAME_KEY: _bytes_feature(file_name.encode("utf-8")),
                "image/height": _int_feature(image.height),
                "image/width": _int_feature(image.width),
            }
        )
    )


class _ImageToExampleFn(beam.DoFn):
    """Reads one image file; emits (split, serialized tf.Example) or a 'skipped' record."""

    SKIPPED = "skipped"

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
        self._started = time.time()

    def process(self, relative_path: str):
        class_name = relative_path.split(os.sep, 1)[0]
        self._seen += 1
        if self._seen % _PROGRESS_EVERY == 0:
            rate = self._seen / max(time.time() - self._started, 1e-6)
            logger.info(
                "ImageExampleGen: read %d of %d images (%.0f/s in this worker)",
                self._seen, self._total, rate,
            )
        try:
            with open(os.path.join(self._data_dir, relative_path), "rb") as image_file:
                raw = image_file.read()
            image = images.normalize_image(raw)
        except (OSError, images.UnreadableImageError) as error:
            self._skipped.inc()
            reason = error.strerror if isinstance(error, OSError) else str(error)
            yield beam.pvalue.TaggedOutput(
                self.SKIPPED, json.dumps({"file": relative_path, "reason": reason})
            )
            return
        self._converted.inc()
        split = images.which_split(
            relative_path, self._testing_percentage, self._validation_percentage
        )
        example = make_example(image, self._labels[class_name], class_name, relative_path)
        yield split, class_name, example.SerializeToString()


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
        relative_paths = [
            path for name in class_names for path in images.list_class_images(data_dir, name)
        ]
        logger.info(
            "ImageExampleGen: converting %d images of %d classes from %s",
            len(relative_paths), len(class_names), data_dir,
        )
        split_names = [images.TRAIN, images.EVAL, images.TEST]
        results = (
            pipeline
            | "ListImages" >> beam.Create(relative_paths)
            # Spreads the file reads over the workers instead of one bundle.
            | "Reshuffle" >> beam.Reshuffle()
            | "ReadAndConvert"
            >> beam.ParDo(
                _ImageToExampleFn(
                    data_dir,
                    class_names,
                    settings["testing_percentage"],
                    settings["validation_percentage"],
                    len(relative_paths),
                )
            ).with_outputs(_ImageToExampleFn.SKIPPED, main="examples")
        )
        report_dir = self._report_dir
        (
            results[_ImageToExampleFn.SKIPPED]
            | "WriteSkipped"
            >> beam.io.WriteToText(
                os.path.join(report_dir, _SKIPPED_PREFIX), shard_name_template=""
            )
        )
        (
            results.examples
            | "KeyBySplitAndClass" >> beam.Map(lambda record: ((record[0], record[1]), 1))
            | "Count" >> beam.CombinePerKey(sum)
            | "FormatCounts" >> beam.Map(lambda item: json.dumps([item[0][0], item[0][1], item[1]]))
            | "WriteCounts"
            >> beam.io.WriteToText(os.path.join(report_dir, _COUNTS_PREFIX), shard_name_template="")
        )
        partitions = results.examples | "SplitByFileNameHash" >> beam.Partition(
            _split_index, len(split_names), split_names
        )
        return {
            name: partitions[index] | f"Serialize[{name}]" >> beam.Map(lambda record: record[2])
            for index, name in enumerate(split_names)
        }

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY]
        )
        self._report_dir = examples.uri
        super().Do(input_dict, output_dict, exec_properties)
        report = _write_report(examples.uri, _conversion_settings(exec_properties)["class_names"])
        examples.set_int_custom_property("num_images", report["num_images"])
        examples.set_int_custom_property("num_skipped", len(report["skipped"]))
        examples.set_string_custom_property("class_names", json.dumps(report["class_names"]))


def _conversion_settings(exec_properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "class_names": json.loads(exec_properties["class_names"]),
        "testing_percentage": int(exec_properties["testing_percentage"]),
        "validation_percentage": int(exec_properties["validation_percentage"]),
    }


def _read_json_lines(path: str) -> list:
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _write_report(uri: str, class_names: list[str]) -> dict:
    """Gathers the Beam side outputs into one JSON report and checks every class kept photos."""
    skipped_path = os.path.join(uri, _SKIPPED_PREFIX)
    counts_path = os.path.join(uri, _COUNTS_PREFIX)
    skipped = sorted(_read_json_lines(skipped_path), key=lambda item: item["file"])
    counts: dict[str, dict[str, int]] = {name: {} for name in class_names}
    for split, class_name, count in _read_json_lines(counts_path):
        counts[class_name][split] = count
    report = {
        "class_names": list(class_names),
        "num_images": sum(sum(by_split.values()) for by_split in counts.values()),
        "counts": counts,
        "skipped": skipped,
    }
    with tf.io.gfile.GFile(os.path.join(uri, REPORT_FILE), "w") as report_file:
        json.dump(report, report_file, indent=2)
    for path in (skipped_path, counts_path):
        tf.io.gfile.remove(path)
    logger.info(
        "ImageExampleGen: wrote %d examples; skipped %d unreadable files (listed in %s)",
        report["num_images"], len(skipped), os.path.join(uri, REPORT_FILE),
    )
    for item in skipped:
        logger.warning("ImageExampleGen: skipped %s: %s", item["file"], item["reason"])
    no_photos = [name for name in class_names if not counts[name]]
    if no_photos:
        raise images.DataDirError(
            f"class {no_photos[0]!r} has no readable images (see {REPORT_FILE}); "
            "replace its files with JPEG/PNG/GIF/BMP photos or remove the folder"
        )
    return report
