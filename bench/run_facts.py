"""What a finished run left behind, read back: from ML Metadata (through
pipeline.metadata_queries) the newest run's component times, execution intervals and test
evaluation, and from the logs the runner's summary and the reference's markdown table. No
TensorFlow."""

from __future__ import annotations

import dataclasses
import os
import re


def component_at(moment: float | None, intervals: list[tuple[str, float, float]]) -> str:
    """Which (name, start s, end s) interval holds `moment` (epoch seconds).

    The latest-started one if several do; else "before X", "between X and Y" or "after Y".
    """
    if moment is None:
        return "n/a"
    if not intervals:
        return "n/a (no executions)"
    ordered = sorted(intervals, key=lambda interval: interval[1])
    holding = [name for name, start, end in ordered if start <= moment <= end]
    if holding:
        return holding[-1]
    if moment < ordered[0][1]:
        return f"before {ordered[0][0]}"
    ended = [interval for interval in ordered if interval[2] < moment]
    last = max(ended, key=lambda interval: interval[2])
    later = [interval for interval in ordered if interval[1] > moment]
    if not later:
        return f"after {last[0]}"
    return f"between {last[0]} and {later[0][0]}"


@dataclasses.dataclass
class RunFacts:
    """What ML Metadata says about the newest run of a pipeline root."""

    component_times: list[tuple[str, str, float]] = dataclasses.field(default_factory=list)
    intervals: list[tuple[str, float, float]] = dataclasses.field(default_factory=list)
    evaluation_uri: str = ""


def read_run_facts(pipeline_root: str) -> RunFacts:
    """Component times, execution intervals (epoch s) and the test evaluation of the newest
    `pipeline_run` in ROOT/metadata.db, opened read-only (ml_metadata only, no TensorFlow)."""
    from pipeline import metadata_queries, results

    try:
        store = metadata_queries.open_read_only(os.path.join(pipeline_root, "metadata.db"))
    except metadata_queries.NoStoreError:
        return RunFacts()
    latest = metadata_queries.latest_run(store)
    if latest is None:
        return RunFacts()
    rows = metadata_queries.execution_rows(store, latest.id)
    evaluation_uri = ""
    for item in metadata_queries.run_artifacts(store, latest.id):
        if item.type_name == "ModelEvaluation" and item.producer == results.TEST_EVALUATOR_ID:
            evaluation_uri = item.artifact.uri
    return RunFacts(
        component_times=[(row.component, row.state, row.seconds) for row in rows],
        intervals=sorted(
            ((row.component, row.start_ms / 1000, row.end_ms / 1000) for row in rows),
            key=lambda interval: interval[1],
        ),
        evaluation_uri=evaluation_uri,
    )


_SUMMARY_ACCURACY = re.compile(r"^\s*test accuracy\s+([0-9.]+)%", re.MULTILINE)


def summary_test_accuracy(log_text: str) -> float | None:
    """The test accuracy of the summary runner_local.py prints last, as a fraction."""
    found = _SUMMARY_ACCURACY.findall(log_text)
    return float(found[-1]) / 100 if found else None


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse_markdown_row(log_text: str, must_have: str) -> dict[str, str]:
    """{column: value} of the last markdown table in `log_text` whose header has `must_have`."""
    lines = [line for line in log_text.splitlines() if line.strip().startswith("|")]
    row = {}
    for index in range(len(lines) - 2):
        header = _cells(lines[index])
        separator = _cells(lines[index + 1])
        if must_have in header and all(set(cell) <= set("-: ") for cell in separator):
            row = dict(zip(header, _cells(lines[index + 2]), strict=False))
    return row


def parse_percent(value: str) -> float | None:
    """'88.5 %' -> 0.885; None for 'nan %' or anything else."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*", value or "")
    return float(match.group(1)) / 100 if match else None
