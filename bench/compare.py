"""Measures the pipeline against a plain Keras reference, in one run on one machine.

Default mode: three runs, one after another, each a subprocess started from the repo root,
with its stdout and stderr in a log file in the work dir:
  cold       runner_local.py on a fresh pipeline root (WORK/pipeline_root)
  rerun      the same root and flags plus --head-c X (the head's regularisation; default
             RERUN_HEAD_C, where the cold run chooses C itself), so the data components come
             from TFX's cache
  reference  bench/keras_reference.py --data-dir D --model-handle M
With --repeats N the three run N times, interleaved (cold-1, rerun-1, reference-1, cold-2, ...;
roots WORK/pipeline_root-<i>), and the section adds the medians and the ratios of the medians:
on a noisy machine one round can land on either side of a target.

    .venv/bin/python bench/compare.py --data-dir ../shared/assets/flower_photos \\
        --model-handle ../shared/assets/mobilenet_v1_100_224_feature_vector \\
        [--repeats N] [--work-dir DIR] [--benchmarks BENCHMARKS.md] [--rerun-head-c X] \\
        [-- extra runner_local.py flags]

--replicate N mode: copies the data dir with every photo present N times as distinct photos
(<stem>_nohash_x<k>.jpg: k=0 the original, k=1 mirrored, k=2 a 90 % center crop, k=3 mirrored and
cropped, then 85 %, 80 %, ... crops), then runs the cold pipeline on the original data and on
the copy (separate fresh roots) and compares them. No reference run in this mode.

    .venv/bin/python bench/compare.py --replicate 3 --data-dir ... --model-handle ...

Each run is measured for wall seconds and the peak RSS of its whole process tree (the sum of the
RSS of the process and all its descendants, sampled every 0.2 s; the series is kept in
WORK/<run>.rss.csv). Pipeline runs also give the seconds and state of each component and the
component running at the peak (from ML Metadata, WORK/.../metadata.db), the pipeline root's disk
use and the test-split accuracy (the TestEvaluator's). The markdown section printed at the end
replaces the text between the markers
<!-- bench/compare.py default: start --> and <!-- bench/compare.py default: end -->
(or the `replicate` ones) in --benchmarks, or is appended to it with the markers.
If a run fails, one line names its log file and the exit status is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import psutil  # noqa: E402

from components.image_example_gen import images  # noqa: E402  (no TensorFlow)

SAMPLE_INTERVAL_S = 0.2
MB = 2**20
DEFAULT_MODE, REPLICATE_MODE = "default", "replicate"
SECTION_HEADINGS = {
    DEFAULT_MODE: "## bench/compare.py",
    REPLICATE_MODE: "## bench/compare.py --replicate",
}
# Replica variants k >= 2 crop the center by these fractions in turn (k=1 is the mirror alone);
# each further cycle through them saves the JPEG at the next lower quality, so bytes differ.
CROP_FRACTIONS = (0.90, 0.85, 0.80, 0.75, 0.70)
JPEG_QUALITIES = (95, 90, 85, 80)
MAX_REPLICATE = 2 + 2 * len(CROP_FRACTIONS) * len(JPEG_QUALITIES)  # all variants distinct
REFERENCE_ACCURACY_COLUMN = "test acc, fine-tuned"
MAX_REPEATS = 5  # each round is about 20 minutes on 2 cores


class RunFailed(Exception):
    """A measured subprocess failed; the message names its log file."""


# ---------------------------------------------------------------------------------------------
# Process-tree RSS sampling


def tree_rss_bytes(pid: int) -> int | None:
    """The summed RSS of process `pid` and all its descendants; None once `pid` is gone."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass  # exited between listing and reading
    return total


