"""RunReport's executor: reads the run's artifacts, classifies the held-out split once, and
writes `report.html` into its output artifact.

The I/O lives here; the numbers come from `report_data` and the page from `report_page`.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from typing import Any

import numpy as np
import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.image_example_gen.report import GROUPED_PHOTOS_FILE, REPORT_FILE
from components.run_report import report_data, report_page
from models import confusion, features

logger = logging.getLogger(__name__)

EXAMPLES_KEY = "examples"
STATISTICS_KEY = "statistics"
MODEL_KEY = "model"
MODEL_RUN_KEY = "model_run"
FINE_TUNE_RUN_KEY = "fine_tune_run"
EVALUATION_KEY = "evaluation"
REPORT_KEY = "report"
SPLIT_KEY = "split"
MAX_MISCLASSIFIED_KEY = "max_misclassified"
REPORT_HTML = "report.html"
TFMA_CONFUSION_MATRIX_PLOT = "multi_class_confusion_matrix_plot"
PREDICT_BATCH_SIZE = 32


def read_conversion_report(examples_uri: str) -> dict:
    path = os.path.join(examples_uri, REPORT_FILE)
    if not tf.io.gfile.exists(path):
        # Examples from another ExampleGen: the page still shows training and results.
        return {}
    with tf.io.gfile.GFile(path) as report:
        return json.load(report)


def _read_photos(files: list[str], wanted=None) -> dict[str, bytes]:
    """{file name: encoded photo} of the tf.Examples in gzipped TFRecord `files` whose
    image/filename is in `wanted` (all with None)."""
    feature_spec = {
        features.FILENAME_KEY: tf.io.FixedLenFeature([], tf.string, default_value=b""),
        features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    }
    photos = {}
    if not files or wanted is not None and not wanted:
        return photos
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(PREDICT_BATCH_SIZE)
    for serialized in dataset:
        parsed = tf.io.parse_example(serialized, feature_spec)
        for name, encoded in zip(parsed[features.FILENAME_KEY].numpy(),
                                 parsed[features.IMAGE_KEY].numpy(), strict=True):
            name = name.decode("utf-8", "replace")
            if wanted is None or name in wanted:
                photos[name] = encoded
    return photos


def read_group_photos(examples_uri: str) -> dict[str, bytes]:
    """The thumbnails ImageExampleGen wrote of every photo in a group of copies."""
    path = os.path.join(examples_uri, GROUPED_PHOTOS_FILE)
    return _read_photos([path]) if tf.io.gfile.exists(path) else {}


def read_label_issues(model_uri: str) -> dict | None:
    """The Trainer's label_issues.json beside the model (None from another run_fn)."""
    path = os.path.join(model_uri, features.LABEL_ISSUES_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as issues:
        return json.load(issues)


def read_size_summaries(statistics, splits) -> dict:
    """{split: {feature: NumericSummary}} of the image size features, per split TFDV saw."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    summaries = {}
    for split in splits:
        path = os.path.join(artifact_utils.get_split_uri([statistics], split), "FeatureStats.pb")
        if not tf.io.gfile.exists(path):
            continue
        with tf.io.gfile.GFile(path, "rb") as stats_file:
            stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(stats_file.read())
        found = report_data.numeric_feature_summaries(stats)
        if found:
            summaries[split] = found
    return summaries


def _events(path: str) -> list:
    return list(tf.compat.v1.train.summary_iterator(path))


def read_training_events(model_run_uri: str) -> tuple[dict, list[int]]:
    """(curves, phase starts) from the Keras TensorBoard event files of one Trainer run."""
    events_by_run, first_epochs = {}, []
    for run in report_data.CURVE_RUNS:
        files = sorted(tf.io.gfile.glob(os.path.join(model_run_uri, run, "events.out.tfevents.*")))
        events_by_run[run] = []
        for path in files:
            events = _events(path)
            events_by_run[run].extend(events)
            scalar_steps = [event.step for event in events for value in event.summary.value
                            if value.tag in report_data.CURVE_TAGS]
            if run == "validation" and scalar_steps:
                first_epochs.append(min(scalar_steps))
    return report_data.training_curves(events_by_run), report_data.phase_starts(first_epochs)


def tfma_confusion_matrix(evaluation_uri: str, num_classes: int) -> np.ndarray | None:
    """The overall slice's MultiClassConfusionMatrixPlot of a TFMA output, if it has one."""
    import tensorflow_model_analysis as tfma

    for record in tfma.load_plots(evaluation_uri):
        if tfma.slicer.deserialize_slice_key(record.slice_key):
            continue  # a per-class slice
        for key_and_value in record.plot_keys_and_values:
            if (key_and_value.key.name == TFMA_CONFUSION_MATRIX_PLOT
                    and key_and_value.value.HasField("multi_class_confusion_matrix_at_thresholds")):
                return report_data.confusion_matrix_from_tfma(
                    key_and_value.value.multi_class_confusion_matrix_at_thresholds, num_classes)
    return None


def split_files(examples, split: str) -> list[str]:
    return sorted(tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split),
                                                "*")))


