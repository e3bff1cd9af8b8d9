"""The numbers recorded on the Trainer's and Evaluators' artifacts."""

import json

import pytest
from tfx.types import standard_artifacts

from components.metrics_on_artifacts import executor
from models.features import HEAD_REPORT_FILE, LABEL_ISSUES_FILE


def test_the_heads_cross_validation_goes_on_the_model(tmp_path):
    (tmp_path / HEAD_REPORT_FILE).write_text(json.dumps(
        {"c": 10.0, "cv_accuracy": 0.923, "cv_standard_error": 0.006, "cv_folds": 5}))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / LABEL_ISSUES_FILE).write_text(json.dumps(
        {"checked": {"eval": 20, "train": 180}, "count": 7, "excluded_from_training": 5,
         "suspects": []}))
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    executor.record_head(model, str(tmp_path))
    assert model.get_int_custom_property("num_label_suspects") == 7
    assert model.get_int_custom_property("num_label_checked") == 200
    assert model.get_int_custom_property("num_label_suspects_excluded") == 5
    assert model.get_float_custom_property("head_c") == 10.0
    assert model.get_float_custom_property("head_cv_accuracy") == pytest.approx(0.923)
    assert model.get_float_custom_property("head_cv_standard_error") == pytest.approx(0.006)
    assert model.get_int_custom_property("head_cv_folds") == 5
    other = standard_artifacts.Model()
    other.uri = str(tmp_path / "elsewhere")
    executor.record_head(other, str(tmp_path / "elsewhere"))  # another run_fn wrote none
    assert not other.has_custom_property("head_c")
    assert not other.has_custom_property("num_label_suspects")


def test_the_accuracy_and_its_interval_go_on_the_evaluation(monkeypatch):
    monkeypatch.setattr(executor, "overall_metrics", lambda uri: {
        executor.ACCURACY_METRIC: 210 / 235, executor.EXAMPLE_COUNT_METRIC: 235.0})
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = "/nowhere"
    executor.record_accuracy(evaluation)
    assert evaluation.get_int_custom_property("example_count") == 235
    assert evaluation.get_float_custom_property("accuracy_low") == pytest.approx(0.8477, abs=1e-3)
    assert evaluation.get_float_custom_property("accuracy_high") == pytest.approx(0.9273,
                                                                                 abs=1e-3)


def _check_batch_sizes_of_a_tfxio_source(path, records, expected):
    """Beam's assert_that fails the pipeline unless the source's batches have these sizes."""
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.testing.util import assert_that, equal_to
    from tfx_bsl.tfxio import tf_example_record

    example = tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}))
    with tf.io.TFRecordWriter(str(path)) as writer:
        for _ in range(records):
            writer.write(example.SerializeToString())
    source = tf_example_record.TFExampleRecord(str(path), raw_record_column_name="raw")
    with beam.Pipeline() as pipeline:
        sizes = pipeline | source.BeamSource() | beam.Map(lambda batch: batch.num_rows)
        assert_that(sizes, equal_to(expected))


def test_the_evaluators_sources_read_fixed_batches_and_adaptive_ones_come_back(tmp_path):
    from tfx_bsl.coders import batch_util

    with executor.fixed_input_batches(32):
        assert batch_util.GetBatchElementsKwargs(None) == {"min_batch_size": 32,
                                                           "max_batch_size": 32}
        assert batch_util.GetBatchElementsKwargs(8)["max_batch_size"] == 8  # a size given stays
        _check_batch_sizes_of_a_tfxio_source(tmp_path / "examples.tfrecord", 70, [32, 32, 6])
    # Outside, other components keep tfx_bsl's adaptive batching.
    assert batch_util.GetBatchElementsKwargs(None)["min_batch_size"] == 1
