"""`create_pipeline(config)`: the tfx-poets pipeline, with no I/O and no orchestrator.

ImageExampleGen -> StatisticsGen -> ImportSchemaGen (curated schema) -> ExampleValidator
-> Transform (resize) -> FineTuner (top MobileNet blocks) -> Trainer (head, export)
-> Evaluator (blessing) -> Pusher (atomic)
(+ an Evaluator on the held-out test split, which only records metrics,
 and a RunReport: one HTML page of the run's data, training and test results).
The runners (runner_local.py, ...) bind paths and an orchestrator to what this returns.
"""

from __future__ import annotations

import importlib

import tensorflow_model_analysis as tfma

# TFX's modules themselves, not `tfx.v1`: that API package also imports TFX's Google Cloud
# extensions (the Vertex AI SDK), which cost every run 13 s and 130 MB here (BENCHMARKS.md).
from tfx.components import Evaluator, ExampleValidator, StatisticsGen, Trainer, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import base_node, executor_spec
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import pusher_pb2, trainer_pb2, transform_pb2
from tfx.types import Channel, standard_artifacts

from components.atomic_pusher.component import AtomicPusher
from components.image_example_gen.component import ImageExampleGen
from components.image_example_gen.images import EVAL, TEST, TRAIN
from components.metrics_on_artifacts import executor as metrics_executor
from components.run_report.component import RunReport
from models import features
from pipeline import config as config_lib
from pipeline import results
from pipeline.config import PipelineConfig

# TFX's Evaluator executor, plus the accuracy's 95 % interval on the ModelEvaluation artifact.
EVALUATOR_EXECUTOR = executor_spec.BeamExecutorSpec(metrics_executor.EvaluatorExecutor)
# Absolute slack so that "not worse than the last blessed model" accepts an equal model.
_CHANGE_TOLERANCE = 1e-10


def make_eval_config(
    label_key: str, min_accuracy: float | None, per_class_key: str
) -> tfma.EvalConfig:
    """Accuracy overall and per class; with `min_accuracy`, also the blessing thresholds.

    The thresholds apply to the overall slice only: a plain `threshold` would apply to every
    per-class slice too, and one class's eval photos alone are too few to gate on.
    """
    per_slice_thresholds = []
    if min_accuracy is not None:
        per_slice_thresholds.append(
            tfma.PerSliceMetricThreshold(
                slicing_specs=[tfma.SlicingSpec()],
                threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(
                        lower_bound={"value": min_accuracy}
                    ),
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                        absolute={"value": -_CHANGE_TOLERANCE},
                    ),
                ),
            )
        )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                # A plain TF SavedModel to TFMA, as its signatures are all it calls. Left to
                # guess, TFMA takes it for Keras, and Keras loads (slower, and more than one
                # per model) were 38 % of the Evaluators' time in a profiled rerun (BENCHMARKS.md).
                model_type=tfma.TF_GENERIC,
                signature_name=features.SERVING_EXAMPLES_SIGNATURE,
                label_key=label_key,
                prediction_key=features.SCORES_KEY,
            )
        ],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[per_class_key])],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="SparseCategoricalAccuracy",
                        per_slice_thresholds=per_slice_thresholds,
                    ),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ]
            )
        ],
    )


def _load_factory(dotted_name: str):
    module_name, _, attribute = dotted_name.rpartition(".")
    if not module_name:
        raise config_lib.ConfigError(f"extra component {dotted_name!r} is not module.function")
    return getattr(importlib.import_module(module_name), attribute)


def image_example_gen(data: config_lib.DataConfig, code_fingerprint: str) -> ImageExampleGen:
    """The pipeline's first step, every setting of it from `data`."""
    return ImageExampleGen(
        data_dir=data.data_dir,
        class_names=data.class_names,
        testing_percentage=data.testing_percentage,
        validation_percentage=data.validation_percentage,
        max_class_imbalance=data.max_class_imbalance,
        near_duplicate_distance=data.near_duplicate_distance,
        code_fingerprint=code_fingerprint,
    )