class TreeRssSampler:
    """Samples `tree_rss_bytes(pid)` every `interval_s` from a thread until stopped.

    `samples` is the series [(time.time(), bytes)]; `peak_bytes` / `peak_time` its maximum.
    """

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S):
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self.peak_bytes = 0
        self.peak_time: float | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def sample(self) -> None:
        rss = tree_rss_bytes(self.pid)
        if rss is None:
            return
        now = time.time()
        self.samples.append((now, rss))
        if rss > self.peak_bytes:
            self.peak_bytes, self.peak_time = rss, now

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self.sample()
            self._stopped.wait(self.interval_s)

    def start(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def __enter__(self) -> TreeRssSampler:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Component at a time, from execution intervals


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


# ---------------------------------------------------------------------------------------------
# Results of a run


@dataclasses.dataclass
class Measurement:
    label: str
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    peak_offset_s: float | None = None  # seconds from the start to the peak sample
    component_at_peak: str = "-"
    root_mb: float | None = None
    test_accuracy: float | None = None
    # (component id, state, seconds) in start order, as pipeline.results.component_times.
    component_times: list[tuple[str, str, float]] = dataclasses.field(default_factory=list)
    photos: int | None = None
    log_path: str = ""
    rss_csv_path: str = ""
    evaluation_uri: str = ""  # the TestEvaluator's ModelEvaluation artifact


@dataclasses.dataclass
class RunFacts:
    """What ML Metadata says about the newest run of a pipeline root."""

    component_times: list[tuple[str, str, float]] = dataclasses.field(default_factory=list)
    intervals: list[tuple[str, float, float]] = dataclasses.field(default_factory=list)
    evaluation_uri: str = ""


def read_run_facts(pipeline_root: str) -> RunFacts:
    """Component times, execution intervals (epoch s) and the test evaluation of the newest
    `pipeline_run` in ROOT/metadata.db, opened read-only (ml_metadata only, no TensorFlow)."""
    from pipeline import results

    metadata_path = os.path.join(pipeline_root, "metadata.db")
    if not os.path.exists(metadata_path):
        return RunFacts()
    store = results.open_store(metadata_path, read_only=True)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return RunFacts()
    latest = max(runs, key=lambda context: (context.create_time_since_epoch, context.id))
    node_of_execution = results.execution_node_ids(store)
    intervals = [
        (
            node_of_execution.get(execution.id, str(execution.id)),
            execution.create_time_since_epoch / 1000,
            execution.last_update_time_since_epoch / 1000,
        )
        for execution in store.get_executions_by_context(latest.id)
    ]
    type_names = {
        artifact_type.id: artifact_type.name for artifact_type in store.get_artifact_types()
    }
    artifacts = store.get_artifacts_by_context(latest.id)
    producers = results.artifact_producers(store, [artifact.id for artifact in artifacts])
    evaluation_uri = ""
    for artifact in artifacts:
        if (
            type_names.get(artifact.type_id) == "ModelEvaluation"
            and producers.get(artifact.id) == results.TEST_EVALUATOR_ID
        ):
            evaluation_uri = artifact.uri
    return RunFacts(
        component_times=results.component_times(store, latest.id),
        intervals=sorted(intervals, key=lambda interval: interval[1]),
        evaluation_uri=evaluation_uri,
    )


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


def count_photos(data_dir: str) -> int:
    """Files with an image name in the class folders (what ImageExampleGen tries to read)."""
    return sum(
        len(images.list_class_images(data_dir, entry.name))
        for entry in os.scandir(data_dir)
        if entry.is_dir() and not entry.name.startswith(".")
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


# ---------------------------------------------------------------------------------------------
# Running and measuring one subprocess


def measure_process(
    label: str, command: list[str], work_dir: str, env: dict[str, str] | None = None
) -> tuple[Measurement, TreeRssSampler]:
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
            command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        sampler = TreeRssSampler(process.pid).start()
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
    command = [
        sys.executable, os.path.join("bench", "keras_reference.py"),
        "--data-dir", data_dir, "--model-handle", model_handle,
    ]
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


# ---------------------------------------------------------------------------------------------
# Replicated data


@dataclasses.dataclass(frozen=True)
class Variant:
    mirror: bool
    crop: float  # fraction of each side kept, centered; 1.0 keeps the whole photo
    quality: int  # JPEG quality; 0 for the original file (k=0), not re-encoded


def variant_for(k: int) -> Variant:
    """The k-th copy of a photo: 0 the original, 1 mirrored, 2 cropped 90 %, 3 mirrored and
    cropped 90 %, 4 and 5 the same at 85 %, ... ; each cycle through CROP_FRACTIONS lowers the
    JPEG quality one step, so the first MAX_REPLICATE copies all differ."""
    if not 0 <= k < MAX_REPLICATE:
        raise ValueError(f"copy {k} is out of range [0, {MAX_REPLICATE})")
    if k == 0:
        return Variant(mirror=False, crop=1.0, quality=0)
    if k == 1:
        return Variant(mirror=True, crop=1.0, quality=JPEG_QUALITIES[0])
    step = k // 2 - 1  # k = 2, 3 -> 0; 4, 5 -> 1; ...
    cycle, index = divmod(step, len(CROP_FRACTIONS))
    return Variant(mirror=k % 2 == 1, crop=CROP_FRACTIONS[index], quality=JPEG_QUALITIES[cycle])


def replica_name(stem: str, k: int) -> str:
    return f"{stem}_nohash_x{k}.jpg"


def center_crop_box(width: int, height: int, fraction: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centered box keeping `fraction` of each side."""
    new_width = max(1, round(width * fraction))
    new_height = max(1, round(height * fraction))
    left, top = (width - new_width) // 2, (height - new_height) // 2
    return left, top, left + new_width, top + new_height


def render_variant(image, variant: Variant) -> bytes:
    """JPEG bytes of `variant` of an upright RGB PIL image."""
    import io

    from PIL import ImageOps

    if variant.crop < 1.0:
        image = image.crop(center_crop_box(image.width, image.height, variant.crop))
    if variant.mirror:
        image = ImageOps.mirror(image)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=variant.quality)
    return buffer.getvalue()


def _load_upright_rgb(path: str):
    """The photo at `path` as an upright RGB PIL image, or None if Pillow cannot read it."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as opened:
            opened.load()
            return ImageOps.exif_transpose(opened).convert("RGB")
    except Exception:  # Pillow raises many types for unreadable files
        return None


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@dataclasses.dataclass
class ReplicaStats:
    photos: int = 0  # source photos replicated N times
    written: int = 0  # files written for them (photos * N)
    copied_as_is: int = 0  # unreadable images, other files: copied once, under their own name


def _replica_stems(filenames: list[str]) -> dict[str, str]:
    """{file name: stem for its copies}; the extension joins the stem where two files of one
    folder share a stem (a.jpg and a.png), so their copies do not collide."""
    stems = [os.path.splitext(name)[0] for name in filenames]
    return {
        name: stem if stems.count(stem) == 1 else f"{stem}_{os.path.splitext(name)[1][1:]}"
        for name, stem in zip(filenames, stems, strict=True)
    }


def build_replica(data_dir: str, out_dir: str, copies: int, progress: bool = True) -> ReplicaStats:
    """Copies `data_dir` to `out_dir` with each photo of each class folder present `copies`
    times as <stem>_nohash_x<k>.jpg (k as in `variant_for`). Files Pillow cannot read, files without
    an image name and files outside the class folders are copied once, unchanged, so the
    pipeline's own checks still report them."""
    from tqdm import tqdm

    if not 1 <= copies <= MAX_REPLICATE:
        raise ValueError(f"copies must be in [1, {MAX_REPLICATE}], got {copies}")
    jobs = []  # (source, target folder, stem or None for as-is)
    for dirpath, dirnames, filenames in os.walk(data_dir):
        dirnames.sort()
        relative = os.path.relpath(dirpath, data_dir)
        target_dir = os.path.normpath(os.path.join(out_dir, relative))
        in_class_folder = relative != os.curdir
        photo_names = sorted(
            name for name in filenames if in_class_folder and images.is_image_file(name)
        )
        stems = _replica_stems(photo_names)
        for name in sorted(filenames):
            jobs.append((os.path.join(dirpath, name), target_dir, stems.get(name)))
    os.makedirs(out_dir, exist_ok=True)
    stats = ReplicaStats()
    for source, target_dir, stem in tqdm(
        jobs, desc=f"replicating x{copies}", unit="file", disable=not progress
    ):
        os.makedirs(target_dir, exist_ok=True)
        image = _load_upright_rgb(source) if stem is not None else None
        if image is None:
            shutil.copy2(source, os.path.join(target_dir, os.path.basename(source)))
            stats.copied_as_is += 1
            continue
        _link_or_copy(source, os.path.join(target_dir, replica_name(stem, 0)))
        for k in range(1, copies):
            with open(os.path.join(target_dir, replica_name(stem, k)), "wb") as copy:
                copy.write(render_variant(image, variant_for(k)))
        stats.photos += 1
        stats.written += copies
    return stats


# ---------------------------------------------------------------------------------------------
# Markdown


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
        "`bench/keras_reference.py` with its defaults. Pipeline root MB is the root's size "
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


# ---------------------------------------------------------------------------------------------
# Machine and command line


def git_commit() -> str:
    """`git rev-parse --short HEAD`, with a note if tracked files differ from it (read-only)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
            text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "--no-optional-locks", "diff", "--quiet", "HEAD", "--"], cwd=REPO_ROOT,
        capture_output=True,
    ).returncode
    return f"{commit} plus uncommitted changes" if dirty == 1 else commit


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    try:
        with open(cpuinfo) as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def machine_description() -> str:
    cores = len(os.sched_getaffinity(0))  # what nproc prints
    memory = psutil.virtual_memory().total / 2**30
    return f"{cores} cores (nproc), {memory:.1f} GiB RAM, {cpu_model()}"


def command_line(argv: list[str]) -> str:
    python = sys.executable
    if os.path.abspath(python).startswith(REPO_ROOT + os.sep):
        python = os.path.relpath(os.path.abspath(python), REPO_ROOT)
    return shlex.join([python, "bench/compare.py", *argv])


def split_extra_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """(this script's arguments, runner_local.py flags after a `--`)."""
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1:]
    return argv, []


# The rerun's head C: a fixed value, where the cold run's default chooses C by
# cross-validation, so only the Trainer and the steps after it run again.
RERUN_HEAD_C = 10.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/compare.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", required=True, help="folder with one subfolder per class")
    parser.add_argument("--model-handle", required=True,
                        help="TF Hub image feature-vector module (path or URL)")
    parser.add_argument("--work-dir", default="",
                        help="where pipeline roots, logs, RSS series and the replica go; must "
                        "not hold earlier roots (default: a new folder under the temp dir)")
    parser.add_argument("--benchmarks", default=os.path.join(REPO_ROOT, "BENCHMARKS.md"),
                        help="markdown file the section is written into "
                        "(default: BENCHMARKS.md at the repo root)")
    parser.add_argument("--rerun-head-c", type=float, default=RERUN_HEAD_C,
                        help="the head's --head-c of the rerun (default %(default)g)")
    parser.add_argument("--replicate", type=int, default=0, metavar="N",
                        help=f"compare the cold run on the data with one on an N-times copy "
                        f"(2 <= N <= {MAX_REPLICATE}) instead of the default mode")
    parser.add_argument("--repeats", type=int, default=1, metavar="N",
                        help="default mode: N rounds of cold, rerun and reference, "
                        "interleaved; the section adds their medians (default %(default)s)")
    args = parser.parse_args(argv)
    if not 1 <= args.repeats <= MAX_REPEATS:
        parser.error(f"--repeats must be in [1, {MAX_REPEATS}], got {args.repeats}")
    if args.repeats > 1 and args.replicate:
        parser.error("--repeats is for the default mode; --replicate runs each once")
    if args.replicate and not 2 <= args.replicate <= MAX_REPLICATE:
        parser.error(f"--replicate must be in [2, {MAX_REPLICATE}], got {args.replicate}")
    if not os.path.isdir(args.data_dir):
        parser.error(f"--data-dir {args.data_dir} is not a folder")
    return args


def _flag_value(flags: list[str], name: str) -> str | None:
    """The last value of `name` (`--x v` or `--x=v`) among `flags`, or None."""
    value = None
    for index, flag in enumerate(flags):
        if flag == name and index + 1 < len(flags):
            value = flags[index + 1]
        elif flag.startswith(name + "="):
            value = flag.split("=", 1)[1]
    return value


def _local_or_url(path: str) -> str:
    """An absolute path if `path` exists here (the runs start from the repo root), else as is."""
    return os.path.abspath(path) if os.path.exists(path) else path


def _fresh_folder(path: str) -> str:
    if os.path.exists(path) and os.listdir(path):
        raise RunFailed(f"{path} already exists and is not empty; pass a new --work-dir")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, extra_flags = split_extra_flags(argv)
    args = parse_args(own)
    owned = ("--pipeline-root", "--data-dir", "--model-handle")
    if any(flag.split("=", 1)[0] in owned for flag in extra_flags):
        print("compare.py: give --data-dir and --model-handle before the `--`; the pipeline "
              "root is chosen here", file=sys.stderr)
        return 2
    cold_head_c = _flag_value(extra_flags, "--head-c")
    if cold_head_c is not None and float(cold_head_c) == args.rerun_head_c:
        print(f"compare.py: warning: the rerun's --head-c {args.rerun_head_c:g} "
              "is the cold run's, so the rerun will be all cached", file=sys.stderr)
    data_dir = os.path.abspath(args.data_dir)
    model_handle = _local_or_url(args.model_handle)
    work_dir = os.path.abspath(args.work_dir or tempfile.mkdtemp(prefix="tfx_poets_compare_"))
    os.makedirs(work_dir, exist_ok=True)
    date_utc = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()[0]
    mode = REPLICATE_MODE if args.replicate else DEFAULT_MODE
    try:
        if mode == DEFAULT_MODE:
            rerun_flags = [*extra_flags, "--head-c", f"{args.rerun_head_c:g}"]
            colds, reruns, references = [], [], []
            for round_ in range(1, args.repeats + 1):
                suffix = "" if args.repeats == 1 else f"-{round_}"
                root = _fresh_folder(os.path.join(work_dir, f"pipeline_root{suffix}"))
                colds.append(measure_pipeline(f"cold{suffix}", root, data_dir, model_handle,
                                              extra_flags, work_dir))
                reruns.append(measure_pipeline(f"rerun{suffix}", root, data_dir, model_handle,
                                               rerun_flags, work_dir))
                references.append(measure_reference(data_dir, model_handle, work_dir,
                                                    f"reference{suffix}"))
            fill_test_accuracies(colds + reruns)
        else:
            copies = args.replicate
            one_root = _fresh_folder(os.path.join(work_dir, "pipeline_root_x1"))
            many_root = _fresh_folder(os.path.join(work_dir, f"pipeline_root_x{copies}"))
            replica_dir = _fresh_folder(
                os.path.join(work_dir, f"{os.path.basename(data_dir.rstrip(os.sep))}_x{copies}")
            )
            stats = build_replica(data_dir, replica_dir, copies)
            one = measure_pipeline("1x", one_root, data_dir, model_handle, extra_flags, work_dir)
            many = measure_pipeline(
                f"{copies}x", many_root, replica_dir, model_handle, extra_flags, work_dir
            )
            one.photos, many.photos = count_photos(data_dir), count_photos(replica_dir)
            fill_test_accuracies([one, many])
    except RunFailed as failure:
        print(f"compare.py: {failure}", file=sys.stderr)
        return 1
    context = RunContext(
        date_utc=date_utc, commit=git_commit(), machine=machine_description(),
        command=command_line(argv), load_before=load_before, load_after=os.getloadavg()[0],
        work_dir=work_dir,
    )
    if mode == DEFAULT_MODE:
        section = default_section(
            context, colds, reruns, references, args.rerun_head_c, extra_flags
        )
    else:
        section = replicate_section(context, one, many, copies, replica_dir, stats, extra_flags)
    print(section)
    write_section(args.benchmarks, mode, section)
    print(f"\nwritten to {args.benchmarks}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
