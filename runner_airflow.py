"""Airflow DAG file for the tfx-poets pipeline: the same `create_pipeline(config)` as
runner_local.py, run by TFX's AirflowDagRunner (one Airflow task per component).

Put this file (or a link to it) in Airflow's dags folder, with this project importable and the
settings in TFX_POETS_* environment variables (the flags of `python runner_local.py -h`, e.g.
TFX_POETS_DATA_DIR, TFX_POETS_MODEL_HANDLE). `python runner_airflow.py [flags]` builds the DAG
and prints its tasks in order, without running them. See docs/orchestrators.md.
"""

import datetime
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow: hub and TFT need tf_keras

from pipeline import cli  # noqa: E402
from pipeline.beam_services import LOCAL_PORTABLE  # noqa: E402

# Runs only when triggered: a retrain is a decision, not a timetable.
AIRFLOW_DAG_CONFIG = {"schedule_interval": None, "start_date": datetime.datetime(2026, 1, 1)}


def _component_scoped_driver(driver_class):
    """`driver_class`, naming each output artifact `<component id>:<output>:<run id>`.

    TFX's legacy drivers, which AirflowDagRunner's launcher uses, name an output artifact
    `<output key>:<run id>`, and ML Metadata keeps artifact names unique per type: the Evaluator
    and the TestEvaluator (both `evaluation`, `blessing`), or the FineTuner and the Trainer (both
    `model`, `model_run`), would register the same name in one run and the second would fail
    with AlreadyExistsError. LocalDagRunner's launcher names no artifacts, so it is unaffected.
    """

    class ComponentScopedNames(driver_class):
        def _prepare_output_artifacts(self, input_artifacts, output_dict, exec_properties,
                                      execution_id, pipeline_info, component_info):
            outputs = super()._prepare_output_artifacts(
                input_artifacts, output_dict, exec_properties, execution_id, pipeline_info,
                component_info)
            for artifacts in outputs.values():
                for artifact in artifacts:
                    if artifact.name:
                        artifact.name = f"{component_info.component_id}:{artifact.name}"
            return outputs

    ComponentScopedNames.__name__ = ComponentScopedNames.__qualname__ = (
        f"ComponentScoped{driver_class.__name__}")
    return ComponentScopedNames


def build_dag(config):
    """The Airflow DAG of the pipeline, with ML Metadata in SQLite under the pipeline root."""
    from tfx import v1 as tfx
    from tfx.dsl.components.base import base_component
    from tfx.orchestration.airflow.airflow_dag_runner import (
        AirflowDagRunner,
        AirflowPipelineConfig,
    )

    from pipeline.pipeline import create_pipeline

    if f"--runner={LOCAL_PORTABLE}" in config.beam_pipeline_args:
        # Airflow runs each task on its own: nothing would start the services for a whole run.
        raise cli.CliError(
            f"--beam-runner {LOCAL_PORTABLE} is for runner_local.py; with Airflow start the "
            "services with `python -m pipeline.beam_services` and use --beam-runner PortableRunner "
            "(docs/orchestrators.md)"
        )
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    tfx_pipeline = create_pipeline(config, metadata)
    for component in tfx_pipeline.components:
        if isinstance(component, base_component.BaseComponent):
            component.driver_class = _component_scoped_driver(component.driver_class)
    runner = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=AIRFLOW_DAG_CONFIG))
    return runner.run(tfx_pipeline)


def task_order(dag) -> list[tuple[str, list[str]]]:
    """(task id, sorted upstream task ids) in topological order."""
    return [
        (task.task_id, sorted(task.upstream_task_ids)) for task in dag.topological_sort()
    ]


def _print_tasks(config, args) -> None:
    dag = build_dag(config)
    print(f"DAG {dag.dag_id}:")
    for task_id, upstream in task_order(dag):
        print(f"  {task_id:32s} after {', '.join(upstream) or '-'}")


if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:], _print_tasks, prog="runner_airflow.py"))
else:
    # Imported by Airflow's scheduler: the settings come from TFX_POETS_* variables.
    DAG = build_dag(cli.config_from_args(cli.build_parser("runner_airflow.py").parse_args([])))
