"""Inspect the ML Metadata store of a tfx-poets pipeline root: runs, executions, artifacts and
the lineage of a model, as tables for people or as JSON (`--json`).

    python -m tools.inspect_metadata runs
    python -m tools.inspect_metadata executions [--run RUN_ID]
    python -m tools.inspect_metadata artifacts --type Examples
    python -m tools.inspect_metadata lineage [--artifact-id N]

Everything is read through ml_metadata's `MetadataStore` (contexts, executions, artifacts and
events), opened read-only; no SQL, and no TensorFlow or TFX import, so it answers in a second.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence

from pipeline import results
from pipeline.config import DEFAULT_PIPELINE_ROOT

PROG = "python -m tools.inspect_metadata"
EXIT_OK = 0
EXIT_USAGE = 2  # no store, unknown run / type / artifact: one line on stderr

RUN_CONTEXT_TYPE = "pipeline_run"
CACHED = "CACHED"
DONE_STATES = frozenset({"COMPLETE", CACHED})
SHORT_VALUE_CHARS = 60
# The execution property of a file-based ExampleGen that names its input folder.
INPUT_BASE = "input_base"
INPUT_FINGERPRINT = "input_fingerprint"


class InspectError(Exception):
    """Something the user can fix (missing store, unknown id); one line, exit code 2."""


# --- pure helpers: values, states, times, tables ---------------------------------------


def run_state(execution_states: Iterable[str]) -> str:
    """COMPLETE if every execution is COMPLETE or CACHED, FAILED if any FAILED, else RUNNING.

    A run with no execution yet is RUNNING: it has just started.
    """
    states = list(execution_states)
    if "FAILED" in states:
        return "FAILED"
    if states and all(state in DONE_STATES for state in states):
        return "COMPLETE"
    return "RUNNING"


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


def properties_of(node) -> dict:
    """{name: value} of an artifact's or execution's properties and custom properties."""
    merged = {name: value_of(value) for name, value in node.custom_properties.items()}
    merged.update({name: value_of(value) for name, value in node.properties.items()})
    return dict(sorted(merged.items()))


def short(value, limit: int = SHORT_VALUE_CHARS) -> str:
    """`value` on one line, at most `limit` characters (JSON for lists and dicts)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = json.dumps(value, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def iso_time(milliseconds: int) -> str:
    """Milliseconds since the epoch as local ISO 8601 time with its UTC offset."""
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000).astimezone()
    return moment.isoformat(timespec="seconds")


def seconds_between(start_ms: int, end_ms: int) -> float:
    return round(max(end_ms - start_ms, 0) / 1000, 3)


