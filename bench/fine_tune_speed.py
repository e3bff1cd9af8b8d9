"""Times one fine-tuning step of the Trainer's model under variants, to find what makes it slow.

The model is the Trainer's (models/trainer_module.py): the TF Hub MobileNet as a trainable
hub.KerasLayer called with training=False (batch norm in inference mode), dropout and a softmax
Dense head, Adam, sparse categorical cross-entropy, one batch of random pixels in [0, 1] (speed
does not depend on the pixels). Each variant is warmed up, then timed; the figure is the median
seconds per step. Variants that need a fresh TensorFlow (oneDNN, thread pools) run this script
again in a subprocess.

    .venv/bin/python -m bench.fine_tune_speed --model-handle MODULE [--variants a,b,...] [--ops]

--ops also times the convolutions of MobileNet V1 1.0/224 one by one (forward, gradient with
respect to the input, gradient with respect to the filter), depthwise and pointwise apart.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

from bench import common

common.tensorflow_defaults(log_level="2")

# Variants run in this process, in this order unless --variants says otherwise.
IN_PROCESS = {
    "forward": "forward pass only (tf.function, training=False): the inference reference",
    "head_only": "backbone frozen (trainable=False), train_on_batch: head only",
    "baseline": "the Trainer's step: train_on_batch, Adam, hub layer training=False",
    "fit": "as baseline, through model.fit (per-batch times from a callback)",
    "bn_training": "as baseline, hub layer called with training=True",
    "sgd": "as baseline, SGD instead of Adam",
    "jit": "as baseline, compile(jit_compile=True) (XLA)",
    "custom_all": "tf.function GradientTape step, all backbone variables",
    "last_blocks": "tf.function GradientTape step, only blocks >= --trainable-from (and head)",
    "top_blocks_layer": "train_on_batch with a hub.KerasLayer subclass whose trainable_weights "
                        "are only blocks >= --trainable-from (the Trainer-ready form)",
    "keras_mobilenet": "tf_keras.applications.MobileNet (same architecture, Keras layers, "
                       "random weights) instead of the hub module, train_on_batch",
}
# Variants that need their own process: (environment, extra flags, description).
SUBPROCESS = {
    "onednn": ({"TF_ENABLE_ONEDNN_OPTS": "1"}, [], "baseline with TF_ENABLE_ONEDNN_OPTS=1"),
    "no_onednn": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, [], "baseline with TF_ENABLE_ONEDNN_OPTS=0"),
    "threads_1_1": ({}, ["--intra", "1", "--inter", "1"], "baseline, intra-op 1, inter-op 1"),
    "threads_2_1": ({}, ["--intra", "2", "--inter", "1"], "baseline, intra-op 2, inter-op 1"),
}
DEFAULT_VARIANTS = (
    "forward,head_only,baseline,fit,bn_training,sgd,jit,custom_all,last_blocks,keras_mobilenet,"
    "onednn,no_onednn,threads_1_1"
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-handle", required=True,
                        help="TF Hub MobileNet feature-vector module (path or URL)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help=f"comma-separated, from {', '.join([*IN_PROCESS, *SUBPROCESS])} "
                             f"(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    parser.add_argument("--trainable-from", type=int, default=12,
                        help="last_blocks: first trainable MobileNet block (1-13; 0 = conv1)")
    parser.add_argument("--intra", type=int, default=0, help="intra-op threads (0: TF default)")
    parser.add_argument("--inter", type=int, default=0, help="inter-op threads (0: TF default)")
    parser.add_argument("--ops", action="store_true",
                        help="also time MobileNet V1's convolutions one by one")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON line per variant (used for the subprocesses)")
    return parser.parse_args(argv)


# CPU seconds (all threads of this process) of the timed steps of the last median_step call.
CPU_TIMES: list[float] = []


def median_step(step, warmup: int, steps: int) -> tuple[float, list[float]]:
    times, cpu_times = common.timed_calls(lambda _: step(), warmup, steps)
    CPU_TIMES[:] = cpu_times
    return statistics.median(times), times


def block_of(variable_name: str) -> int:
    """MobileNet block of a hub variable: conv1 is 0, conv_dw_N / conv_pw_N is N."""
    # Imported here: the variant's environment must be set before TensorFlow is imported.
    from models.network import block_of as trainer_block_of

    return trainer_block_of(variable_name)


def top_blocks_layer_class(hub):
    """The Trainer's own hub.KerasLayer that trains only blocks >= first_block."""
    from models.network import TopBlocksKerasLayer

    return TopBlocksKerasLayer


