"""The markdown bench.compare writes: its tables, the section of each mode, and the section put
in place between its markers in BENCHMARKS.md."""

from __future__ import annotations

import dataclasses
import os
import shlex

from bench.compare_runs import SAMPLE_INTERVAL_S, Measurement, median_measurement
from bench.replica import ReplicaStats

DEFAULT_MODE, REPLICATE_MODE = "default", "replicate"
# The headings and markers (`markers`) name the script by its file, as BENCHMARKS.md already
# holds them: a new section replaces the one between them.
SECTION_HEADINGS = {
    DEFAULT_MODE: "## bench/compare.py",
    REPLICATE_MODE: "## bench/compare.py --replicate",
}


def ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return "n/a"
    return f"{numerator / denominator:.2f}x"


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _accuracy(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _at_peak(measurement: Measurement) -> str:
    when = measurement.peak_offset_s
    at = "" if when is None else f" (at {when:,.0f} s)"
    return f"{measurement.component_at_peak}{at}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def measurement_table(measurements: list[Measurement], with_photos: bool = False) -> list[str]:
    header = ["run", "wall s", "peak RSS MB (process tree)", "component at peak",
              "pipeline root MB", "test accuracy"]
    if with_photos:
        header.insert(1, "photos")
    rows = []
    for measurement in measurements:
        row = [
            measurement.label,
            _number(measurement.wall_s),
            _number(measurement.peak_rss_mb),
            _at_peak(measurement),
            _number(measurement.root_mb),
            _accuracy(measurement.test_accuracy),
        ]
        if with_photos:
            row.insert(1, _number(measurement.photos))
        rows.append(row)
    return _table(header, rows)


def component_table(
    first: Measurement, second: Measurement, state_of_second: bool = True
) -> list[str]:
    """Seconds per component in two runs, in the first run's order (then any new ones)."""
    first_seconds = {node: seconds for node, _, seconds in first.component_times}
    second_times = {node: (state, seconds) for node, state, seconds in second.component_times}
    order = list(first_seconds) + [node for node in second_times if node not in first_seconds]
    header = ["component", f"{first.label} s", f"{second.label} s"]
    header.append(f"state in {second.label}" if state_of_second else
                  f"{second.label} / {first.label}")
    rows = []
    for node in order:
        state, seconds = second_times.get(node, ("-", None))
        last = state if state_of_second else ratio(seconds, first_seconds.get(node))
        rows.append([node, _number(first_seconds.get(node), 1), _number(seconds, 1), last])
    return _table(header, rows)


@dataclasses.dataclass
class RunContext:
    """Where and when: the header lines of a section."""

    date_utc: str
    commit: str
    machine: str
    command: str
    load_before: float
    load_after: float
    work_dir: str


def header_lines(context: RunContext) -> list[str]:
    return [
        f"### {context.date_utc}, commit {context.commit}, {context.machine}",
        "",
        f"- **Command:** `{context.command}`",
        f"- **Machine:** {context.machine}; 1-minute load average {context.load_before:.2f} "
        f"before the runs, {context.load_after:.2f} after them.",
        f"- **Work dir:** `{context.work_dir}` (a log and a `.rss.csv` series per run).",
        "- Peak RSS is the largest sum of the RSS of the run's process and all its children, "
        f"sampled every {SAMPLE_INTERVAL_S:g} s (pages shared between processes count once "
        "per process); the component at the peak is the one whose ML Metadata execution "
        "spans that sample. Every run gets `TF_ENABLE_ONEDNN_OPTS=1` unless already set, "
        "as `runner_local.py` does.",
    ]


def default_section(
    context: RunContext,
    colds: list[Measurement],
    reruns: list[Measurement],
    references: list[Measurement],
    head_c: float,
    extra_flags: list[str],
) -> str:
    """The default mode's section; with repeats, every run's row and then their medians."""
    extra = f" plus `{shlex.join(extra_flags)}`" if extra_flags else ""
    repeats = len(colds)
    order = ("one after another" if repeats == 1 else
             f"{repeats} rounds of cold, rerun, reference, interleaved so that a slow spell of "
             "the machine falls on all three kinds")
    lines = header_lines(context) + [
        f"- **Runs, {order}:** cold: `runner_local.py` on a fresh pipeline root with "
        f"`--data-dir` and `--model-handle` as given{extra}; rerun: the same root and flags "
        f"plus `--head-c {head_c:g}` (the head's); reference: "
        "`python -m bench.keras_reference` with its defaults. Pipeline root MB is the root's size "
        "after the run (the rerun's includes the cold run's artifacts).",
        "",
        *measurement_table([run for round_ in zip(colds, reruns, references, strict=True)
                            for run in round_]),
        "",
    ]
    cold, rerun, reference = colds[0], reruns[0], references[0]
    if repeats > 1:
        cold = median_measurement("cold, median", colds)
        rerun = median_measurement("rerun, median", reruns)
        reference = median_measurement("reference, median", references)
        per_round = ", ".join(
            f"{ratio(cold_run.wall_s, reference_run.wall_s)} / "
            f"{ratio(rerun_run.wall_s, cold_run.wall_s)}"
            for cold_run, rerun_run, reference_run in zip(colds, reruns, references, strict=True)
        )
        lines += [
            f"Medians of the {repeats} rounds:",
            "",
            *measurement_table([cold, rerun, reference]),
            "",
            f"Per round, cold / reference and rerun / cold wall: {per_round}.",
            "",
        ]
    medians = " (of the medians)" if repeats > 1 else ""
    lines += [
        f"Ratios{medians}: cold / reference wall **{ratio(cold.wall_s, reference.wall_s)}**, "
        f"peak RSS **{ratio(cold.peak_rss_mb, reference.peak_rss_mb)}**; rerun / cold wall "
        f"**{ratio(rerun.wall_s, cold.wall_s)}**.",
        "",
        *component_table(cold, rerun),
    ]
    return "\n".join(lines)


def replicate_section(
    context: RunContext,
    one: Measurement,
    many: Measurement,
    copies: int,
    replica_dir: str,
    stats: ReplicaStats,
    extra_flags: list[str],
) -> str:
    extra = f" plus `{shlex.join(extra_flags)}`" if extra_flags else ""
    lines = header_lines(context) + [
        f"- **Runs, one after another:** `runner_local.py` cold on the data dir ({one.label}), "
        f"then cold on its {copies}-times copy `{replica_dir}` ({many.label}; fresh roots; "
        f"`--model-handle` as given{extra}). The copy holds each of {stats.photos:,} photos "
        f"{copies} times (`<stem>_nohash_x<k>.jpg`: the original, mirrored, center crops of 90 %, "
        f"85 %, ...; re-encoded JPEGs) and {stats.copied_as_is} other files as they are. "
        "Every copy falls in its photo's split (retrain.py ignores the name from `_nohash_` "
        "on), so no variant of a test photo is trained on.",
        "",
        *measurement_table([one, many], with_photos=True),
        "",
        f"Ratios {many.label} / {one.label}: wall **{ratio(many.wall_s, one.wall_s)}**, peak "
        f"RSS **{ratio(many.peak_rss_mb, one.peak_rss_mb)}**, pipeline root "
        f"**{ratio(many.root_mb, one.root_mb)}**.",
        "",
        *component_table(one, many, state_of_second=False),
    ]
    return "\n".join(lines)


def markers(mode: str) -> tuple[str, str]:
    return (f"<!-- bench/compare.py {mode}: start -->", f"<!-- bench/compare.py {mode}: end -->")


def replace_section(text: str, mode: str, body: str) -> str:
    """`text` with what lies between `mode`'s markers replaced by `body`; without the markers,
    `text` plus a new section (heading and markers) at its end. Nothing else changes."""
    start, end = markers(mode)
    block = f"{start}\n{body.strip()}\n{end}"
    has_start, has_end = start in text, end in text
    if has_start != has_end or text.count(start) > 1 or text.count(end) > 1:
        raise ValueError(f"unbalanced or repeated markers {start} / {end}: fix the file by hand")
    if has_start:
        before, rest = text.split(start, 1)
        if end not in rest:
            raise ValueError(f"{end} comes before {start}: fix the file by hand")
        return before + block + rest.split(end, 1)[1]
    if not text or text.endswith("\n\n"):
        separator = ""
    else:
        separator = "\n" if text.endswith("\n") else "\n\n"
    return f"{text}{separator}{SECTION_HEADINGS[mode]}\n\n{block}\n"


def write_section(path: str, mode: str, body: str) -> None:
    """Puts `body` into the file at `path` (created if missing) with `replace_section`."""
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as existing:
            text = existing.read()
    updated = replace_section(text, mode, body)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(updated)
    os.replace(temporary, path)
