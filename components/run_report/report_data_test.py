"""Tests of the run report's pure helpers, on hand-made protos and arrays."""

import math

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2
from tensorflow_model_analysis.proto import metrics_for_slice_pb2

from components.run_report import report_data
from components.run_report.report_data import Mistake


def test_ordered_splits_puts_the_pipeline_splits_first():
    assert report_data.ordered_splits(["test", "extra", "train", "eval"]) == [
        "train", "eval", "test", "extra"]


def test_class_counts_table_fills_missing_splits_with_zero():
    report = {"class_names": ["ant", "bee"],
              "counts": {"ant": {"train": 5, "test": 1}, "bee": {"train": 2, "eval": 1}}}
    assert report_data.class_counts_table(report, ["train", "eval", "test"]) == [
        ("ant", [5, 0, 1], 6), ("bee", [2, 1, 0], 3)]


def _numeric_feature(dataset, name, values):
    feature = dataset.features.add()
    feature.path.step.append(name)
    stats = feature.num_stats
    stats.common_stats.num_non_missing = len(values)
    stats.min, stats.max = min(values), max(values)
    stats.mean, stats.median = float(np.mean(values)), float(np.median(values))
    quantiles = stats.histograms.add(type=statistics_pb2.Histogram.QUANTILES)
    quantiles.buckets.add(low_value=0, high_value=1, sample_count=99)
    standard = stats.histograms.add()  # STANDARD is the default type
    standard.buckets.add(low_value=min(values), high_value=max(values), sample_count=len(values))


def test_numeric_feature_summaries_reads_the_standard_histogram():
    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = statistics.datasets.add(num_examples=3)
    _numeric_feature(dataset, "image/height", [240, 320, 480])
    _numeric_feature(dataset, "image/width", [320, 320, 640])
    _numeric_feature(dataset, "image/class/label", [0, 1, 2])
    summaries = report_data.numeric_feature_summaries(statistics)
    assert set(summaries) == {"image/height", "image/width"}
    height = summaries["image/height"]
    assert (height.count, height.minimum, height.median, height.maximum) == (3, 240, 320, 480)
    assert height.buckets == ((240, 480, 3),)


def test_merge_buckets_adds_equal_buckets():
    merged = report_data.merge_buckets([[(48, 48, 6)], [(48, 48, 2), (50, 60, 1)]])
    assert merged == ((48, 48, 8), (50, 60, 1))


def _scalar_event(step, tag, value, as_tensor=True):
    summary_value = summary_pb2.Summary.Value(tag=tag)
    if as_tensor:
        summary_value.tensor.CopyFrom(tensor_pb2.TensorProto(dtype=1, float_val=[value]))
    else:
        summary_value.simple_value = value
    return event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[summary_value]))


def test_training_curves_reads_tensor_and_simple_values_and_keeps_the_last_per_epoch():
    events = {
        "train": [_scalar_event(0, "epoch_loss", 1.0), _scalar_event(1, "epoch_loss", 0.5),
                  _scalar_event(1, "epoch_loss", 0.4), _scalar_event(0, "other", 9.0)],
        "validation": [_scalar_event(0, "epoch_accuracy", 0.75, as_tensor=False)],
    }
    curves = report_data.training_curves(events)
    assert curves["loss"] == {"train": [(0, 1.0), (1, pytest.approx(0.4))]}
    assert curves["accuracy"] == {"validation": [(0, 0.75)]}


def test_phase_starts_are_the_first_epochs_of_later_files():
    assert report_data.phase_starts([12, 0]) == [12]
    assert report_data.phase_starts([0]) == []


def test_confusion_matrix_from_tfma_takes_the_lowest_threshold():
    plot = metrics_for_slice_pb2.MultiClassConfusionMatrixAtThresholds()
    high = plot.matrices.add(threshold=0.5)
    high.entries.add(actual_class_id=0, predicted_class_id=-1, num_weighted_examples=2)
    at_zero = plot.matrices.add(threshold=0.0)
    at_zero.entries.add(actual_class_id=0, predicted_class_id=0, num_weighted_examples=2)
    at_zero.entries.add(actual_class_id=1, predicted_class_id=0, num_weighted_examples=1)
    np.testing.assert_array_equal(
        report_data.confusion_matrix_from_tfma(plot, 2), [[2, 0], [1, 0]])


def test_precision_and_recall_are_nan_without_a_denominator():
    precision, recall = report_data.precision_and_recall(np.array([[2, 0, 0], [1, 1, 0],
                                                                   [0, 0, 0]]))
    assert precision[:2] == [pytest.approx(2 / 3), 1.0] and math.isnan(precision[2])
    assert recall[:2] == [1.0, 0.5] and math.isnan(recall[2])


def test_worst_mistakes_keeps_the_most_confident_in_bounded_memory():
    worst = report_data.WorstMistakes(limit=2)
    for index, score in enumerate([0.4, 0.9, 0.6, 0.95, 0.5]):
        worst.add(Mistake(score, f"photo_{index}.jpg", 0, 1))
    assert worst.total == 5
    assert [mistake.filename for mistake in worst.most_confident_first()] == [
        "photo_3.jpg", "photo_1.jpg"]
    assert report_data.WorstMistakes(0).most_confident_first() == []


def test_mistake_caption_names_both_labels():
    caption = report_data.mistake_caption(Mistake(0.87, "x.jpg", 0, 1), ["rose", "tulip"])
    assert caption == "true: rose\npredicted: tulip (87%)"
