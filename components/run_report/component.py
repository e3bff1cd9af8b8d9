"""RunReport: one self-contained HTML page per pipeline run, for people.

It shows the data (photos per class and split, image sizes, files left out), your data (copies
of one photo as thumbnail rows, the Trainer's suspected label errors as a contact sheet), the
training curves, precision, recall and the confusion matrix on the held-out test split, and a
contact sheet of the test photos the model got wrong. Inputs are the run's artifacts; the
output is a `RunReport` artifact whose folder holds `report.html` (figures embedded, nothing
else to load).
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.run_report import executor

DEFAULT_MAX_MISCLASSIFIED = 24


class RunReportArtifact(types.Artifact):
    """A folder holding report.html."""

    # <namespace>.<Name>: Kubeflow Pipelines V2 accepts custom artifact types only so named.
    TYPE_NAME = "tfx_poets.RunReport"


class RunReportSpec(types.ComponentSpec):
    PARAMETERS = {
        # The split whose results and mistakes are shown: "test", or "eval" without a test split.
        executor.SPLIT_KEY: ExecutionParameter(type=str),
        # At most this many misclassified photos on the contact sheet (the surest mistakes).
        executor.MAX_MISCLASSIFIED_KEY: ExecutionParameter(type=int),
        # Changes with the code, so that TFX's cache misses after an edit of the report.
        "code_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun),
        # The FineTuner's logs (warm-up head, then fine-tuning): its curves are the ones shown.
        executor.FINE_TUNE_RUN_KEY: ChannelParameter(
            type=standard_artifacts.ModelRun, optional=True
        ),
        # The TestEvaluator's output; without it the matrix comes from the report's predictions.
        executor.EVALUATION_KEY: ChannelParameter(
            type=standard_artifacts.ModelEvaluation, optional=True
        ),
    }
    OUTPUTS = {executor.REPORT_KEY: ChannelParameter(type=RunReportArtifact)}


class RunReport(base_component.BaseComponent):
    """Writes `<output>/report.html` for the run that produced `model`."""

    SPEC_CLASS = RunReportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        statistics: types.BaseChannel,
        model: types.BaseChannel,
        model_run: types.BaseChannel,
        evaluation: types.BaseChannel | None = None,
        fine_tune_run: types.BaseChannel | None = None,
        split: str = "test",
        max_misclassified: int = DEFAULT_MAX_MISCLASSIFIED,
        code_fingerprint: str = "",
    ):
        spec = RunReportSpec(
            examples=examples,
            statistics=statistics,
            model=model,
            model_run=model_run,
            evaluation=evaluation,
            fine_tune_run=fine_tune_run,
            split=split,
            max_misclassified=max_misclassified,
            code_fingerprint=code_fingerprint,
            report=types.Channel(type=RunReportArtifact),
        )
        super().__init__(spec=spec)
