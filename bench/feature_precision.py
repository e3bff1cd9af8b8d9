"""The head's cross-validation on a finished run's cached features as stored, and rounded
to float16 (the cache's dtype since 180c91c): do any out-of-fold predictions change?

    .venv/bin/python -m bench.feature_precision --pipeline-root ROOT

ROOT must hold float32 features (a root of a run before 180c91c); their float16 rounding is then
compared with them. Reads the newest run's train split (bench/run_root.py), folds by
subject as the Trainer, the runner's default head and views.
"""

from __future__ import annotations

import argparse
import os
import warnings

from bench import common

common.tensorflow_defaults(log_level="3")

import numpy as np  # noqa: E402

from bench import run_root  # noqa: E402
from models import bottleneck_cache, head, linear_head  # noqa: E402
from models.training_config import TrainingConfig  # noqa: E402
from pipeline.config import defaults_of  # noqa: E402


def stored_features(folder: str) -> dict[str, np.ndarray]:
    """{key: features} of every shard in `folder`, in the dtype they were saved in."""
    found = {}
    for path in bottleneck_cache.shard_paths(folder):
        keys, features = bottleneck_cache.read_shard(path)
        found.update(zip(keys, features, strict=True))
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline-root", required=True)
    parser.add_argument("--module-key", default="", help="a folder of ROOT/bottlenecks")
    args = parser.parse_args(argv)
    defaults = defaults_of(TrainingConfig)
    key = run_root.module_key(args.pipeline_root, args.module_key, "feature_precision")
    folder = os.path.join(args.pipeline_root, "bottlenecks", key)
    by_view, labels, files = run_root.train_features(
        args.pipeline_root, defaults["views"], stored_features(folder).get, folder,
        "feature_precision")
    if by_view[0].dtype == np.float16:
        raise SystemExit("feature_precision: these features are stored as float16 already; "
                         "pass the root of a run before 180c91c")
    groups = head.subjects(files)
    results = {}
    for name, features in (("stored", by_view),
                           ("float16", [f.astype(np.float16).astype(np.float32)
                                        for f in by_view])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results[name] = linear_head.cross_validate(
                features, labels, int(labels.max()) + 1, groups=groups, kind=defaults["head"])
    print(f"{len(labels):,} train photos x {len(by_view)} views, stored as {by_view[0].dtype}")
    print("| C | CV stored | CV float16 | predictions that differ | max probability difference |")
    print("|---|---|---|---|---|")
    for stored_cv, rounded_cv in zip(results["stored"], results["float16"], strict=True):
        differ = int(np.sum(stored_cv.out_of_fold.argmax(1) != rounded_cv.out_of_fold.argmax(1)))
        print(f"| {stored_cv.c:g} | {100 * stored_cv.accuracy:.2f} ± "
              f"{100 * stored_cv.standard_error:.2f} % | {100 * rounded_cv.accuracy:.2f} ± "
              f"{100 * rounded_cv.standard_error:.2f} % | {differ} of {len(labels)} | "
              f"{np.abs(stored_cv.out_of_fold - rounded_cv.out_of_fold).max():.4f} |")


if __name__ == "__main__":
    main()
