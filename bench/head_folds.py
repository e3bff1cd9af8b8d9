"""The head's cross-validation on a finished run's cached features: folds by subject or not.

    .venv/bin/python -m bench.head_folds --pipeline-root ROOT

Reads the newest Transform output's train split under ROOT, takes every photo's features of
each view from ROOT/bottlenecks/<module key> (the run must have computed them: nothing is
computed here; --module-key picks one when the root has features of several modules),
and cross-validates the head over C (models/linear_head.py) twice: folds over photos, and
folds that keep the photos of one subject (retrain.py's `_nohash_` rule) together, as the
Trainer does. On a folder of renamed copies (bench/compare.py --replicate) the first leaks.
"""

from __future__ import annotations

import argparse
import glob
import os
import time
import warnings

from bench import common

common.tensorflow_defaults(log_level="3")

import numpy as np  # noqa: E402
import tensorflow_transform as tft  # noqa: E402

from models import bottleneck_cache, feature_pass, head, linear_head  # noqa: E402
from models.training_config import TrainingConfig  # noqa: E402


def newest(pattern: str) -> str:
    paths = sorted(glob.glob(pattern), key=lambda path: int(os.path.basename(path)))
    if not paths:
        raise SystemExit(f"head_folds: nothing matches {pattern}; is it a finished run's root?")
    return paths[-1]


def module_key(root: str, wanted: str) -> str:
    keys = sorted(os.listdir(os.path.join(root, "bottlenecks")))
    if wanted or len(keys) == 1:
        return wanted or keys[0]
    raise SystemExit(f"head_folds: {root}/bottlenecks holds {keys}; pick one with --module-key")


def cached_train_features(root: str, key: str, view_names) -> tuple:
    """([features per view], labels, file names) of the train split, from the cache only."""
    transform = os.path.join(root, "artifacts", "Transform")
    graph = newest(os.path.join(transform, "transform_graph", "*"))
    examples = newest(os.path.join(transform, "transformed_examples", "*"))
    reader = feature_pass.SplitReader([os.path.join(examples, "Split-train", "*")],
                                      tft.TFTransformOutput(graph))
    cache = bottleneck_cache.BottleneckCache(os.path.join(root, "bottlenecks"), key)
    rows = [[] for _ in view_names]
    for jpeg in reader:
        key = bottleneck_cache.photo_key(jpeg)
        for index, view in enumerate(view_names):
            found = cache.get(bottleneck_cache.view_key(key, view))
            if found is None:
                raise SystemExit(f"head_folds: view {view} of a train photo is not in "
                                 f"{cache.directory}; run the pipeline on this root first")
            rows[index].append(found)
    return [np.stack(view) for view in rows], np.asarray(reader.labels), reader.files


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline-root", required=True)
    parser.add_argument("--module-key", default="", help="a folder of ROOT/bottlenecks")
    args = parser.parse_args(argv)
    view_names = TrainingConfig.__dataclass_fields__["views"].default
    by_view, labels, files = cached_train_features(
        args.pipeline_root, module_key(args.pipeline_root, args.module_key), view_names)
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
