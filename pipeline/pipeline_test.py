"""Tests of create_pipeline: the DAG, the blessing thresholds, plug-ins, and no I/O."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfx import v1 as tfx  # noqa: E402

from models import training_config
from pipeline import config as config_lib  # noqa: E402
from pipeline.pipeline import create_components, create_pipeline  # noqa: E402


def _config(**changes):
    values = {
        # Paths that do not exist: create_pipeline must not touch the file system.
        "data": config_lib.DataConfig("/nonexistent/photos", ("a", "b", "c")),
        "training": config_lib.TrainingConfig("/nonexistent/hub", class_names=("a", "b", "c")),
        "pipeline_root": "/nonexistent/root",
        "schema_path": "/nonexistent/schema.pbtxt",
        **changes,
    }
    return config_lib.PipelineConfig(**values)


def extra_component_factory(config, components):
    """A plug-in as a user would write one: here, a second StatisticsGen on the same data."""
    examples = components["ImageExampleGen"].outputs["examples"]
    return [tfx.components.StatisticsGen(examples=examples).with_id("ExtraStatisticsGen")]


def test_pipeline_has_every_component_wired_in_order():
    # The FineTuner is off by default (BENCHMARKS.md, "Recipes"): here it is on.
    training = config_lib.TrainingConfig("/nonexistent/hub", class_names=("a", "b", "c"),
                                         fine_tune_epochs=2)
    pipeline = create_pipeline(_config(training=training))
    ids = [component.id for component in pipeline.components]
    assert set(ids) == {
        "ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
        "FineTuner", "Trainer", "latest_blessed_model_resolver", "Evaluator", "TestEvaluator",
        "Pusher", "RunReport",
    }
    upstream = {c.id: {u.id for u in c.upstream_nodes} for c in pipeline.components}
    assert upstream["StatisticsGen"] == {"ImageExampleGen", "ImportSchemaGen"}
    assert upstream["Transform"] == {"ImageExampleGen", "ImportSchemaGen"}
    assert upstream["FineTuner"] == {"Transform", "ImportSchemaGen"}
    assert upstream["Trainer"] == {"Transform", "ImportSchemaGen", "FineTuner"}
    assert upstream["Evaluator"] == {"ImageExampleGen", "Trainer", "latest_blessed_model_resolver"}
    assert upstream["Pusher"] == {"Trainer", "Evaluator"}
    assert upstream["RunReport"] == {
        "ImageExampleGen", "StatisticsGen", "FineTuner", "Trainer", "TestEvaluator"}
    assert pipeline.enable_cache is True
    assert pipeline.pipeline_info.pipeline_root == "/nonexistent/root/artifacts"


def test_trainer_and_transform_get_their_settings():
    components = create_components(_config(code_fingerprint="abc"))
    trainer_config = components["Trainer"].exec_properties["custom_config"]
    assert '"class_names": ["a", "b", "c"]' in trainer_config
    assert '"code_fingerprint": "abc"' in trainer_config
    assert components["Trainer"].exec_properties["run_fn"] == config_lib.DEFAULT_RUN_FN
    assert components["ImageExampleGen"].exec_properties["near_duplicate_distance"] == (
        config_lib.DEFAULT_NEAR_DUPLICATE_DISTANCE)
    transform = components["Transform"].exec_properties
    assert transform["preprocessing_fn"] == config_lib.DEFAULT_PREPROCESSING_FN
    assert f'"image_size": {training_config.DEFAULT_IMAGE_SIZE}' in transform["custom_config"]
    assert '"resize": "short-side"' in transform["custom_config"]
    # TFX's executors, extended to record the head's and the test accuracy's numbers.
    for component_id in ("Trainer", "Evaluator", "TestEvaluator"):
        executor = components[component_id].executor_spec.executor_class
        assert executor.__module__ == "components.metrics_on_artifacts.executor"


def test_the_fine_tuner_ignores_the_final_heads_settings_so_tuning_them_keeps_its_cache():
    import json

    def fine_tuner_config(**head):
        training = config_lib.TrainingConfig(
            "/nonexistent/hub", class_names=("a", "b", "c"), fine_tune_epochs=2, **head)
        components = create_components(_config(training=training))
        fine_tuner = components["FineTuner"].exec_properties
        assert fine_tuner["run_fn"] == config_lib.DEFAULT_FINE_TUNE_FN
        return fine_tuner["custom_config"], components["Trainer"].exec_properties["custom_config"]

    default_fine_tuner, default_trainer = fine_tuner_config()
    tuned_fine_tuner, tuned_trainer = fine_tuner_config(
        head_c=3.0, average_views=False, exclude_suspected_label_errors=True)
    assert tuned_fine_tuner == default_fine_tuner
    assert json.loads(tuned_trainer)["head_c"] == 3.0 != json.loads(default_trainer)["head_c"]
    # A fine-tuning setting does reach it.
    changed, _ = fine_tuner_config(fine_tune_learning_rate=3e-4)
    assert json.loads(changed)["fine_tune_learning_rate"] == 3e-4


def test_without_fine_tuning_there_is_no_fine_tuner():
    components = {c.id: c for c in create_pipeline(_config()).components}
    assert "FineTuner" not in components
    assert {u.id for u in components["Trainer"].upstream_nodes} == {"Transform", "ImportSchemaGen"}


def test_evaluator_blesses_only_above_min_accuracy_and_not_worse_than_baseline():
    import tensorflow_model_analysis as tfma
    from tfx.utils import proto_utils

    components = create_components(
        _config(evaluation=config_lib.EvaluationConfig(min_accuracy=0.85))
    )
    eval_config = proto_utils.json_to_proto(
        components["Evaluator"].exec_properties["eval_config"], tfma.EvalConfig()
    )
    assert [spec.feature_keys for spec in eval_config.slicing_specs] == [[], ["image/class/text"]]
    (accuracy,) = [
        metric for metric in eval_config.metrics_specs[0].metrics
        if metric.class_name == "SparseCategoricalAccuracy"
    ]
    # Gated on the overall slice only, not on each class's slice.
    assert not accuracy.HasField("threshold")
    (gate,) = accuracy.per_slice_thresholds
    assert list(gate.slicing_specs) == [tfma.SlicingSpec()]
    assert gate.threshold.value_threshold.lower_bound.value == 0.85
    change = gate.threshold.change_threshold
    assert change.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert -1e-6 < change.absolute.value <= 0
    assert "lower_bound" not in components["TestEvaluator"].exec_properties["eval_config"]


def test_beam_arguments_reach_every_beam_component():
    beam_args = ("--runner=SparkRunner", "--spark_master_url=spark://host:7077")
    pipeline = create_pipeline(_config(beam_pipeline_args=beam_args))
    beam_components = {
        component.id: list(component.executor_spec.beam_pipeline_args)
        for component in pipeline.components
        if hasattr(component.executor_spec, "beam_pipeline_args")
    }
    assert set(beam_components) == {
        "ImageExampleGen", "StatisticsGen", "Transform", "Evaluator", "TestEvaluator",
    }
    for component_args in beam_components.values():
        assert component_args[: len(beam_args)] == list(beam_args)


def test_test_evaluator_can_be_turned_off_and_plugins_added():
    components = create_components(
        _config(
            evaluation=config_lib.EvaluationConfig(evaluate_test_split=False),
            extra_components=("pipeline.pipeline_test.extra_component_factory",),
        )
    )
    assert "TestEvaluator" not in components
    # The report then classifies the test split itself.
    assert components["RunReport"].exec_properties["split"] == "test"
    assert "evaluation" not in components["RunReport"].inputs
    assert "ExtraStatisticsGen" in components


def test_run_report_uses_the_eval_split_when_there_is_no_test_split():
    data = config_lib.DataConfig("/nonexistent/photos", ("a", "b", "c"), testing_percentage=0)
    components = create_components(_config(data=data))
    assert components["RunReport"].exec_properties["split"] == "eval"


def test_the_local_runner_does_not_import_tfx_cloud_extensions():
    # `tfx.v1` imports the Vertex AI SDK too, seconds of every run's start for nothing here.
    import subprocess
    import sys

    code = (
        "import sys, runner_local\n"
        "from tfx.orchestration.local.local_dag_runner import LocalDagRunner\n"
        "from pipeline.pipeline import create_pipeline\n"
        "print(sorted(m for m in ('tfx.v1', 'google.cloud.aiplatform') if m in sys.modules))\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().splitlines()[-1] == "[]"
