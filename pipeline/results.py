"""What the last run produced, read back from ML Metadata (and TFMA's output) for the user."""

from __future__ import annotations

import dataclasses

from models.features import LABEL_ISSUES_FILE
from pipeline import metadata_queries
from pipeline.config import PipelineConfig

ACCURACY_METRIC = "sparse_categorical_accuracy"
TEST_EVALUATOR_ID = "TestEvaluator"
FINE_TUNER_ID = "FineTuner"
RUN_REPORT_ID = "RunReport"


@dataclasses.dataclass
class RunResults:
    run_id: str = ""
    blessed: bool | None = None
    pushed_model_dir: str = ""
    eval_accuracy: float | None = None
    test_accuracy: float | None = None
    # The test accuracy's 95 % Wilson interval and photo count (the TestEvaluator's artifact).
    test_interval: tuple[float, float] | None = None
    test_count: int | None = None
    # The final head's regularisation and cross-validated accuracy (the Trainer's Model).
    head: str = "logistic"
    head_c: float | None = None
    head_cv_accuracy: float | None = None
    head_cv_standard_error: float | None = None
    head_cv_folds: int | None = None
    eval_accuracy_per_class: dict[str, float] = dataclasses.field(default_factory=dict)
    tensorboard_dir: str = ""
    conversion_report: str = ""
    # The copies ImageExampleGen found (its Examples artifact): groups of near-duplicates and
    # their photos, kept in one split each, and label conflicts, left out.
    near_duplicate_groups: int | None = None
    near_duplicate_photos: int | None = None
    label_conflicts: int | None = None
    # The photos whose folder label the Trainer doubts (its Model), and those left out of its
    # final head's training; listed in label_issues.
    label_suspects: int | None = None
    label_checked: int | None = None
    label_suspects_excluded: int | None = None
    label_issues: str = ""
    run_report: str = ""  # report.html of the RunReport component
    # (component id, state, seconds) in start order.
    component_times: list[tuple[str, str, float]] = dataclasses.field(default_factory=list)


def overall_and_per_class_accuracy(evaluation_uri: str) -> tuple[float | None, dict[str, float]]:
    """Accuracy of the overall slice and of each `image/class/text` slice of a TFMA output."""
    import tensorflow_model_analysis as tfma

    overall, per_class = None, {}
    for record in tfma.load_metrics(evaluation_uri):
        slice_key = tfma.slicer.deserialize_slice_key(record.slice_key)
        for key_and_value in record.metric_keys_and_values:
            key = key_and_value.key
            # With a baseline, TFMA also stores the baseline's value and the difference.
            if key.name != ACCURACY_METRIC or key.is_diff or key.model_name == "baseline":
                continue
            value = key_and_value.value.double_value.value
            if not slice_key:
                overall = value
            else:
                name = slice_key[0][1]
                per_class[name.decode() if isinstance(name, bytes) else str(name)] = value
    return overall, dict(sorted(per_class.items()))


def latest_run_results(config: PipelineConfig) -> RunResults:
    """The artifacts of the newest pipeline run of `config.pipeline_name`."""
    store = metadata_queries.open_store(config.metadata_path)
    results = RunResults()
    latest = metadata_queries.latest_run(store)
    if latest is None:
        return results
    results.run_id = latest.name
    results.component_times = metadata_queries.component_times(store, latest.id)
    artifacts = metadata_queries.run_artifacts(store, latest.id)
    for item in artifacts:
        artifact, type_name, producer = item.artifact, item.type_name, item.producer
        properties = artifact.custom_properties
        from_test_evaluator = producer == TEST_EVALUATOR_ID
        if type_name == "ModelBlessing" and not from_test_evaluator:
            results.blessed = (
                properties["blessed"].int_value == 1 if "blessed" in properties else None
            )
        elif (
            type_name == "PushedModel"
            and properties.get("pushed")
            and properties["pushed"].int_value
        ):
            results.pushed_model_dir = properties["pushed_destination"].string_value
        elif type_name == "ModelEvaluation":
            overall, per_class = overall_and_per_class_accuracy(artifact.uri)
            if from_test_evaluator:
                results.test_accuracy = overall
                if "accuracy_low" in properties:
                    results.test_interval = (properties["accuracy_low"].double_value,
                                             properties["accuracy_high"].double_value)
                    results.test_count = properties["example_count"].int_value
            else:
                results.eval_accuracy, results.eval_accuracy_per_class = overall, per_class
        elif type_name == "Model" and producer == "Trainer" and "head_cv_accuracy" in properties:
            results.head_c = properties["head_c"].double_value
            if "head" in properties:
                results.head = properties["head"].string_value
            results.head_cv_accuracy = properties["head_cv_accuracy"].double_value
            results.head_cv_standard_error = properties["head_cv_standard_error"].double_value
            results.head_cv_folds = properties["head_cv_folds"].int_value
            if "num_label_suspects" in properties:
                results.label_suspects = properties["num_label_suspects"].int_value
                results.label_checked = properties["num_label_checked"].int_value
                results.label_suspects_excluded = (
                    properties["num_label_suspects_excluded"].int_value)
                results.label_issues = f"{artifact.uri}/{LABEL_ISSUES_FILE}"
        elif type_name == "ModelRun":
            results.tensorboard_dir = artifact.uri
        elif type_name == "Examples" and producer == "ImageExampleGen":
            results.conversion_report = f"{artifact.uri}/conversion_report.json"
            if "num_near_duplicate_groups" in properties:
                results.near_duplicate_groups = properties["num_near_duplicate_groups"].int_value
                results.near_duplicate_photos = properties["num_near_duplicate_photos"].int_value
                results.label_conflicts = properties["num_label_conflicts"].int_value
    results.run_report = run_report_path(artifacts)
    return results


