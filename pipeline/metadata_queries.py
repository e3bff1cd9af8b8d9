"""The ML Metadata queries every reader of a pipeline root's store shares: the run summary
(pipeline/results.py), `python -m tools.inspect_metadata` and bench/run_facts.py.

Built on ml_metadata's `MetadataStore` alone (contexts, executions, artifacts and events): no
SQL, and no TensorFlow or TFX import, which would cost many seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Sequence

RUN_CONTEXT_TYPE = "pipeline_run"
NODE_CONTEXT_TYPE = "node"
CACHED = "CACHED"
# The execution property of a file-based ExampleGen that names its input folder, and the
# fingerprint of that folder (an execution or Examples artifact property).
INPUT_BASE = "input_base"
INPUT_FINGERPRINT = "input_fingerprint"


class MetadataError(Exception):
    """A store that cannot be read, or an id it does not hold; a one-line message."""


class NoStoreError(MetadataError):
    """No ML Metadata store at the path."""


# --- opening a store --------------------------------------------------------------------


def open_store(metadata_path: str, read_only: bool = False):
    """The ML Metadata store in the SQLite file `metadata_path` (created if missing, unless
    `read_only`)."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    modes = metadata_store_pb2.SqliteMetadataSourceConfig
    connection_config = metadata_store_pb2.ConnectionConfig()
    connection_config.sqlite.filename_uri = metadata_path
    connection_config.sqlite.connection_mode = (
        modes.READONLY if read_only else modes.READWRITE_OPENCREATE
    )
    return metadata_store.MetadataStore(connection_config)


def open_read_only(metadata_path: str):
    """The store at `metadata_path`, read-only; NoStoreError if the file is missing,
    MetadataError if it is no ML Metadata store."""
    if not os.path.isfile(metadata_path):
        raise NoStoreError(f"no ML Metadata store at {metadata_path}")
    try:
        return open_store(metadata_path, read_only=True)
    except Exception as error:  # ml_metadata raises RuntimeError for a file that is no store
        # Keep the reason, not the SQL statement ml_metadata appends to it.
        reason = re.sub(r"\s+query:\s+(CREATE|SELECT|INSERT)\b.*", "", " ".join(str(error).split()))
        raise MetadataError(
            f"cannot read {metadata_path} as an ML Metadata store: {reason[:200]}"
        ) from error


# --- runs, executions and their components -----------------------------------------------


def state_name(execution) -> str:
    """COMPLETE, CACHED, FAILED, RUNNING, NEW, ... of an execution."""
    from ml_metadata.proto import metadata_store_pb2

    return metadata_store_pb2.Execution.State.Name(execution.last_known_state)


def newest(nodes):
    """The newest of some artifacts, executions or contexts (by create time, then id)."""
    return max(nodes, key=lambda node: (node.create_time_since_epoch, node.id))


def run_contexts(store) -> list:
    """Every pipeline run's context, oldest first. One metadata.db per pipeline root, so every
    run in it belongs to that root's pipeline."""
    return sorted(
        store.get_contexts_by_type(RUN_CONTEXT_TYPE),
        key=lambda context: (context.create_time_since_epoch, context.id),
    )


def latest_run(store):
    """The newest pipeline run's context, or None when the store has no run."""
    runs = run_contexts(store)
    return runs[-1] if runs else None


def run_executions(store, run_context_id: int) -> list:
    """The executions of a run in start order."""
    return sorted(
        store.get_executions_by_context(run_context_id),
        key=lambda execution: (execution.create_time_since_epoch, execution.id),
    )


def execution_node_ids(store) -> dict[int, str]:
    """{execution id: component (node) id} of every execution in the store."""
    node_of_execution = {}
    for node_context in store.get_contexts_by_type(NODE_CONTEXT_TYPE):
        node_id = node_context.name.split(".", 1)[-1]  # "<pipeline>.<node id>"
        for execution in store.get_executions_by_context(node_context.id):
            node_of_execution[execution.id] = node_id
    # TFX's legacy launcher (AirflowDagRunner's) records no node contexts, only this property.
    for execution in store.get_executions():
        if execution.id not in node_of_execution and "component_id" in execution.properties:
            node_of_execution[execution.id] = execution.properties["component_id"].string_value
    return node_of_execution


