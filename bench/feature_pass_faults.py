"""Times the Trainer's feature pass again and again, with the page faults and reclaim of each.

The pipeline's MobileNet feature pass (`trainer_module.cached_features`, an empty cache, so
every photo goes through the network) runs PASSES times in one process over the train split
of a Transform output, each with a fresh model. Per pass it prints the seconds, this process's
major and minor page faults (getrusage), the machine's file-page refaults
(`workingset_refault_file` in /proc/vmstat) and, where the kernel runs DAMON schemes, the bytes
they applied their action to (DAMON sysfs stats, refreshed before and after the pass).

The question behind it (BENCHMARKS.md, "The feature-pass slow mode"): the same pass takes
either about 26 s or about 41 s on these machines. If the slow passes are the ones where
the kernel dropped pages the process then had to read back from disk, the faults say so.

    .venv/bin/python bench/feature_pass_faults.py --transform-dir ROOT/artifacts/Transform \\
        --model-handle ../shared/assets/mobilenet_v1_100_224_feature_vector [--passes 6]
"""

import argparse
import glob
import os
import resource
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow_transform as tft  # noqa: E402
import tf_keras  # noqa: E402

from components import bottleneck_cache, trainer_module  # noqa: E402
from pipeline.config import TrainingConfig  # noqa: E402

DAMON_KDAMONDS = "/sys/kernel/mm/damon/admin/kdamonds"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transform-dir", required=True,
                        help="a Transform artifact folder (holds transform_graph/ and "
                        "transformed_examples/)")
    parser.add_argument("--model-handle", required=True)
    parser.add_argument("--passes", type=int, default=6)
    return parser.parse_args()


def newest(folder: str) -> str:
    """The newest execution folder under a Transform output (they are numbered)."""
    entries = sorted(glob.glob(os.path.join(folder, "*")), key=os.path.getmtime)
    if not entries:
        raise SystemExit(f"feature_pass_faults: nothing under {folder}; pass a Transform "
                         "artifact folder of a finished run")
    return entries[-1]


def vmstat(name: str) -> int:
    with open("/proc/vmstat") as stats:
        for line in stats:
            key, value = line.split()
            if key == name:
                return int(value)
    return 0


def damon_applied_bytes() -> int | None:
    """Bytes all DAMON schemes have applied their action to since they started, or None."""
    total, found = 0, False
    for kdamond in glob.glob(os.path.join(DAMON_KDAMONDS, "[0-9]*")):
        try:
            with open(os.path.join(kdamond, "state"), "w") as state:
                state.write("update_schemes_stats")
        except OSError:
            return None  # not root, or no DAMON: nothing to report
        for stat in glob.glob(os.path.join(kdamond, "contexts/*/schemes/*/stats/sz_applied")):
            with open(stat) as value:
                total += int(value.read())
                found = True
    return total if found else None


def counters() -> dict:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"major faults": usage.ru_majflt, "minor faults": usage.ru_minflt,
            "file refaults": vmstat("workingset_refault_file"),
            "DAMON applied MB": damon_applied_bytes()}


def main():
    args = parse_args()
    graph = newest(os.path.join(args.transform_dir, "transform_graph"))
    examples = newest(os.path.join(args.transform_dir, "transformed_examples"))
    train_files = [os.path.join(examples, "Split-train", "*")]
    tf_transform_output = tft.TFTransformOutput(graph)
    settings = TrainingConfig(model_handle=args.model_handle, class_names=("a", "b"))
    print("| pass | seconds | photos | major faults | minor faults | file refaults (machine) "
          "| DAMON applied MB (machine) |\n|---|---|---|---|---|---|---|", flush=True)
    for index in range(1, args.passes + 1):
        transfer = trainer_module.TransferModel(settings, fine_tuning=False)
        before, started = counters(), time.time()
        _, labels, _ = trainer_module.cached_features(
            transfer.feature_extractor, train_files, tf_transform_output, settings.image_size,
            bottleneck_cache.BottleneckCache("", "none"),
        )
        seconds, after = time.time() - started, counters()
        delta = {
            key: (None if after[key] is None or before[key] is None else after[key] - before[key])
            for key in after
        }
        damon = delta["DAMON applied MB"]
        print(f"| {index} | {seconds:.1f} | {len(labels)} | {delta['major faults']:,} | "
              f"{delta['minor faults']:,} | {delta['file refaults']:,} | "
              f"{'-' if damon is None else f'{damon / 2**20:,.0f}'} |", flush=True)
        del transfer
        tf_keras.backend.clear_session()


if __name__ == "__main__":
    main()
