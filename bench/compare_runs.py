"""One measured run of bench.compare: a subprocess started from the repo root, its process
tree's RSS sampled, its wall time, and what it left (ML Metadata, pipeline root, logs)."""

from __future__ import annotations

import dataclasses
import os
import shlex
import statistics
import subprocess
import sys
import time

from bench import common
from bench.run_facts import (
    RunFacts,
    component_at,
    parse_markdown_row,
    parse_percent,
    read_run_facts,
    summary_test_accuracy,
)

SAMPLE_INTERVAL_S = 0.2
MB = common.MB
REFERENCE_ACCURACY_COLUMN = "test acc, fine-tuned"


class RunFailed(Exception):
    """A measured subprocess failed; the message names its log file."""


@dataclasses.dataclass
class Measurement:
    label: str
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    peak_offset_s: float | None = None  # seconds from the start to the peak sample
    component_at_peak: str = "-"
    root_mb: float | None = None
    test_accuracy: float | None = None
    # (component id, state, seconds) in start order, as pipeline.metadata_queries.component_times.
    component_times: list[tuple[str, str, float]] = dataclasses.field(default_factory=list)
    photos: int | None = None
    log_path: str = ""
    rss_csv_path: str = ""
    evaluation_uri: str = ""  # the TestEvaluator's ModelEvaluation artifact


def disk_usage_mb(path: str) -> float:
    """Sum of the sizes of the files under `path` (hard links counted once), in MB (2^20)."""
    seen, total = set(), 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                stat = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total / MB


def measure_process(
    label: str, command: list[str], work_dir: str, env: dict[str, str] | None = None
) -> tuple[Measurement, common.TreeRssSampler]:
    """Runs `command` from the repo root, output to WORK/<label>.log, sampling its tree's RSS.

    Raises RunFailed naming the log if it exits non-zero.
    """
    log_path = os.path.join(work_dir, f"{label}.log")
    print(f"[{label}] {shlex.join(command)}  (log: {log_path})", file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        log.write(f"$ {shlex.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command, cwd=common.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        sampler = common.TreeRssSampler(process.pid, SAMPLE_INTERVAL_S).start()
        try:
            returncode = process.wait()
        finally:
            if process.poll() is None:  # interrupted: do not leave the run behind
                process.terminate()
                process.wait()
            sampler.stop()
    wall = time.monotonic() - started
    if returncode != 0:
        raise RunFailed(f"the {label} run failed (exit status {returncode}); see {log_path}")
    start_epoch = sampler.samples[0][0] if sampler.samples else None
    measurement = Measurement(
        label=label,
        wall_s=wall,
        peak_rss_mb=sampler.peak_bytes / MB,
        peak_offset_s=(
            sampler.peak_time - start_epoch
            if sampler.peak_time is not None and start_epoch is not None
            else None
        ),
        log_path=log_path,
    )
    print(
        f"[{label}] {wall:.0f} s, peak RSS {measurement.peak_rss_mb:,.0f} MB",
        file=sys.stderr,
        flush=True,
    )
    return measurement, sampler


def write_rss_series(
    path: str, samples: list[tuple[float, int]], intervals: list[tuple[str, float, float]]
) -> None:
    """CSV of the sampled series: seconds from the first sample, RSS MB, component then."""
    start = samples[0][0] if samples else 0.0
    with open(path, "w") as series:
        series.write("seconds,rss_mb,component\n")
        for moment, rss in samples:
            component = component_at(moment, intervals) if intervals else "-"
            series.write(f"{moment - start:.2f},{rss / MB:.1f},{component}\n")


def child_environment() -> dict[str, str]:
    """The environment of every measured run: this one, with runner_local.py's oneDNN default
    (TF_ENABLE_ONEDNN_OPTS=1 unless set) so the reference computes with the same kernels."""
    env = dict(os.environ)
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    return env


def measure_pipeline(
    label: str,
    pipeline_root: str,
    data_dir: str,
    model_handle: str,
    extra_flags: list[str],
    work_dir: str,
) -> Measurement:
    command = [
        sys.executable, "runner_local.py", "--pipeline-root", pipeline_root,
        "--data-dir", data_dir, "--model-handle", model_handle, *extra_flags,
    ]
    measurement, sampler = measure_process(label, command, work_dir, child_environment())
    try:
        facts = read_run_facts(pipeline_root)
    except Exception as error:  # report the run without the metadata rather than lose it
        print(f"[{label}] cannot read ML Metadata: {error}", file=sys.stderr)
        facts = RunFacts()
    measurement.component_times = facts.component_times
    measurement.evaluation_uri = facts.evaluation_uri
    measurement.component_at_peak = component_at(sampler.peak_time, facts.intervals)
    measurement.root_mb = disk_usage_mb(pipeline_root)
    measurement.rss_csv_path = os.path.join(work_dir, f"{label}.rss.csv")
    write_rss_series(measurement.rss_csv_path, sampler.samples, facts.intervals)
    return measurement


def measure_reference(data_dir: str, model_handle: str, work_dir: str,
                      label: str = "reference") -> Measurement:
    command = common.module_command(
        "bench.keras_reference", "--data-dir", data_dir, "--model-handle", model_handle
    )
    measurement, sampler = measure_process(label, command, work_dir, child_environment())
    with open(measurement.log_path, errors="replace") as log:
        row = parse_markdown_row(log.read(), REFERENCE_ACCURACY_COLUMN)
    measurement.test_accuracy = parse_percent(row.get(REFERENCE_ACCURACY_COLUMN, ""))
    measurement.rss_csv_path = os.path.join(work_dir, f"{label}.rss.csv")
    write_rss_series(measurement.rss_csv_path, sampler.samples, [])
    return measurement


def fill_test_accuracies(measurements: list[Measurement]) -> None:
    """Reads each pipeline run's test accuracy from its TestEvaluator output (TFMA, so
    TensorFlow: called after every measured run, while nothing is measured), else from the
    summary at the end of its log."""
    for measurement in measurements:
        if measurement.evaluation_uri:
            try:
                from pipeline import results

                accuracy, _ = results.overall_and_per_class_accuracy(measurement.evaluation_uri)
                measurement.test_accuracy = accuracy
            except Exception as error:
                print(f"[{measurement.label}] cannot read {measurement.evaluation_uri}: "
                      f"{error}", file=sys.stderr)
        if measurement.test_accuracy is None and measurement.log_path:
            with open(measurement.log_path, errors="replace") as log:
                measurement.test_accuracy = summary_test_accuracy(log.read())


def _median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def median_measurement(label: str, measurements: list[Measurement]) -> Measurement:
    """One row for repeated runs of one kind: the median of each figure over the repeats;
    component seconds are medians per component, in the first run's order."""
    seconds: dict[str, list[float]] = {}
    states: dict[str, set[str]] = {}
    for measurement in measurements:
        for node, state, node_seconds in measurement.component_times:
            seconds.setdefault(node, []).append(node_seconds)
            states.setdefault(node, set()).add(state)
    return Measurement(
        label=label,
        wall_s=_median([measurement.wall_s for measurement in measurements]),
        peak_rss_mb=_median([measurement.peak_rss_mb for measurement in measurements]),
        component_at_peak="-",
        root_mb=_median([measurement.root_mb for measurement in measurements]),
        test_accuracy=_median([measurement.test_accuracy for measurement in measurements]),
        component_times=[
            (node, "/".join(sorted(states[node])), statistics.median(node_seconds))
            for node, node_seconds in seconds.items()
        ],
    )
