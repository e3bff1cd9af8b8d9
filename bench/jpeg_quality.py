"""The Transform's JPEG quality: bytes on disk against cross-validated accuracy.

The Transform stores each resized photo as a JPEG (models/transform_module.py); that split is
the largest part of the pipeline root after the raw examples. For each --qualities value this
makes every train and eval photo's Transform JPEG at the pipeline's defaults (short side 288),
runs the pipeline's own feature pass over the default views (models/feature_pass.py, the
any-size MobileNet of --model-handle), and cross-validates the pipeline's head (5 folds, the C
grid, models/linear_head.py) on the same folds for every quality. The test split is not read.
Paired: each photo's out-of-fold right-or-wrong at a quality minus at the first quality, mean
and standard error over the photos.

    .venv/bin/python -m bench.jpeg_quality --data-dir ../shared/assets/flower_photos \\
        --model-handle ../shared/assets/mobilenet_v1_100_224_feature_vector --qualities 95 90 85
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from bench import common

common.tensorflow_defaults(log_level="3", onednn=True)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402

from bench import photos  # noqa: E402
from models import (  # noqa: E402
    bottleneck_cache,
    feature_pass,
    linear_head,
    resolution_free,
    serving,
    transform_module,
)
from models.training_config import TrainingConfig  # noqa: E402


def transform_jpegs(encoded: list[bytes], settings: TrainingConfig, quality: int) -> list[bytes]:
    resize = tf.function(lambda batch: transform_module.resize_to_jpeg(
        batch, settings.image_size, settings.resize, quality))
    return [resize(tf.constant([photo]))[0].numpy() for photo in encoded]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model-handle", required=True)
    parser.add_argument("--qualities", type=int, nargs="+", default=[95, 90, 85])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    class_names, rows = photos.list_photos(args.data_dir)
    kept = [row for row in rows if row[2] != "test"]
    labels = np.array([row[1] for row in kept])
    encoded = [photos.read_encoded(os.path.join(args.data_dir, row[0])) for row in kept]
    settings = TrainingConfig(model_handle=args.model_handle, class_names=tuple(class_names),
                              seed=args.seed)
    with tempfile.TemporaryDirectory() as backbones:
        layer = hub.KerasLayer(resolution_free.any_size_module(args.model_handle, backbones))
        extract = tf.function(lambda images: layer(images, training=False),
                              reduce_retracing=True)
        right, lines = {}, []
        for quality in args.qualities:
            started = time.time()
            jpegs = transform_jpegs(encoded, settings, quality)
            cache = bottleneck_cache.BottleneckCache("", "probe")
            by_view, _ = feature_pass.cached_features(extract, jpegs, settings, cache,
                                                      settings.views)
            results = linear_head.cross_validate(
                by_view, labels, len(class_names), linear_head.C_GRID, seed=args.seed,
                scored_views=len(serving.serving_views(settings)))
            best = max(results, key=lambda result: result.accuracy)
            right[quality] = best.out_of_fold.argmax(1) == labels
            mean_kb = np.mean([len(jpeg) for jpeg in jpegs]) / 1024
            lines.append(f"| {quality} | {mean_kb:.1f} | {100 * best.accuracy:.2f} ± "
                         f"{100 * best.standard_error:.2f} (C={best.c:g}) | "
                         f"{time.time() - started:.0f} |")
            print(lines[-1], flush=True)
    first = args.qualities[0]
    print(f"\n{len(kept)} train + eval photos of {args.data_dir}, views "
          f"{','.join(settings.views)}, short side {settings.image_size}")
    print("| JPEG quality | mean KB a photo | 5-fold CV accuracy % (best C) | s |")
    print("|---|---|---|---|")
    print("\n".join(lines))
    for quality in args.qualities[1:]:
        difference, error = common.mean_and_standard_error(
            right[quality].astype(float) - right[first].astype(float))
        print(f"quality {quality} - {first}: {100 * difference:+.2f} ± "
              f"{100 * error:.2f} points (paired over photos)")


if __name__ == "__main__":
    main()
