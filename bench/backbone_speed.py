"""Forward-pass throughput of an any-size MobileNet backbone at several input shapes, in
float32 and with oneDNN's bfloat16 rewrite (`--bfloat16`), oneDNN on as the runner sets it.

    .venv/bin/python -m bench.backbone_speed --module PIPELINE_ROOT/backbones/<key>-any-size
    .venv/bin/python -m bench.backbone_speed --module ... --bfloat16
"""

from __future__ import annotations

import argparse

from bench import common

common.tensorflow_defaults(log_level="3", onednn=True)

import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402

SHAPES = ((32, 288, 384, 3), (32, 224, 224, 3), (32, 288, 288, 3), (32, 288, 448, 3))
REPEATS = 3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", required=True, help="a TF Hub module taking any size")
    parser.add_argument("--bfloat16", action="store_true")
    args = parser.parse_args(argv)
    if args.bfloat16:
        tf.config.optimizer.set_experimental_options(
            {"auto_mixed_precision_onednn_bfloat16": True})
    layer = hub.KerasLayer(args.module)
    forward = tf.function(lambda images: layer(images), reduce_retracing=True)
    for shape in SHAPES:
        images = tf.random.uniform(shape)
        # The first call traces, and oneDNN makes its primitives.
        walls, _ = common.timed_calls(lambda _, images=images: forward(images).numpy(), 1, REPEATS)
        seconds = sum(walls) / REPEATS
        print(f"{'x'.join(map(str, shape[1:3]))} batch {shape[0]}: {shape[0] / seconds:.1f} img/s")


if __name__ == "__main__":
    main()
