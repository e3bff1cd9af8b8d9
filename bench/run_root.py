"""A finished run's pipeline root, read by the scripts that reuse its cached features
(head_folds.py, feature_precision.py): the newest run's Transform output and the feature
cache's module folder. Each failure is one line naming the script (`tool`) and the fix."""

from __future__ import annotations

import os


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
