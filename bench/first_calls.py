"""Two fixed costs that tf_keras and oneDNN add on TF 2.16, with and without their remedies.

    .venv/bin/python bench/first_calls.py --model-handle HUB_MODULE [--repeats 7]

1. AutoGraph and tf_keras: the first epoch of a softmax head on 2,000 random "cached features"
   (what the Trainer does on a rerun), in a fresh process each, with TF's own AutoGraph rules
   and with `trainer_module.keep_autograph_out_of_tf_keras`; the second epoch shows the
   steady state.
2. oneDNN and a batch of one: one call of the hub module on 1 and on 2 random images, and on 1
   image padded to 2 the way `serving_examples` does (`trainer_module.pad_single_image`),
   with TF_ENABLE_ONEDNN_OPTS=1 and =0, in a fresh process each (TF reads it at import).
   Each figure is the median of --repeats calls after 2 warm-up calls.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _head_first_epoch(model_handle: str, autograph_rule: bool) -> dict:
    import numpy as np
    from tensorflow.python.autograph.core import config as autograph_config

    from components import trainer_module
    from pipeline.config import TrainingConfig

    if not autograph_rule:  # trainer_module adds it at import: take it out again
        autograph_config.CONVERSION_RULES = tuple(
            rule for rule in autograph_config.CONVERSION_RULES if not rule.matches("tf_keras")
        )
    settings = TrainingConfig(model_handle=model_handle, class_names=tuple("abcde"))
    transfer = trainer_module.TransferModel(settings, fine_tuning=False)
    rng = np.random.default_rng(0)
    features = rng.random((2000, transfer.head.input_shape[-1]), dtype=np.float32)
    labels = rng.integers(0, 5, 2000)
    trainer_module._compile(transfer.head, settings, 0.001)
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        transfer.head.fit(features, labels, batch_size=32, epochs=1, verbose=0,
                          validation_data=(features[:200], labels[:200]))
        seconds.append(time.perf_counter() - started)
    return {"first epoch s": round(seconds[0], 2), "second epoch s": round(seconds[1], 2)}


def _batch_of_one(model_handle: str, repeats: int) -> dict:
    import tensorflow as tf

    from components import trainer_module

    module = tf.saved_model.load(model_handle)
    padded = tf.function(lambda images: module(trainer_module.pad_single_image(images))[:1])
    result = {}
    for name, call, count in (("1 image", module, 1), ("2 images", module, 2),
                              ("1 image padded to 2", padded, 1)):
        images = tf.random.uniform([count, 224, 224, 3], seed=count)
        times = []
        for index in range(repeats + 2):
            started = time.perf_counter()
            call(images).numpy()
            if index >= 2:
                times.append(time.perf_counter() - started)
        result[f"{name} ms"] = round(1000 * statistics.median(times), 1)
    return result


def _child(args) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.path.insert(0, ROOT)
    if args.child == "head":
        result = _head_first_epoch(args.model_handle, args.autograph_rule == "on")
    else:
        result = _batch_of_one(args.model_handle, args.repeats)
    print("RESULT " + json.dumps(result), flush=True)


def _run_child(args, extra: list[str], env: dict) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--model-handle", args.model_handle,
               "--repeats", str(args.repeats), *extra]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env},
                          cwd=ROOT, timeout=900)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.exit(f"first_calls.py: {' '.join(extra)} failed:\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model-handle", required=True, help="TF Hub MobileNet feature vector")
    parser.add_argument("--repeats", type=int, default=7, help="calls per figure (median)")
    parser.add_argument("--child", choices=("head", "batch"), help=argparse.SUPPRESS)
    parser.add_argument("--autograph-rule", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    onednn_on = {"TF_ENABLE_ONEDNN_OPTS": "1"}
    print("| AutoGraph rules (oneDNN on) | first epoch s | second epoch s |")
    print("|---|---|---|")
    for rule, label in (("off", "TF 2.16's own (tf_keras converted)"),
                        ("on", "+ DoNotConvert('tf_keras')")):
        result = _run_child(args, ["--child", "head", "--autograph-rule", rule], onednn_on)
        print(f"| {label} | {result['first epoch s']} | {result['second epoch s']} |", flush=True)
    print("\n| TF_ENABLE_ONEDNN_OPTS | 1 image ms | 2 images ms | 1 image padded to 2 ms |")
    print("|---|---|---|---|")
    for value in ("1", "0"):
        result = _run_child(args, ["--child", "batch"], {"TF_ENABLE_ONEDNN_OPTS": value})
        print(f"| {value} | {result['1 image ms']} | {result['2 images ms']} | "
              f"{result['1 image padded to 2 ms']} |", flush=True)


if __name__ == "__main__":
    main()