def format_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A plain-text table: a header, a rule, then one line per row; numbers right-aligned."""
    rows = [list(row) for row in rows]
    cells = [[str(header) for header in headers]] + [
        ["" if cell is None else str(cell) for cell in row] for row in rows
    ]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    numeric = [
        bool(rows)
        and all(isinstance(row[column], int | float) or row[column] in ("", None) for row in rows)
        and any(isinstance(row[column], int | float) for row in rows)
        for column in range(len(headers))
    ]

    def line(row):
        return "  ".join(
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(row, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


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


def lineage_levels(start: int, input_producers: Mapping[int, Iterable[int]]) -> list[list[int]]:
    """Executions in levels, from `start` (level 0) back to the roots.

    `input_producers[e]` are the executions that produced e's inputs. An execution's level is
    its longest distance from `start`, so each level only consumes what later levels produced:
    Pusher <- Evaluator <- Trainer <- Transform <- ImageExampleGen.
    """
    level = {start: 0}
    order = [start]
    # Relax along the DAG until no level grows; a cycle (never in ML Metadata) stops at len.
    for _ in range(len(input_producers) + 1):
        changed = False
        for consumer in list(order):
            for producer in input_producers.get(consumer, ()):
                if producer not in level:
                    order.append(producer)
                if level.get(producer, -1) < level[consumer] + 1:
                    level[producer] = level[consumer] + 1
                    changed = True
        if not changed:
            break
    levels: list[list[int]] = [[] for _ in range(max(level.values()) + 1)]
    for execution_id in sorted(order):  # ids grow with time: older executions first
        levels[level[execution_id]].append(execution_id)
    return levels


def chain_text(chain: Sequence[Sequence[str]]) -> str:
    """[["Pusher"], ["Evaluator", "Trainer"]] -> "Pusher <- Evaluator/Trainer"."""
    return " <- ".join("/".join(level) for level in chain)


# --- reading the store ------------------------------------------------------------------


def open_metadata(metadata_path: str):
    """The store at `metadata_path`, read-only; InspectError if it is missing."""
    if not os.path.isfile(metadata_path):
        raise InspectError(
            f"no ML Metadata store at {metadata_path}: run `python runner_local.py` first, or "
            "pass --pipeline-root DIR (or --metadata PATH) of a finished run"
        )
    try:
        return results.open_store(metadata_path, read_only=True)
    except Exception as error:  # ml_metadata raises RuntimeError for a file that is no store
        # Keep the reason, not the SQL statement ml_metadata appends to it.
        reason = re.sub(r"\s+query:\s+(CREATE|SELECT|INSERT)\b.*", "", " ".join(str(error).split()))
        reason = reason[:200]
        raise InspectError(
            f"cannot read {metadata_path} as an ML Metadata store: {reason}"
        ) from error


def _state_name(execution) -> str:
    from ml_metadata.proto import metadata_store_pb2

    return metadata_store_pb2.Execution.State.Name(execution.last_known_state)


def _newest(nodes):
    return max(nodes, key=lambda node: (node.create_time_since_epoch, node.id))


def _run_contexts(store) -> list:
    return sorted(
        store.get_contexts_by_type(RUN_CONTEXT_TYPE),
        key=lambda context: (context.create_time_since_epoch, context.id),
    )


def list_runs(store) -> list[dict]:
    """Every pipeline run, oldest first, with its state, times and cache hits."""
    runs = []
    for context in _run_contexts(store):
        executions = store.get_executions_by_context(context.id)
        states = [_state_name(execution) for execution in executions]
        end_ms = max(
            (execution.last_update_time_since_epoch for execution in executions),
            default=context.create_time_since_epoch,
        )
        runs.append({
            "run_id": context.name,
            "state": run_state(states),
            "start_time": iso_time(context.create_time_since_epoch),
            "duration_seconds": seconds_between(context.create_time_since_epoch, end_ms),
            "executions": len(executions),
            "cache_hits": states.count(CACHED),
        })
    return runs


def find_run(store, run_id: str | None):
    """The run context named `run_id`, or the newest run."""
    runs = _run_contexts(store)
    if not runs:
        raise InspectError("the store has no pipeline run yet: run `python runner_local.py`")
    if run_id is None:
        return runs[-1]
    for context in runs:
        if context.name == run_id:
            return context
    raise InspectError(
        f"no run {run_id!r}; `{PROG} runs` lists them (newest: {runs[-1].name})"
    )


def list_executions(store, run_id: str | None = None) -> dict:
    """The executions of one run (default: the newest), in start order."""
    run = find_run(store, run_id)
    return {
        "run_id": run.name,
        "executions": [
            {"component": node_id, "state": state, "seconds": round(seconds, 3),
             "cached": state == CACHED}
            for node_id, state, seconds in results.component_times(store, run.id)
        ],
    }


def _artifact_type_names(store) -> dict[int, str]:
    return {artifact_type.id: artifact_type.name for artifact_type in store.get_artifact_types()}


def artifact_summary(artifact, type_name: str) -> dict:
    return {
        "id": artifact.id,
        "type": type_name,
        "uri": artifact.uri,
        "created": iso_time(artifact.create_time_since_epoch),
        "properties": {name: value_of(value) for name, value in artifact.properties.items()},
        "custom_properties": {
            name: value_of(value) for name, value in artifact.custom_properties.items()
        },
    }


def list_artifacts(store, type_name: str) -> list[dict]:
    """Every artifact of the type `type_name`, oldest first."""
    known = sorted(_artifact_type_names(store).values())
    if type_name not in known:
        raise InspectError(
            f"no artifact type {type_name!r} in the store; known types: {', '.join(known)}"
        )
    artifacts = sorted(store.get_artifacts_by_type(type_name), key=lambda artifact: artifact.id)
    return [artifact_summary(artifact, type_name) for artifact in artifacts]


def default_lineage_artifact(store):
    """The newest PushedModel that was pushed (pushed=1), else the newest Model."""
    pushed = [
        artifact for artifact in store.get_artifacts_by_type("PushedModel")  # [] if no such type
        if "pushed" in artifact.custom_properties
        and artifact.custom_properties["pushed"].int_value == 1
    ]
    candidates = pushed or store.get_artifacts_by_type("Model")
    if not candidates:
        raise InspectError(
            "the store has no pushed model and no Model yet: run `python runner_local.py`, or "
            "pass --artifact-id N"
        )
    return _newest(candidates)


def _event_key(event) -> str:
    for step in event.path.steps:
        if step.HasField("key"):
            return step.key
    return ""


def walk_upstream(store, artifact_id: int) -> dict:
    """Follows the events from an artifact back to the root executions.

    Returns {"producers": {artifact id: execution id}, "cached_in": {artifact id: [execution
    ids that reused it as a cache hit]}, "inputs": {execution id: [(key, artifact id)]},
    "executions": {id: Execution}, "artifacts": {id: Artifact}}.
    """
    from ml_metadata.proto import metadata_store_pb2

    event_types = metadata_store_pb2.Event
    outputs = (event_types.OUTPUT, event_types.DECLARED_OUTPUT)
    inputs_types = (event_types.INPUT, event_types.DECLARED_INPUT)
    (start,) = store.get_artifacts_by_id([artifact_id]) or [None]
    if start is None:
        raise InspectError(f"no artifact with id {artifact_id}; `{PROG} artifacts --type T` "
                           "lists them")
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
                (execution.id, _state_name(execution), execution.create_time_since_epoch)
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
        for event in sorted(input_events, key=lambda event: (_event_key(event), event.artifact_id)):
            graph["inputs"][event.execution_id].append((_event_key(event), event.artifact_id))
        frontier = sorted({event.artifact_id for event in input_events} - set(graph["artifacts"]))
        for artifact in store.get_artifacts_by_id(frontier) if frontier else []:
            graph["artifacts"][artifact.id] = artifact
    return graph


def _run_of_executions(store) -> dict[int, str]:
    run_of = {}
    for context in _run_contexts(store):
        for execution in store.get_executions_by_context(context.id):
            run_of[execution.id] = context.name
    return run_of


def lineage(store, artifact_id: int | None = None) -> dict:
    """The lineage of an artifact (default: the newest pushed model) back to its image folder."""
    start_id = default_lineage_artifact(store).id if artifact_id is None else artifact_id
    graph = walk_upstream(store, start_id)
    type_names = _artifact_type_names(store)
    node_ids = results.execution_node_ids(store)
    run_of = _run_of_executions(store)
    start = graph["artifacts"][start_id]
    document = {
        "artifact": artifact_summary(start, type_names.get(start.type_id, "")),
        "chain": [],
        "steps": [],
        INPUT_BASE: None,
        INPUT_FINGERPRINT: None,
    }
    root_producer = graph["producers"].get(start_id)
    if root_producer is None:  # imported or never produced: nothing upstream
        return document

    def component(execution_id):
        return node_ids.get(execution_id, f"execution {execution_id}")

    input_producers = {
        execution_id: [
            graph["producers"][input_id] for _, input_id in inputs
            if input_id in graph["producers"]
        ]
        for execution_id, inputs in graph["inputs"].items()
    }
    levels = lineage_levels(root_producer, input_producers)
    document["chain"] = [[component(execution_id) for execution_id in level] for level in levels]
    for depth, level in enumerate(levels):
        for execution_id in level:
            execution = graph["executions"][execution_id]
            properties = properties_of(execution)
            step = {
                "level": depth,
                "component": component(execution_id),
                "execution_id": execution_id,
                "state": _state_name(execution),
                "run_id": run_of.get(execution_id),
                "inputs": [],
            }
            for key, input_id in graph["inputs"][execution_id]:
                artifact = graph["artifacts"][input_id]
                producer = graph["producers"].get(input_id)
                step["inputs"].append({
                    "key": key,
                    "artifact_id": input_id,
                    "type": type_names.get(artifact.type_id, ""),
                    "uri": artifact.uri,
                    "producer": None if producer is None else component(producer),
                    "producer_execution_id": producer,
                    "cached_in": graph["cached_in"].get(input_id, []),
                })
            if INPUT_BASE in properties:  # a file-based ExampleGen: where the images came from
                step[INPUT_BASE] = properties[INPUT_BASE]
                step[INPUT_FINGERPRINT] = properties.get(INPUT_FINGERPRINT) or _output_fingerprint(
                    graph, execution_id
                )
                if document[INPUT_BASE] is None:
                    document[INPUT_BASE] = step[INPUT_BASE]
                    document[INPUT_FINGERPRINT] = step[INPUT_FINGERPRINT]
            document["steps"].append(step)
    return document


def _output_fingerprint(graph: dict, execution_id: int) -> str | None:
    """The `input_fingerprint` custom property of an Examples artifact the execution wrote."""
    for artifact_id, producer in graph["producers"].items():
        properties = graph["artifacts"][artifact_id].custom_properties
        if producer == execution_id and INPUT_FINGERPRINT in properties:
            return properties[INPUT_FINGERPRINT].string_value
    return None


# --- tables for people ------------------------------------------------------------------


def format_runs(runs: Sequence[Mapping]) -> str:
    if not runs:
        return "no pipeline runs yet"
    return format_table(
        ["run id", "state", "started", "seconds", "executions", "cache hits"],
        [
            [run["run_id"], run["state"], run["start_time"], round(run["duration_seconds"], 1),
             run["executions"], run["cache_hits"]]
            for run in runs
        ],
    )


def format_executions(document: Mapping) -> str:
    table = format_table(
        ["component", "state", "seconds", "cached"],
        [
            [row["component"], row["state"], round(row["seconds"], 1),
             "yes" if row["cached"] else "no"]
            for row in document["executions"]
        ],
    )
    return f"run {document['run_id']}\n{table}"


def format_artifacts(type_name: str, artifacts: Sequence[Mapping]) -> str:
    """One line per property; the id and uri only on an artifact's first line."""
    if not artifacts:
        return f"no {type_name} artifacts"
    rows = []
    for artifact in artifacts:
        values = {**artifact["custom_properties"], **artifact["properties"]}
        names = sorted(values) or [""]
        for index, name in enumerate(names):
            first = index == 0
            rows.append([
                artifact["id"] if first else "",
                artifact["uri"] if first else "",
                name,
                short(values[name]) if name else "",
            ])
    return format_table(["id", "uri", "property", "value"], rows)