def run_of_executions(store) -> dict[int, str]:
    """{execution id: name of the pipeline run it belongs to}."""
    run_of = {}
    for context in run_contexts(store):
        for execution in store.get_executions_by_context(context.id):
            run_of[execution.id] = context.name
    return run_of


@dataclasses.dataclass(frozen=True)
class ExecutionRow:
    """One execution of a run: its component, state and create / last update times (ms)."""

    component: str
    state: str
    start_ms: int
    end_ms: int

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000


def execution_rows(store, run_context_id: int) -> list[ExecutionRow]:
    """Each execution of a run, in start order, with its component id (the execution id when
    no component is recorded), state and times."""
    node_of_execution = execution_node_ids(store)
    return [
        ExecutionRow(
            component=node_of_execution.get(execution.id, str(execution.id)),
            state=state_name(execution),
            start_ms=execution.create_time_since_epoch,
            end_ms=execution.last_update_time_since_epoch,
        )
        for execution in run_executions(store, run_context_id)
    ]


def component_times(store, run_context_id: int) -> list[tuple[str, str, float]]:
    """Each execution of a run: its component id, state (COMPLETE, CACHED, ...) and seconds."""
    rows = execution_rows(store, run_context_id)
    return [(row.component, row.state, row.seconds) for row in rows]


# --- artifacts ----------------------------------------------------------------------------


def artifact_type_names(store) -> dict[int, str]:
    """{artifact type id: type name}."""
    return {artifact_type.id: artifact_type.name for artifact_type in store.get_artifact_types()}


def artifact_producers(store, artifact_ids: Iterable[int]) -> dict[int, str]:
    """{artifact id: id of the component whose execution output it}."""
    from ml_metadata.proto import metadata_store_pb2

    node_of_execution = execution_node_ids(store)
    return {
        event.artifact_id: node_of_execution.get(event.execution_id, "")
        for event in store.get_events_by_artifact_ids(list(artifact_ids))
        if event.type == metadata_store_pb2.Event.OUTPUT
    }


@dataclasses.dataclass(frozen=True)
class RunArtifact:
    """An artifact of a run, its type name and the component that output it ("" if none)."""

    artifact: object
    type_name: str
    producer: str


def run_artifacts(store, run_context_id: int) -> list[RunArtifact]:
    """The artifacts of a run with their type names and producing components."""
    type_names = artifact_type_names(store)
    artifacts = store.get_artifacts_by_context(run_context_id)
    producers = artifact_producers(store, [artifact.id for artifact in artifacts])
    return [
        RunArtifact(artifact, type_names.get(artifact.type_id, ""), producers.get(artifact.id, ""))
        for artifact in artifacts
    ]


def artifacts_of_type(store, type_name: str) -> list:
    """Every artifact of the type `type_name`, oldest first ([] if there is no such type)."""
    return sorted(store.get_artifacts_by_type(type_name), key=lambda artifact: artifact.id)


def newest_pushed_model(store):
    """The newest PushedModel that was pushed (pushed=1), else the newest Model; None if the
    store has neither."""
    pushed = [
        artifact for artifact in artifacts_of_type(store, "PushedModel")
        if "pushed" in artifact.custom_properties
        and artifact.custom_properties["pushed"].int_value == 1
    ]
    candidates = pushed or artifacts_of_type(store, "Model")
    return newest(candidates) if candidates else None


def value_of(value):
    """The Python value of an ML Metadata `Value` (a property or custom property).

    TFX stores some custom properties as a struct {"__value__": "<JSON>"}; those are decoded.
    """
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "struct_value":
        from google.protobuf import json_format

        as_dict = json_format.MessageToDict(value.struct_value)
        if set(as_dict) == {"__value__"} and isinstance(as_dict["__value__"], str):
            try:
                return json.loads(as_dict["__value__"])
            except ValueError:
                return as_dict["__value__"]
        return as_dict
    if kind == "proto_value":
        return f"<proto {value.proto_value.type_url}>"
    return getattr(value, kind)