def classify_split(model_uri: str, files: list[str], num_classes: int, max_mistakes: int):
    """Runs the model's serving_examples signature over raw tf.Example files once:
    (confusion matrix, the most confident mistakes)."""
    classify = tf.saved_model.load(path_utils.serving_model_path(model_uri)).signatures[
        features.SERVING_EXAMPLES_SIGNATURE]
    feature_spec = {
        features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
        features.FILENAME_KEY: tf.io.FixedLenFeature([], tf.string, default_value=b""),
        features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    }
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    mistakes = report_data.WorstMistakes(max_mistakes)
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(PREDICT_BATCH_SIZE)
    for serialized in dataset:
        scores = classify(
            **{features.SERVING_EXAMPLES_INPUT_KEY: serialized})[features.SCORES_KEY].numpy()
        parsed = tf.io.parse_example(serialized, feature_spec)
        labels = parsed[features.LABEL_KEY].numpy()
        predicted = scores.argmax(axis=-1)
        matrix += confusion.confusion_matrix(labels, predicted, num_classes)
        for index in np.flatnonzero(predicted != labels):
            mistakes.add(report_data.Mistake(
                score=float(scores[index, predicted[index]]),
                filename=parsed[features.FILENAME_KEY][index].numpy().decode("utf-8", "replace"),
                true_label=int(labels[index]), predicted_label=int(predicted[index]),
                encoded=parsed[features.IMAGE_KEY][index].numpy(),
            ))
    return matrix, mistakes


def _single(input_dict, key):
    artifacts = input_dict.get(key) or []
    return artifact_utils.get_single_instance(artifacts) if artifacts else None


class Executor(base_executor.BaseExecutor):
    """Writes the run report (see components/run_report/component.py)."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list],
           exec_properties: dict[str, Any]) -> None:
        started = time.time()
        examples = _single(input_dict, EXAMPLES_KEY)
        statistics = _single(input_dict, STATISTICS_KEY)
        model = _single(input_dict, MODEL_KEY)
        model_run = _single(input_dict, MODEL_RUN_KEY)
        evaluation = _single(input_dict, EVALUATION_KEY)
        report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        split = exec_properties[SPLIT_KEY]
        max_mistakes = int(exec_properties.get(MAX_MISCLASSIFIED_KEY) or 0)

        conversion_report = read_conversion_report(examples.uri)
        class_names = list(conversion_report.get("class_names")
                           or json.loads(examples.get_string_custom_property("class_names")))
        splits = report_data.ordered_splits(artifact_utils.decode_split_names(
            examples.split_names))
        fine_tune_run = _single(input_dict, FINE_TUNE_RUN_KEY)
        notes = []
        curves, phase_starts = read_training_events((fine_tune_run or model_run).uri)
        if fine_tune_run is not None:
            notes.append("The training curves are the FineTuner's (a warm-up head, then "
                         "fine-tuning); the final head's are in TensorBoard.")
        label_issues = read_label_issues(model.uri)
        shown = (label_issues or {}).get("suspects", [])[:report_page.MAX_SUSPECTS_SHOWN]
        # The suspects are train and eval photos (the Trainer's): read from those splits.
        suspect_splits = sorted({suspect["split"] for suspect in shown} & set(splits))
        suspect_photos = _read_photos(
            [path for name in suspect_splits for path in split_files(examples, name)],
            {suspect["file"] for suspect in shown})
        files = split_files(examples, split) if split in splits else []
        matrix, mistakes, source = None, report_data.WorstMistakes(0), ""
        if files:
            matrix, mistakes = classify_split(model.uri, files, len(class_names), max_mistakes)
            source = "the model's serving_examples signature, run by RunReport"
            if matrix.sum() == 0:
                matrix = None
        if evaluation is not None and matrix is not None:
            tfma_matrix = tfma_confusion_matrix(evaluation.uri, len(class_names))
            if tfma_matrix is not None:
                if not np.array_equal(tfma_matrix, matrix):
                    notes.append("The TestEvaluator's confusion matrix differs from the "
                                 "report's own predictions; the TestEvaluator's is shown.")
                matrix, source = tfma_matrix, "the TestEvaluator's TFMA confusion matrix"
        if split != report_data.SPLIT_ORDER[-1]:
            notes.append(f"No held-out test split (--testing-percentage 0): results are on the "
                         f"{split} split, which picked the model, so they are optimistic.")
        content = report_page.ReportContent(
            run_id=self._context.pipeline_run_id if self._context else "",
            generated_at=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            class_names=class_names,
            splits=splits,
            conversion_report=conversion_report,
            conversion_report_path=os.path.join(examples.uri, REPORT_FILE),
            model_uri=model.uri,
            size_summaries=read_size_summaries(statistics, splits) if statistics else {},
            curves=curves,
            phase_starts=phase_starts,
            tensorboard_command=_tensorboard_command(model_run.uri),
            results_split=split,
            results_source=source,
            matrix=matrix,
            mistakes=mistakes.most_confident_first(),
            total_mistakes=mistakes.total,
            notes=notes,
            group_photos=read_group_photos(examples.uri),
            label_issues=label_issues,
            label_issues_path=os.path.join(model.uri, features.LABEL_ISSUES_FILE),
            suspect_photos=suspect_photos,
        )
        path = os.path.join(report.uri, REPORT_HTML)
        with tf.io.gfile.GFile(path, "w") as page:
            page.write(report_page.build_page(content))
        report.set_string_custom_property("report_html", path)
        logger.info("RunReport: wrote %s in %.1f s", path, time.time() - started)


def _tensorboard_command(model_run_uri: str) -> str:
    """`python -m tools.tensorboard` for the pipeline root that holds this ModelRun."""
    # <pipeline-root>/artifacts/Trainer/model_run/<execution id>
    parts = os.path.normpath(model_run_uri).split(os.sep)
    if len(parts) >= 5 and parts[-4:-1] == ["artifacts", "Trainer", "model_run"]:
        return f"python -m tools.tensorboard --pipeline-root {os.sep.join(parts[:-4])}"
    return f"tensorboard --logdir {model_run_uri}"