def format_lineage(document: Mapping) -> str:
    artifact = document["artifact"]
    lines = [f"lineage of {artifact['type']} {artifact['id']}  {artifact['uri']}"]
    if not document["steps"]:
        lines.append("  no execution produced it: nothing upstream")
        return "\n".join(lines)
    lines.append(f"chain: {chain_text(document['chain'])}")
    lines.append("")
    rows = []
    for step in document["steps"]:
        head = [step["level"], step["component"], step["execution_id"], step["state"]]
        blank = ["", "", "", ""]
        inputs = step["inputs"] or [None]
        for index, item in enumerate(inputs):
            prefix = head if index == 0 else blank
            if item is None:
                rows.append(prefix + ["", "(no inputs)", ""])
            else:
                artifact_text = f"{item['type']} {item['artifact_id']}"
                rows.append(prefix + [item["key"], artifact_text, item["producer"] or ""])
    lines.append(format_table(
        ["level", "component", "execution", "state", "input", "artifact", "from"], rows
    ))
    sources = [step for step in document["steps"] if INPUT_BASE in step]
    for step in sources:
        lines.append("")
        lines.append(f"{step['component']} (execution {step['execution_id']}) read:")
        lines.append(f"  image folder  {step[INPUT_BASE]}")
        lines.append(f"  fingerprint   {step[INPUT_FINGERPRINT] or 'n/a'}")
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--pipeline-root", default=DEFAULT_PIPELINE_ROOT, metavar="DIR",
                       help="pipeline root whose DIR/metadata.db is read "
                       f"(default: {DEFAULT_PIPELINE_ROOT})")
    where.add_argument("--metadata", metavar="PATH",
                       help="the ML Metadata SQLite file itself, instead of --pipeline-root")
    common.add_argument("--json", action="store_true",
                        help="print one JSON document instead of a table")

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Inspect the ML Metadata store of a tfx-poets pipeline root: its runs, each run's "
            "executions, the artifacts of a type, and the lineage of a model back to its image "
            "folder. Read-only; tables by default, JSON with --json."
        ),
        epilog=(
            "examples:\n"
            f"  {PROG} runs\n"
            f"  {PROG} executions --run 2026-11-29T15:52:48.875438\n"
            f"  {PROG} artifacts --type Examples --pipeline-root {DEFAULT_PIPELINE_ROOT}\n"
            f"  {PROG} lineage --json\n"
            "exit status: 0 ok, 2 no store (or unknown run, type or artifact)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "runs", parents=[common], help="every pipeline run: state, start, duration, cache hits",
        description="Every pipeline run, oldest first: run id, state (COMPLETE, FAILED or "
        "RUNNING), start time, seconds, number of executions and of cache hits.",
    )
    executions = commands.add_parser(
        "executions", parents=[common], help="the executions of one run (default: newest)",
        description="Each execution of one run: component id, state, seconds, cached or not.",
    )
    executions.add_argument("--run", metavar="RUN_ID",
                            help="run id as `runs` lists it (default: the newest run)")
    artifacts = commands.add_parser(
        "artifacts", parents=[common], help="the artifacts of one type, with their properties",
        description="Every artifact of one type: id, uri, properties and custom properties.",
    )
    artifacts.add_argument("--type", required=True, dest="type_name", metavar="TYPE",
                           help="artifact type, e.g. Examples, Model, ModelBlessing, "
                           "ModelEvaluation, PushedModel")
    lineage_parser = commands.add_parser(
        "lineage", parents=[common], help="where an artifact came from, back to the images",
        description="Walks from an artifact back through the executions that produced it and "
        "their inputs to the image folder ImageExampleGen read (its input_base) and that "
        "folder's fingerprint.",
    )
    lineage_parser.add_argument("--artifact-id", type=int, metavar="N",
                                help="artifact id (default: the newest pushed model, else the "
                                "newest Model)")
    return parser


def _document_and_text(store, args) -> tuple[object, str]:
    if args.command == "runs":
        runs = list_runs(store)
        return {"runs": runs}, format_runs(runs)
    if args.command == "executions":
        document = list_executions(store, args.run)
        return document, format_executions(document)
    if args.command == "artifacts":
        artifacts = list_artifacts(store, args.type_name)
        return ({"type": args.type_name, "artifacts": artifacts},
                format_artifacts(args.type_name, artifacts))
    document = lineage(store, args.artifact_id)
    return document, format_lineage(document)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    metadata_path = args.metadata or os.path.join(args.pipeline_root, "metadata.db")
    try:
        store = open_metadata(metadata_path)
        document, text = _document_and_text(store, args)
    except InspectError as error:
        print(f"{PROG.split()[-1]}: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        print(json.dumps({"metadata": metadata_path, **document}, indent=2) if args.json
              else text)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly, as other commands do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
