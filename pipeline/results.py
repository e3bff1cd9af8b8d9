"""What the last run produced, read back from ML Metadata (and TFMA's output) for the user."""

from __future__ import annotations

import dataclasses

from models.features import LABEL_ISSUES_FILE
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


def open_store(metadata_path: str, read_only: bool = False):
    """The ML Metadata store in the SQLite file `metadata_path` (created if missing, unless
    `read_only`). Built with ml_metadata alone: importing TFX here would cost many seconds."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    modes = metadata_store_pb2.SqliteMetadataSourceConfig
    connection_config = metadata_store_pb2.ConnectionConfig()
    connection_config.sqlite.filename_uri = metadata_path
    connection_config.sqlite.connection_mode = (
        modes.READONLY if read_only else modes.READWRITE_OPENCREATE
    )
    return metadata_store.MetadataStore(connection_config)


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
    store = open_store(config.metadata_path)
    # One metadata.db per pipeline root, so every run in it belongs to this pipeline.
    runs = store.get_contexts_by_type("pipeline_run")
    results = RunResults()
    if not runs:
        return results
    latest = max(runs, key=lambda context: context.create_time_since_epoch)
    results.run_id = latest.name
    results.component_times = component_times(store, latest.id)
    type_names = {
        artifact_type.id: artifact_type.name for artifact_type in store.get_artifact_types()
    }
    artifacts = store.get_artifacts_by_context(latest.id)
    producers = artifact_producers(store, [artifact.id for artifact in artifacts])
    for artifact in artifacts:
        type_name = type_names.get(artifact.type_id)
        properties = artifact.custom_properties
        from_test_evaluator = producers.get(artifact.id) == TEST_EVALUATOR_ID
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
        elif type_name == "Model" and producers.get(artifact.id) == "Trainer" \
                and "head_cv_accuracy" in properties:
            results.head_c = properties["head_c"].double_value
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
        elif type_name == "Examples" and producers.get(artifact.id) == "ImageExampleGen":
            results.conversion_report = f"{artifact.uri}/conversion_report.json"
            if "num_near_duplicate_groups" in properties:
                results.near_duplicate_groups = properties["num_near_duplicate_groups"].int_value
                results.near_duplicate_photos = properties["num_near_duplicate_photos"].int_value
                results.label_conflicts = properties["num_label_conflicts"].int_value
    results.run_report = run_report_path(store, latest.id)
    return results


def artifact_producers(store, artifact_ids) -> dict[int, str]:
    """{artifact id: id of the component whose execution output it}."""
    from ml_metadata.proto import metadata_store_pb2

    node_of_execution = execution_node_ids(store)
    return {
        event.artifact_id: node_of_execution.get(event.execution_id, "")
        for event in store.get_events_by_artifact_ids(list(artifact_ids))
        if event.type == metadata_store_pb2.Event.OUTPUT
    }


def run_report_path(store, run_context_id: int) -> str:
    """The report.html of a run, from the artifact its RunReport component output ("" if the
    run has none)."""
    artifacts = store.get_artifacts_by_context(run_context_id)
    producers = artifact_producers(store, [artifact.id for artifact in artifacts])
    for artifact in artifacts:
        if producers.get(artifact.id) == RUN_REPORT_ID:
            path = artifact.custom_properties.get("report_html")
            return path.string_value if path else f"{artifact.uri}/report.html"
    return ""


def execution_node_ids(store) -> dict[int, str]:
    """{execution id: component (node) id} of every execution in the store."""
    node_of_execution = {}
    for node_context in store.get_contexts_by_type("node"):
        node_id = node_context.name.split(".", 1)[-1]  # "<pipeline>.<node id>"
        for execution in store.get_executions_by_context(node_context.id):
            node_of_execution[execution.id] = node_id
    # TFX's legacy launcher (AirflowDagRunner's) records no node contexts, only this property.
    for execution in store.get_executions():
        if execution.id not in node_of_execution and "component_id" in execution.properties:
            node_of_execution[execution.id] = execution.properties["component_id"].string_value
    return node_of_execution


def component_times(store, run_context_id: int) -> list[tuple[str, str, float]]:
    """Each execution of a run: its component id, state (COMPLETE, CACHED, ...) and seconds."""
    from ml_metadata.proto import metadata_store_pb2

    states = metadata_store_pb2.Execution.State
    node_of_execution = execution_node_ids(store)
    timings = []
    executions = sorted(
        store.get_executions_by_context(run_context_id),
        key=lambda execution: (execution.create_time_since_epoch, execution.id),
    )
    for execution in executions:
        node_id = node_of_execution.get(execution.id, str(execution.id))
        seconds = (
            execution.last_update_time_since_epoch - execution.create_time_since_epoch
        ) / 1000
        timings.append((node_id, states.Name(execution.last_known_state), seconds))
    return timings


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
            f"  head           C={results.head_c:g}, cross-validated accuracy "
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
