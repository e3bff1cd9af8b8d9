"""Inspect the ML Metadata store of a tfx-poets pipeline root: runs, executions, artifacts and
the lineage of a model, as tables for people or as JSON (`--json`).

    python -m tools.inspect_metadata runs
    python -m tools.inspect_metadata executions [--run RUN_ID]
    python -m tools.inspect_metadata artifacts --type Examples
    python -m tools.inspect_metadata lineage [--artifact-id N]

Everything is read through pipeline.metadata_queries (ml_metadata's `MetadataStore`), opened
read-only; no SQL, and no TensorFlow or TFX import, so it answers in a second. The tables are
tools/metadata_format.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence

from pipeline import metadata_queries as queries
from pipeline.config import DEFAULT_PIPELINE_ROOT
from pipeline.metadata_queries import CACHED, INPUT_BASE, INPUT_FINGERPRINT
from tools.metadata_format import (
    format_artifacts,
    format_executions,
    format_lineage,
    format_runs,
    iso_time,
)

PROG = "python -m tools.inspect_metadata"
EXIT_OK = 0
EXIT_USAGE = 2  # no store, unknown run / type / artifact: one line on stderr

DONE_STATES = frozenset({"COMPLETE", CACHED})


class InspectError(Exception):
    """Something the user can fix (missing store, unknown id); one line, exit code 2."""


# --- pure helpers ---------------------------------------------------------------------


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


def seconds_between(start_ms: int, end_ms: int) -> float:
    return round(max(end_ms - start_ms, 0) / 1000, 3)


# --- reading the store ------------------------------------------------------------------


def open_metadata(metadata_path: str):
    """The store at `metadata_path`, read-only; InspectError if it is missing."""
    try:
        return queries.open_read_only(metadata_path)
    except queries.NoStoreError as error:
        raise InspectError(
            f"{error}: run `python runner_local.py` first, or pass --pipeline-root DIR (or "
            "--metadata PATH) of a finished run"
        ) from error
    except queries.MetadataError as error:
        raise InspectError(str(error)) from error


def list_runs(store) -> list[dict]:
    """Every pipeline run, oldest first, with its state, times and cache hits."""
    runs = []
    for context in queries.run_contexts(store):
        executions = store.get_executions_by_context(context.id)
        states = [queries.state_name(execution) for execution in executions]
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
    runs = queries.run_contexts(store)
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
            for node_id, state, seconds in queries.component_times(store, run.id)
        ],
    }


def artifact_summary(artifact, type_name: str) -> dict:
    return {
        "id": artifact.id,
        "type": type_name,
        "uri": artifact.uri,
        "created": iso_time(artifact.create_time_since_epoch),
        "properties": queries.values_of(artifact.properties),
        "custom_properties": queries.values_of(artifact.custom_properties),
    }


def list_artifacts(store, type_name: str) -> list[dict]:
    """Every artifact of the type `type_name`, oldest first."""
    known = sorted(queries.artifact_type_names(store).values())
    if type_name not in known:
        raise InspectError(
            f"no artifact type {type_name!r} in the store; known types: {', '.join(known)}"
        )
    return [
        artifact_summary(artifact, type_name)
        for artifact in queries.artifacts_of_type(store, type_name)
    ]


def default_lineage_artifact(store):
    """The newest PushedModel that was pushed (pushed=1), else the newest Model."""
    artifact = queries.newest_pushed_model(store)
    if artifact is None:
        raise InspectError(
            "the store has no pushed model and no Model yet: run `python runner_local.py`, or "
            "pass --artifact-id N"
        )
    return artifact


def lineage(store, artifact_id: int | None = None) -> dict:
    """The lineage of an artifact (default: the newest pushed model) back to its image folder."""
    start_id = default_lineage_artifact(store).id if artifact_id is None else artifact_id
    try:
        graph = queries.walk_upstream(store, start_id)
    except queries.MetadataError as error:
        raise InspectError(f"{error}; `{PROG} artifacts --type T` lists them") from error
    type_names = queries.artifact_type_names(store)
    node_ids = queries.execution_node_ids(store)
    run_of = queries.run_of_executions(store)
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
            properties = queries.properties_of(execution)
            step = {
                "level": depth,
                "component": component(execution_id),
                "execution_id": execution_id,
                "state": queries.state_name(execution),
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