def create_components(config: PipelineConfig) -> dict[str, base_node.BaseNode]:
    """The pipeline's components by id, in topological order."""
    example_gen = image_example_gen(config.data, config.code_fingerprint)
    schema_gen = ImportSchemaGen(schema_file=config.schema_path)
    # With the schema, TFDV treats the photos (image_domain) as bytes: without it, it counts
    # every photo's bytes as a distinct string value, all held in memory at once.
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"]
    )
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    code_version = {"code_fingerprint": config.code_fingerprint}
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=config.preprocessing_fn,
        splits_config=transform_pb2.SplitsConfig(analyze=[TRAIN], transform=[TRAIN, EVAL]),
        custom_config={"image_size": config.training.image_size,
                       "resize": config.training.resize, **code_version},
        # StatisticsGen already describes the raw data; statistics of resized JPEGs add little.
        disable_statistics=True,
        # The preprocessing has no analyzers, so there is nothing to cache between runs.
        disable_analyzer_cache=True,
    )
    fine_tuner = None
    if config.training.fine_tune_epochs > 0:
        # Phase 2 in a component of its own: its output, the fine-tuned MobileNet, is cached by
        # TFX, so a rerun that changes only the final head's settings skips it.
        fine_tuner = Trainer(
            run_fn=config.fine_tune_fn,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=trainer_pb2.TrainArgs(splits=[TRAIN]),
            eval_args=trainer_pb2.EvalArgs(splits=[EVAL]),
            custom_config={**config.training.for_fine_tuning().to_custom_config(), **code_version},
        ).with_id(results.FINE_TUNER_ID)
    trainer = Trainer(
        run_fn=config.run_fn,
        # TFX's executor, plus the head's cross-validation recorded on the Model artifact.
        custom_executor_spec=executor_spec.ExecutorClassSpec(metrics_executor.TrainerExecutor),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        base_model=fine_tuner.outputs["model"] if fine_tuner else None,
        train_args=trainer_pb2.TrainArgs(splits=[TRAIN]),
        eval_args=trainer_pb2.EvalArgs(splits=[EVAL]),
        custom_config={**config.training.to_custom_config(), **code_version},
    )
    latest_blessed_model = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=latest_blessed_model.outputs["model"],
        example_splits=[EVAL],
        eval_config=make_eval_config(
            features.LABEL_KEY, config.evaluation.min_accuracy, features.LABEL_NAME_KEY
        ),
    )
    # TFX's Evaluator takes no custom executor as an argument; its spec is an attribute.
    evaluator.executor_spec = EVALUATOR_EXECUTOR
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=config.serving_model_dir
            )
        ),
    ).with_id("Pusher")
    components = {
        node.id: node
        for node in (
            example_gen, schema_gen, statistics_gen, example_validator, transform,
            *([fine_tuner] if fine_tuner else []), trainer, latest_blessed_model, evaluator,
            pusher,
        )
    }
    if config.evaluation.evaluate_test_split:
        test_evaluator = Evaluator(
            examples=example_gen.outputs["examples"],
            model=trainer.outputs["model"],
            example_splits=[TEST],
            eval_config=make_eval_config(features.LABEL_KEY, None, features.LABEL_NAME_KEY),
        ).with_id(results.TEST_EVALUATOR_ID)
        test_evaluator.executor_spec = EVALUATOR_EXECUTOR
        components[test_evaluator.id] = test_evaluator
    # The report classifies the test split itself (for its misclassified photos), so it needs
    # no TestEvaluator; without a test split it reports on the eval split and says so.
    run_report = RunReport(
        examples=example_gen.outputs["examples"],
        statistics=statistics_gen.outputs["statistics"],
        model=trainer.outputs["model"],
        model_run=trainer.outputs["model_run"],
        evaluation=(
            components[results.TEST_EVALUATOR_ID].outputs["evaluation"]
            if results.TEST_EVALUATOR_ID in components else None
        ),
        fine_tune_run=fine_tuner.outputs["model_run"] if fine_tuner else None,
        split=TEST if config.data.testing_percentage > 0 else EVAL,
        code_fingerprint=config.code_fingerprint,
    ).with_id(results.RUN_REPORT_ID)
    components[run_report.id] = run_report
    for factory_name in config.extra_components:
        for node in _load_factory(factory_name)(config, dict(components)):
            components[node.id] = node
    return components


def create_pipeline(
    config: PipelineConfig, metadata_connection_config=None
) -> tfx_pipeline.Pipeline:
    """The TFX pipeline for `config`; the orchestrator is the caller's choice."""
    return tfx_pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.artifacts_root,
        components=list(create_components(config).values()),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_pipeline_args),
    )