def values_of(properties) -> dict:
    """{name: Python value} of a property map (an artifact's `properties`, say)."""
    return {name: value_of(value) for name, value in properties.items()}


def properties_of(node) -> dict:
    """{name: value} of an artifact's or execution's properties and custom properties."""
    merged = values_of(node.custom_properties)
    merged.update(values_of(node.properties))
    return dict(sorted(merged.items()))


# --- lineage ------------------------------------------------------------------------------


def pick_producer(candidates: Sequence[tuple[int, str, int]]) -> tuple[int, list[int]]:
    """Of the executions with an OUTPUT event to one artifact, as (id, state, create time),
    the one that produced it, and the cached executions that reused it later.

    A cache hit records an OUTPUT event to the artifact it reuses; the producer is the oldest
    execution that was not a cache hit (or the oldest of all, if every one was).
    """
    ordered = sorted(candidates, key=lambda candidate: (candidate[2], candidate[0]))
    fresh = [candidate for candidate in ordered if candidate[1] != CACHED]
    producer = (fresh or ordered)[0][0]
    return producer, [
        execution_id for execution_id, state, _ in ordered
        if state == CACHED and execution_id != producer
    ]


def event_key(event) -> str:
    """The key (e.g. "examples") of an event's path, "" if it has none."""
    for step in event.path.steps:
        if step.HasField("key"):
            return step.key
    return ""


def walk_upstream(store, artifact_id: int) -> dict:
    """Follows the events from an artifact back to the root executions.

    Returns {"producers": {artifact id: execution id}, "cached_in": {artifact id: [execution
    ids that reused it as a cache hit]}, "inputs": {execution id: [(key, artifact id)]},
    "executions": {id: Execution}, "artifacts": {id: Artifact}}. MetadataError if the store
    has no artifact `artifact_id`.
    """
    from ml_metadata.proto import metadata_store_pb2

    event_types = metadata_store_pb2.Event
    outputs = (event_types.OUTPUT, event_types.DECLARED_OUTPUT)
    inputs_types = (event_types.INPUT, event_types.DECLARED_INPUT)
    (start,) = store.get_artifacts_by_id([artifact_id]) or [None]
    if start is None:
        raise MetadataError(f"no artifact with id {artifact_id}")
    graph = {"producers": {}, "cached_in": {}, "inputs": {}, "executions": {},
             "artifacts": {start.id: start}}
    frontier = [start.id]
    while frontier:
        output_events = [
            event for event in store.get_events_by_artifact_ids(frontier)
            if event.type in outputs
        ]
        unseen = {event.execution_id for event in output_events} - set(graph["executions"])
        for execution in store.get_executions_by_id(sorted(unseen)):
            graph["executions"][execution.id] = execution
        candidates: dict[int, list[tuple[int, str, int]]] = {}
        for event in output_events:
            execution = graph["executions"][event.execution_id]
            candidates.setdefault(event.artifact_id, []).append(
                (execution.id, state_name(execution), execution.create_time_since_epoch)
            )
        new_producers = []
        for produced_id, produced_by in candidates.items():
            producer, cached_in = pick_producer(produced_by)
            graph["producers"][produced_id] = producer
            graph["cached_in"][produced_id] = cached_in
            if producer not in graph["inputs"]:
                graph["inputs"][producer] = []
                new_producers.append(producer)
        input_events = [
            event for event in store.get_events_by_execution_ids(sorted(new_producers))
            if event.type in inputs_types
        ] if new_producers else []
        for event in sorted(input_events, key=lambda event: (event_key(event), event.artifact_id)):
            graph["inputs"][event.execution_id].append((event_key(event), event.artifact_id))
        frontier = sorted({event.artifact_id for event in input_events} - set(graph["artifacts"]))
        for artifact in store.get_artifacts_by_id(frontier) if frontier else []:
            graph["artifacts"][artifact.id] = artifact
    return graph
