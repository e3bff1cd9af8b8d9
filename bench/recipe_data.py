"""The files bench.recipe_features writes and bench.recipe_cv reads, under one folder:
photos.npz (labels, splits, paths, class names) and one <view>.npz a view, whose `features` are
the poolings below side by side, in this order."""

from __future__ import annotations

import os

# Pooling of the network -> its width: the average of the last block's map (the module's own
# feature vector), a generalised mean (p=3) and the maximum of it, the average of block 11's map.
POOLING_WIDTHS = {"avg": 1024, "gem3": 1024, "max": 1024, "avg11": 512}
POOLINGS = tuple(POOLING_WIDTHS)
FEATURES_WIDTH = sum(POOLING_WIDTHS.values())
PHOTOS_FILE = "photos.npz"


def view_path(directory: str, view: str) -> str:
    return os.path.join(directory, f"{view}.npz")