def run_report_path(artifacts: list[metadata_queries.RunArtifact]) -> str:
    """The report.html of a run, from the artifact its RunReport component output ("" if the
    run has none), given the run's artifacts (metadata_queries.run_artifacts)."""
    for item in artifacts:
        if item.producer == RUN_REPORT_ID:
            path = item.artifact.custom_properties.get("report_html")
            return path.string_value if path else f"{item.artifact.uri}/report.html"
    return ""


def _class_balance(conversion_report: str) -> dict | None:
    """The `class_balance` entry of ImageExampleGen's conversion report, if there is one."""
    import json

    import tensorflow as tf

    if not conversion_report or not tf.io.gfile.exists(conversion_report):
        return None
    with tf.io.gfile.GFile(conversion_report) as report:
        return json.load(report).get("class_balance")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def summarize(config: PipelineConfig) -> str:
    results = latest_run_results(config)
    lines = [f"Run {results.run_id}:"]
    minimum = _percent(config.evaluation.min_accuracy)
    lines.append(f"  eval accuracy  {_percent(results.eval_accuracy)}  (min {minimum})")
    if results.eval_accuracy_per_class:
        per_class = ", ".join(
            f"{name} {_percent(value)}" for name, value in results.eval_accuracy_per_class.items()
        )
        lines.append(f"  per class      {per_class}")
    test = f"  test accuracy  {_percent(results.test_accuracy)}"
    if results.test_interval:
        low, high = results.test_interval
        test += (f"  (95% interval {_percent(low)}-{_percent(high)}, "
                 f"{results.test_count} photos)")
    lines.append(test)
    if results.head_cv_accuracy is not None:
        lines.append(
            f"  head           {results.head}, C={results.head_c:g}, cross-validated accuracy "
            f"{_percent(results.head_cv_accuracy)} ± {100 * results.head_cv_standard_error:.1f} "
            f"({results.head_cv_folds} folds over the train photos)"
        )
    if results.pushed_model_dir:
        lines.append(f"  pushed model   {results.pushed_model_dir}")
        lines.append(
            f"  classify with  python label_image.py --model {results.pushed_model_dir} PHOTO"
        )
    else:
        lines.append(
            "  pushed model   none: the model was not blessed (see the Evaluator's output)"
        )
    lines.append(
        f"  TensorBoard    python -m tools.tensorboard --pipeline-root {config.pipeline_root}"
    )
    if results.run_report:
        lines.append(f"  run report     {results.run_report}")
    lines.append(f"  skipped files  {results.conversion_report}")
    if results.near_duplicate_groups is not None:
        lines.append(
            f"  near-copies    {results.near_duplicate_groups} groups of near-duplicates "
            f"({results.near_duplicate_photos} photos), each kept in one split; "
            f"{results.label_conflicts} label conflicts left out (conversion_report.json)"
        )
    if results.label_suspects is not None:
        left_out = (f", {results.label_suspects_excluded} left out of training"
                    if results.label_suspects_excluded else "")
        lines.append(
            f"  label suspects {results.label_suspects} of {results.label_checked} train and "
            f"eval photos may be in the wrong class folder{left_out}: {results.label_issues}"
        )
    balance = _class_balance(results.conversion_report)
    if balance:
        lines.append(
            f"  class balance  {balance['ratio']:g}x (largest {balance['largest']['class']} "
            f"{balance['largest']['images']}, smallest {balance['smallest']['class']} "
            f"{balance['smallest']['images']})"
        )
        if balance["imbalanced"]:
            from components.image_example_gen.report import imbalance_message

            lines.append(f"  WARNING        {imbalance_message(balance)}")
    lines.append(f"  ML Metadata    {config.metadata_path}")
    lines.append("  component times:")
    for node_id, state, seconds in results.component_times:
        lines.append(f"    {node_id:32s} {state:9s} {seconds:7.1f} s")
    return "\n".join(lines)
