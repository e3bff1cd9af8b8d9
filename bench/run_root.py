"""A finished run's pipeline root, read by the scripts that reuse its cached features
(head_folds.py, feature_precision.py): the newest run's Transform output, the feature
cache's module folder and the train photos' features. Each failure is one line naming the
script (`tool`) and the fix."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np


def transform_outputs(root: str, tool: str) -> tuple[str, str]:
    """(transform graph URI, transformed examples URI) of the newest run in ROOT/metadata.db."""
    from pipeline import metadata_queries

    try:
        store = metadata_queries.open_read_only(os.path.join(root, "metadata.db"))
    except metadata_queries.MetadataError as error:
        raise SystemExit(f"{tool}: {error}; pass a finished run's --pipeline-root") from None
    latest = metadata_queries.latest_run(store)
    items = metadata_queries.run_artifacts(store, latest.id) if latest else []
    uris = {item.type_name: item.artifact.uri for item in items if item.producer == "Transform"}
    if "TransformGraph" not in uris or "Examples" not in uris:
        raise SystemExit(f"{tool}: the newest run in {root}/metadata.db has no Transform "
                         "output; is it a finished run's root?")
    return uris["TransformGraph"], uris["Examples"]


def module_key(root: str, wanted: str, tool: str) -> str:
    folder = os.path.join(root, "bottlenecks")
    if not os.path.isdir(folder):
        raise SystemExit(f"{tool}: no feature cache at {folder}; pass a finished run's "
                         "--pipeline-root")
    keys = sorted(os.listdir(folder))
    if wanted or len(keys) == 1:
        return wanted or keys[0]
    raise SystemExit(f"{tool}: {root}/bottlenecks holds {keys}; pick one with --module-key")


def train_features(root: str, view_names, lookup: Callable, source: str, tool: str) -> tuple:
    """([features per view], labels, file names) of the newest run's train split, each photo's
    view found by `lookup(cache key)` in the folder `source` (None if absent: one line,
    nothing computed)."""
    import tensorflow_transform as tft

    from models import bottleneck_cache, feature_pass

    graph, examples = transform_outputs(root, tool)
    reader = feature_pass.SplitReader([os.path.join(examples, "Split-train", "*")],
                                      tft.TFTransformOutput(graph))
    rows = [[] for _ in view_names]
    for jpeg in reader:
        key = bottleneck_cache.photo_key(jpeg)
        for index, view in enumerate(view_names):
            found = lookup(bottleneck_cache.view_key(key, view))
            if found is None:
                raise SystemExit(f"{tool}: view {view} of a train photo is not in "
                                 f"{source}; run the pipeline on this root first")
            rows[index].append(found)
    return [np.stack(view) for view in rows], np.asarray(reader.labels), reader.files
