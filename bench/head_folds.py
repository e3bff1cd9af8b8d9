"""The head's cross-validation on a finished run's cached features: folds by subject or not.

    .venv/bin/python -m bench.head_folds --pipeline-root ROOT

Reads the train split of the newest run's Transform output (from ROOT/metadata.db), takes
every photo's features of
each view from ROOT/bottlenecks/<module key> (the run must have computed them: nothing is
computed here; --module-key picks one when the root has features of several modules),
and cross-validates the head over C (models/linear_head.py) twice: folds over photos, and
folds that keep the photos of one subject (retrain.py's `_nohash_` rule) together, as the
Trainer does. On a folder of renamed copies (bench/compare.py --replicate) the first leaks.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

from bench import common

common.tensorflow_defaults(log_level="3")

from bench import run_root  # noqa: E402
from models import bottleneck_cache, head, linear_head  # noqa: E402
from models.training_config import TrainingConfig  # noqa: E402
from pipeline.config import defaults_of  # noqa: E402


def cached_train_features(root: str, key: str, view_names) -> tuple:
    """([features per view], labels, file names) of the train split, from the cache only."""
    cache = bottleneck_cache.BottleneckCache(os.path.join(root, "bottlenecks"), key)
    return run_root.train_features(root, view_names, cache.get, cache.directory,
                                   "head_folds")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline-root", required=True)
    parser.add_argument("--module-key", default="", help="a folder of ROOT/bottlenecks")
    args = parser.parse_args(argv)
    view_names = defaults_of(TrainingConfig)["views"]
    by_view, labels, files = cached_train_features(
        args.pipeline_root, run_root.module_key(args.pipeline_root, args.module_key, "head_folds"),
        view_names)
    groups = head.subjects(files)
    print(f"{len(labels):,} train photos x {len(view_names)} views, "
          f"{len(set(groups or [])):,} subjects")
    print("| folds | " + " | ".join(f"C={c:g}" for c in linear_head.C_GRID) + " | s |")
    print("|---|" + "---|" * (len(linear_head.C_GRID) + 1))
    for name, fold_groups in (("over photos", None), ("by subject", groups)):
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = linear_head.cross_validate(by_view, labels, int(labels.max()) + 1,
                                                 groups=fold_groups)
        cells = " | ".join(f"{100 * r.accuracy:.2f} ± {100 * r.standard_error:.2f} %"
                           for r in results)
        print(f"| {name} | {cells} | {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
