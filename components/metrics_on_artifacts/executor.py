"""TFX's Trainer and Evaluator executors, plus the numbers a user asks of a model, recorded as
custom properties of their output artifacts in ML Metadata.

- Trainer: the head's cross-validation, read from the `head.json` that the run_fn wrote in the
  ModelRun folder (models/trainer_module.py), on the Model artifact: `head_c`,
  `head_cv_accuracy`, `head_cv_standard_error`, `head_cv_folds`; and from the
  `label_issues.json` beside the model, the photos whose folder label it doubts:
  `num_label_suspects` (of `num_label_checked` train and eval photos) and
  `num_label_suspects_excluded` (left out of the final head's training).
- Evaluator: the overall accuracy, its example count and its 95 % Wilson interval
  (`accuracy`, `example_count`, `accuracy_low`, `accuracy_high`) on the ModelEvaluation;
  and its examples read in batches of a fixed size (`fixed_input_batches`).

`inspect_metadata artifacts --type Model` (or ModelEvaluation) shows them.
"""

from __future__ import annotations

import contextlib
import json
import os

from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.trainer import executor as trainer_executor

from models import linear_head
from models.features import HEAD_REPORT_FILE, LABEL_ISSUES_FILE

HEAD_PROPERTIES = {"c": "head_c", "cv_accuracy": "head_cv_accuracy",
                   "cv_standard_error": "head_cv_standard_error"}
ACCURACY_METRIC = "sparse_categorical_accuracy"
EXAMPLE_COUNT_METRIC = "example_count"
# Photos a batch the Evaluators score: the Trainer's feature pass uses 16 for its peak memory;
# here two models share each batch.
EVALUATION_BATCH_SIZE = 32


def _read_json(path: str) -> dict | None:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):  # another run_fn, which wrote none
        return None
    with tf.io.gfile.GFile(path) as file:
        return json.load(file)


def record_head(model, model_run_uri: str) -> None:
    report = _read_json(os.path.join(model_run_uri, HEAD_REPORT_FILE))
    if report:
        for key, name in HEAD_PROPERTIES.items():
            model.set_float_custom_property(name, float(report[key]))
        model.set_int_custom_property("head_cv_folds", int(report["cv_folds"]))
        model.set_string_custom_property("head", str(report.get("head", "logistic")))
    issues = _read_json(os.path.join(model.uri, LABEL_ISSUES_FILE)) if model.uri else None
    if issues:
        model.set_int_custom_property("num_label_suspects", int(issues["count"]))
        model.set_int_custom_property("num_label_checked", sum(issues["checked"].values()))
        model.set_int_custom_property("num_label_suspects_excluded",
                                      int(issues["excluded_from_training"]))


def overall_metrics(evaluation_uri: str) -> dict[str, float]:
    """The overall slice's accuracy and example count of a TFMA output (not a baseline's)."""
    import tensorflow_model_analysis as tfma

    values = {}
    for record in tfma.load_metrics(evaluation_uri):
        if tfma.slicer.deserialize_slice_key(record.slice_key):
            continue
        for key_and_value in record.metric_keys_and_values:
            key = key_and_value.key
            if key.is_diff or key.model_name == "baseline":
                continue
            if key.name in (ACCURACY_METRIC, EXAMPLE_COUNT_METRIC):
                values[key.name] = key_and_value.value.double_value.value
    return values


def record_accuracy(evaluation) -> None:
    metrics = overall_metrics(evaluation.uri)
    if ACCURACY_METRIC not in metrics or EXAMPLE_COUNT_METRIC not in metrics:
        return
    accuracy, count = metrics[ACCURACY_METRIC], int(metrics[EXAMPLE_COUNT_METRIC])
    low, high = linear_head.wilson_interval(round(accuracy * count), count)
    evaluation.set_float_custom_property("accuracy", accuracy)
    evaluation.set_int_custom_property("example_count", count)
    evaluation.set_float_custom_property("accuracy_low", low)
    evaluation.set_float_custom_property("accuracy_high", high)


class TrainerExecutor(trainer_executor.GenericExecutor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's name
        super().Do(input_dict, output_dict, exec_properties)
        record_head(output_dict["model"][0], output_dict["model_run"][0].uri)


@contextlib.contextmanager
def fixed_input_batches(batch_size: int):
    """TFX's Evaluator reads its examples with tfx_bsl's adaptive batching (`BeamSource()`
    takes no size there), which, timing a slow image model, stays at about 4 photos a batch;
    each call then runs MobileNet on batches of one or two photos of a shape. While the Beam
    pipeline is built, a source given no size batches `batch_size` records instead."""
    from tfx_bsl.coders import batch_util

    adaptive = batch_util.GetBatchElementsKwargs

    def fixed(size, *args, **kwargs):
        return adaptive(size or batch_size, *args, **kwargs)

    batch_util.GetBatchElementsKwargs = fixed
    try:
        yield
    finally:
        batch_util.GetBatchElementsKwargs = adaptive


class EvaluatorExecutor(evaluator_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's name
        with fixed_input_batches(EVALUATION_BATCH_SIZE):
            super().Do(input_dict, output_dict, exec_properties)
        record_accuracy(output_dict["evaluation"][0])
