"""Measures the pipeline against a plain Keras reference, in one run on one machine.

Default mode: three runs, one after another, each a subprocess started from the repo root,
with its stdout and stderr in a log file in the work dir:
  cold       runner_local.py on a fresh pipeline root (WORK/pipeline_root)
  rerun      the same root and flags plus --head-c X (the head's regularisation; default
             RERUN_HEAD_C, where the cold run chooses C itself), so the data components come
             from TFX's cache
  reference  python -m bench.keras_reference --data-dir D --model-handle M
With --repeats N the three run N times, interleaved (cold-1, rerun-1, reference-1, cold-2, ...;
roots WORK/pipeline_root-<i>), and the section adds the medians and the ratios of the medians:
on a noisy machine one round can land on either side of a target.

    .venv/bin/python -m bench.compare --data-dir ../shared/assets/flower_photos \\
        --model-handle ../shared/assets/mobilenet_v1_100_224_feature_vector \\
        [--repeats N] [--work-dir DIR] [--benchmarks BENCHMARKS.md] [--rerun-head-c X] \\
        [-- extra runner_local.py flags]

--replicate N mode: copies the data dir with every photo present N times as distinct photos
(<stem>_nohash_x<k>.jpg: k=0 the original, k=1 mirrored, k=2 a 90 % center crop, k=3 mirrored and
cropped, then 85 %, 80 %, ... crops), then runs the cold pipeline on the original data and on
the copy (separate fresh roots) and compares them. No reference run in this mode.

    .venv/bin/python -m bench.compare --replicate 3 --data-dir ... --model-handle ...

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
import datetime
import os
import shlex
import subprocess
import sys
import tempfile

from bench import common
from bench.compare_report import (
    DEFAULT_MODE,
    REPLICATE_MODE,
    RunContext,
    default_section,
    replicate_section,
    write_section,
)
from bench.compare_runs import (
    RunFailed,
    fill_test_accuracies,
    measure_pipeline,
    measure_reference,
)
from bench.photos import count_photos
from bench.replica import MAX_REPLICATE, build_replica

# tf_keras for TFMA in fill_test_accuracies, and in the environment every run inherits.
common.tensorflow_defaults()

MAX_REPEATS = 5  # each round is about 20 minutes on 2 cores


def git_commit() -> str:
    """`git rev-parse --short HEAD`, with a note if tracked files differ from it (read-only)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=common.REPO_ROOT, capture_output=True,
            text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "--no-optional-locks", "diff", "--quiet", "HEAD", "--"], cwd=common.REPO_ROOT,
        capture_output=True,
    ).returncode
    return f"{commit} plus uncommitted changes" if dirty == 1 else commit


def command_line(argv: list[str]) -> str:
    python = sys.executable
    if os.path.abspath(python).startswith(common.REPO_ROOT + os.sep):
        python = os.path.relpath(os.path.abspath(python), common.REPO_ROOT)
    return shlex.join([python, "-m", "bench.compare", *argv])


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
        prog="python -m bench.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", required=True, help="folder with one subfolder per class")
    parser.add_argument("--model-handle", required=True,
                        help="TF Hub image feature-vector module (path or URL)")
    parser.add_argument("--work-dir", default="",
                        help="where pipeline roots, logs, RSS series and the replica go; must "
                        "not hold earlier roots (default: a new folder under the temp dir)")
    parser.add_argument("--benchmarks", default=os.path.join(common.REPO_ROOT, "BENCHMARKS.md"),
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
        date_utc=date_utc, commit=git_commit(), machine=common.machine_description(),
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
