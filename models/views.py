"""Views of a photo: the ways the network is shown it, for features and for serving.

The head is trained on the features of every view of each train photo, and serving scores a
photo by the mean of its views' scores (`TrainingConfig.average_views`). A view is the photo
as the Transform resized it (`plain`), its mirror image (`mirror`), or it squashed to N x N
(`squashN`, e.g. `squash224`: the network sees the photo at a second scale). Cross-validated,
two scales paid and the mirror did not (BENCHMARKS.md, "Recipes").
"""

from __future__ import annotations

import os
import re

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

from models import features

PLAIN, MIRROR = features.PLAIN_VIEW, features.MIRROR_VIEW
_SQUASH = re.compile(features.SQUASH_VIEW_PATTERN)


def squash_size(view: str) -> int | None:
    match = _SQUASH.fullmatch(view)
    return int(match.group(1)) if match else None


def apply_view(images: tf.Tensor, view: str) -> tf.Tensor:
    """A batch [B, h, w, 3] (or one image [h, w, 3]) as `view` shows it."""
    if view == PLAIN:
        return images
    if view == MIRROR:
        return tf.reverse(images, axis=[-2])  # the width axis, batched or not
    size = squash_size(view)
    if size:
        # Bilinear without antialiasing: TFLite has no kernel for the antialiased resize
        # (ScaleAndTranslate), and a view must be computed the same way everywhere.
        return tf.image.resize(images, [size, size], method="bilinear")
    raise ValueError(f"unknown view {view!r}")


def pad_single_image(pixels: tf.Tensor) -> tf.Tensor:
    """A batch of one image as a batch of two copies of it; other batches as they are.

    With oneDNN (TF_ENABLE_ONEDNN_OPTS=1: the runner's setting, and TF's default on Intel CPUs)
    MobileNet took 279 ms on one image against 33 ms on two (BENCHMARKS.md, "First calls"),
    and TFMA's adaptive batching, seeing slow single images, then kept evaluating in batches
    of 1-2.
    """
    return tf.cond(
        tf.shape(pixels)[0] == 1, lambda: tf.concat([pixels, pixels], axis=0), lambda: pixels
    )


def per_view(function, images: tf.Tensor, view_names, pad_single: bool = False) -> list:
    """[function(view of images)] for each view; views of other shapes run as own batches."""
    outputs = []
    for view in view_names:
        batch = apply_view(images, view)
        if pad_single:
            outputs.append(function(pad_single_image(batch))[: tf.shape(images)[0]])
        else:  # no slice: TFLite has no int8 kernel for it
            outputs.append(function(batch))
    return outputs
