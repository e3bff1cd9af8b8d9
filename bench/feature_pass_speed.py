"""The Trainer's feature pass on a finished run's train photos, timed by batch size: how much of
it is the first batch of each (shape, batch size) and how fast the rest runs.

    .venv/bin/python -m bench.feature_pass_speed --pipeline-root ROOT [--batch-sizes 8 16 32]

The newest run's Transform output (bench/run_root.py) and the any-size module in
ROOT/backbones; the runner's default image size, resize and views; the pass's own batching
(`feature_pass.pending_batches`), no cache. Each batch size runs in a fresh process, so each
pays its own first call and has its own peak RSS. Compare with `bench.backbone_speed`, the bare
backbone on random pixels of one shape.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench import common

common.tensorflow_defaults(log_level="3", onednn=True)

from bench import run_root  # noqa: E402


def backbone_dir(root: str) -> str:
    folder = os.path.join(root, "backbones")
    found = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    if len(found) != 1:
        raise SystemExit(f"feature_pass_speed: {folder} holds {found or 'no module'}; "
                         "pass --module")
    return os.path.join(folder, found[0])


def time_one_batch_size(args) -> None:
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_transform as tft

    from models import feature_pass, network, transform_module, views
    from models.training_config import TrainingConfig
    from pipeline.config import defaults_of

    defaults = defaults_of(TrainingConfig)
    graph, examples = run_root.transform_outputs(args.pipeline_root, "feature_pass_speed")
    reader = feature_pass.SplitReader([os.path.join(examples, "Split-train", "*")],
                                      tft.TFTransformOutput(graph))
    jpegs = []
    for jpeg in reader:
        jpegs.append(jpeg)
        if len(jpegs) == args.photos:
            break
    network.keep_autograph_out_of_tf_keras()  # as TransferModel does
    layer = hub.KerasLayer(args.module)
    # As the Trainer's split_features traces its extractor.
    extract = tf.function(lambda images: layer(images, training=False), reduce_retracing=True)
    seen, first_s, first_photos, again_s, again_photos = set(), 0.0, 0, 0.0, 0
    started = time.time()
    for batch in feature_pass.pending_batches(enumerate(jpegs), args.batch):
        images = transform_module.decode_transformed_images(
            tf.constant([jpeg for _, jpeg in batch]), defaults["image_size"], defaults["resize"])
        called = time.time()
        for output in views.per_view(extract, images, defaults["views"], pad_single=True):
            output.numpy()
        seconds, signature = time.time() - called, tuple(images.shape)
        if signature in seen:
            again_s, again_photos = again_s + seconds, again_photos + len(batch)
        else:
            first_s, first_photos = first_s + seconds, first_photos + len(batch)
            seen.add(signature)
    total_s = time.time() - started
    print(f"| {args.batch} | {len(jpegs):,} | {total_s:.1f} | {len(seen)} | {first_s:.1f} s, "
          f"{first_photos:,} photos | {again_photos:,} | "
          f"{1000 * again_s / max(again_photos, 1):.1f} | {int(common.peak_rss_mb()):,} |",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline-root", required=True, help="a finished run's root")
    parser.add_argument("--module", help="the any-size module (default: the one in "
                        "ROOT/backbones)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--photos", type=int, default=0, help="the first N train photos "
                        "(default: all)")
    parser.add_argument("--batch", type=int, help="time one batch size in this process")
    args = parser.parse_args()
    args.module = args.module or backbone_dir(args.pipeline_root)
    if args.batch:
        time_one_batch_size(args)
        return 0
    print(f"{common.machine_description()}; module {args.module}")
    print("| batch | photos | pass s | (shape, batch) pairs | their first batches "
          "| photos in batches of a pair seen before | ms a photo there | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for batch in args.batch_sizes:
        command = common.module_command(
            "bench.feature_pass_speed", "--pipeline-root", args.pipeline_root, "--module",
            args.module, "--photos", str(args.photos), "--batch", str(batch))
        if subprocess.run(command, check=False).returncode:
            print(f"feature_pass_speed: the batch-{batch} run failed", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