def run_variant(name: str, args, tf, tf_keras, hub):
    batch, size = args.batch_size, args.image_size
    images = tf.random.stateless_uniform([batch, size, size, 3], seed=[1, 2])
    labels = tf.random.stateless_uniform([batch], seed=[3, 4], maxval=args.num_classes,
                                         dtype=tf.int64)

    def build(trainable=True, training=False, backbone=None):
        backbone = backbone or hub.KerasLayer(args.model_handle, trainable=trainable)
        inputs = tf_keras.Input((size, size, 3))
        features = backbone(inputs, training=training)
        head = tf_keras.layers.Dense(args.num_classes, activation="softmax")
        outputs = head(tf_keras.layers.Dropout(0.2)(features))
        return tf_keras.Model(inputs, outputs), backbone, head

    def compiled(model, optimizer=None, **kwargs):
        model.compile(optimizer=optimizer or tf_keras.optimizers.Adam(1e-5),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"], **kwargs)
        return model

    def on_batch(model):
        return lambda: model.train_on_batch(images, labels)

    if name == "forward":
        model, _, _ = build(trainable=False)
        forward = tf.function(lambda x: model(x, training=False))
        return median_step(lambda: forward(images).numpy(), args.warmup, args.steps)
    if name == "head_only":
        model, _, _ = build(trainable=False)
        return median_step(on_batch(compiled(model)), args.warmup, args.steps)
    if name == "baseline":
        model, _, _ = build()
        return median_step(on_batch(compiled(model)), args.warmup, args.steps)
    if name == "bn_training":
        model, _, _ = build(training=True)
        return median_step(on_batch(compiled(model)), args.warmup, args.steps)
    if name == "sgd":
        model, _, _ = build()
        optimizer = tf_keras.optimizers.SGD(1e-4, momentum=0.9)
        return median_step(on_batch(compiled(model, optimizer)), args.warmup, args.steps)
    if name == "jit":
        model, _, _ = build()
        return median_step(on_batch(compiled(model, jit_compile=True)), args.warmup, args.steps)
    if name == "top_blocks_layer":
        layer = top_blocks_layer_class(hub)(args.model_handle, args.trainable_from, trainable=True)
        model = compiled(build(backbone=layer)[0])
        print(f"  {name}: {len(model.trainable_weights)} trainable weights", file=sys.stderr)
        return median_step(on_batch(model), args.warmup, args.steps)
    if name == "keras_mobilenet":
        base = tf_keras.applications.MobileNet(
            input_shape=(size, size, 3), alpha=1.0, include_top=False, weights=None,
            pooling="avg")
        model, _, _ = build(backbone=base)
        return median_step(on_batch(compiled(model)), args.warmup, args.steps)
    if name == "fit":
        model = compiled(build()[0])
        times, marks = [], {}

        class Timer(tf_keras.callbacks.Callback):
            def on_train_batch_begin(self, batch_index, logs=None):
                marks["start"] = time.perf_counter()

            def on_train_batch_end(self, batch_index, logs=None):
                times.append(time.perf_counter() - marks["start"])

        dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
        model.fit(dataset, steps_per_epoch=args.warmup + args.steps, epochs=1, verbose=0,
                  callbacks=[Timer()])
        timed = times[args.warmup:]
        return statistics.median(timed), timed
    if name in ("custom_all", "last_blocks"):
        model, backbone, head = build()
        first = args.trainable_from if name == "last_blocks" else 0
        variables = [v for v in backbone.trainable_variables if block_of(v.name) >= first]
        variables += head.trainable_variables
        optimizer = tf_keras.optimizers.Adam(1e-5)
        loss_fn = tf_keras.losses.SparseCategoricalCrossentropy()

        @tf.function
        def step(x, y):
            # Only the chosen variables are watched, so no gradient is computed below them.
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(variables)
                loss = loss_fn(y, model(x, training=True))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            return loss

        print(f"  {name}: {len(variables)} of "
              f"{len(backbone.trainable_variables) + len(head.trainable_variables)} "
              "trainable variables updated", file=sys.stderr)
        return median_step(lambda: step(images, labels).numpy(), args.warmup, args.steps)
    raise ValueError(f"unknown variant {name}")


def run_subprocess(name: str, args) -> dict:
    env_extra, flags, _ = SUBPROCESS[name]
    command = common.module_command(
        "bench.fine_tune_speed", "--model-handle", args.model_handle, "--variants", "baseline",
        "--json", "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
        "--warmup", str(args.warmup), "--steps", str(args.steps), *flags)
    result = subprocess.run(command, env={**os.environ, **env_extra}, capture_output=True,
                            text=True, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")


# MobileNet V1 1.0/224 depthwise-separable blocks: (input side, input channels, stride, outputs).
MOBILENET_BLOCKS = [
    (112, 32, 1, 64), (112, 64, 2, 128), (56, 128, 1, 128), (56, 128, 2, 256),
    (28, 256, 1, 256), (28, 256, 2, 512), *[(14, 512, 1, 512)] * 5, (14, 512, 2, 1024),
    (7, 1024, 1, 1024),
]


def block_ops(tf, batch: int, side: int, channels: int, stride: int, outputs: int) -> dict:
    """The six convolutions of one depthwise-separable block: kind -> (function, inputs)."""
    out_side = side // stride
    strides = [1, stride, stride, 1]
    ones = [1, 1, 1, 1]
    x = tf.random.uniform([batch, side, side, channels])
    dw_filter = tf.random.uniform([3, 3, channels, 1])
    dy = tf.random.uniform([batch, out_side, out_side, channels])
    px = tf.random.uniform([batch, out_side, out_side, channels])
    pw_filter = tf.random.uniform([1, 1, channels, outputs])
    pdy = tf.random.uniform([batch, out_side, out_side, outputs])
    raw = tf.raw_ops
    return {
        "depthwise forward": (
            lambda x, f: tf.nn.depthwise_conv2d(x, f, strides, "SAME"), (x, dw_filter)),
        "depthwise grad input": (
            lambda dy, f: raw.DepthwiseConv2dNativeBackpropInput(
                input_sizes=tf.constant([batch, side, side, channels]), filter=f,
                out_backprop=dy, strides=strides, padding="SAME"), (dy, dw_filter)),
        "depthwise grad filter": (
            lambda x, dy: raw.DepthwiseConv2dNativeBackpropFilter(
                input=x, filter_sizes=tf.constant([3, 3, channels, 1]), out_backprop=dy,
                strides=strides, padding="SAME"), (x, dy)),
        "pointwise forward": (lambda x, f: tf.nn.conv2d(x, f, 1, "SAME"), (px, pw_filter)),
        "pointwise grad input": (
            lambda dy, f: raw.Conv2DBackpropInput(
                input_sizes=tf.constant([batch, out_side, out_side, channels]), filter=f,
                out_backprop=dy, strides=ones, padding="SAME"), (pdy, pw_filter)),
        "pointwise grad filter": (
            lambda x, dy: raw.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.constant([1, 1, channels, outputs]), out_backprop=dy,
                strides=ones, padding="SAME"), (px, pdy)),
    }


def time_ops(args, tf) -> dict:
    """Seconds per batch summed over the 13 blocks, per op kind (median of 3 after 1 warm-up)."""
    totals: dict[str, float] = {}
    for block in MOBILENET_BLOCKS:
        for kind, (fn, inputs) in block_ops(tf, args.batch_size, *block).items():
            compiled_fn = tf.function(fn)
            median, _ = median_step(lambda f=compiled_fn, i=inputs: f(*i).numpy(), 1, 3)
            totals[kind] = totals.get(kind, 0.0) + median
    return totals


def main(argv=None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    if args.intra:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    if args.inter:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter)
    import tensorflow_hub as hub
    import tf_keras

    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in names if name not in IN_PROCESS and name not in SUBPROCESS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}")
    results = {}
    for name in names:
        started = time.perf_counter()
        if name in SUBPROCESS:
            result = run_subprocess(name, args)
            median, times = result["median_s"], result["times_s"]
            cpu = result["cpu_median_s"]
        else:
            CPU_TIMES.clear()
            median, times = run_variant(name, args, tf, tf_keras, hub)
            cpu = statistics.median(CPU_TIMES) if CPU_TIMES else float("nan")
            tf_keras.backend.clear_session()
            gc.collect()

        description = IN_PROCESS.get(name) or SUBPROCESS[name][2]
        if args.json:
            print(json.dumps({"variant": name, "median_s": median, "times_s": times,
                              "cpu_median_s": cpu}))
        else:
            print(f"{name}: median {median:.3f} s/step ({args.batch_size / median:.1f} photos/s)"
                  f" steps {[round(t, 2) for t in times]}, CPU {cpu:.2f} s/step, variant took "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        results[name] = (median, description)
    if args.json:
        return 0
    print(f"\n| variant | what | median s/step (batch {args.batch_size}) | photos/s |"
          " vs baseline |")
    print("|---|---|---|---|---|")
    base = results.get("baseline", (None,))[0]
    for name, (median, description) in results.items():
        ratio = f"{base / median:.2f}x" if base else "-"
        print(f"| {name} | {description} | {median:.3f} | {args.batch_size / median:.1f} "
              f"| {ratio} |")
    if args.ops:
        totals = time_ops(args, tf)
        print(f"\n| op (13 blocks of MobileNet V1 1.0/224, batch {args.batch_size}) "
              "| seconds per batch |")
        print("|---|---|")
        for kind, seconds in totals.items():
            print(f"| {kind} | {seconds:.3f} |")
        print(f"| all | {sum(totals.values()):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
