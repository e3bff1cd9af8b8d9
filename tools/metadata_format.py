"""How `python -m tools.inspect_metadata` prints for people: plain-text tables of runs,
executions, artifacts and a lineage, from the documents its commands build (which `--json`
prints as they are)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence

from pipeline.metadata_queries import INPUT_BASE, INPUT_FINGERPRINT

SHORT_VALUE_CHARS = 60


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


def chain_text(chain: Sequence[Sequence[str]]) -> str:
    """[["Pusher"], ["Evaluator", "Trainer"]] -> "Pusher <- Evaluator/Trainer"."""
    return " <- ".join("/".join(level) for level in chain)


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
