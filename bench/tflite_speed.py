"""Times the Trainer's TFLite conversion (float and int8) by the converter's two paths.

`models/tflite_export.py` converts a concrete function. By default TF's converter first
saves it as a SavedModel and converts that ("saved-model"); with
`experimental_lower_to_saved_model = False` it freezes the function's graph instead
("frozen-graph", what the Trainer uses). Each path runs in a fresh process on the same model:
the MobileNet hub module given plus a 5-class softmax head (random weights), with random
calibration images. Prints seconds, the int8 step's CPU seconds over all threads (about its
wall seconds: the calibration runs in one thread), peak RSS, model sizes and the float model's
largest score difference from the Keras model.

    .venv/bin/python -m bench.tflite_speed --model-handle MODULE [--calibration-images 150]
"""

import argparse
import subprocess
import sys
import time

from bench import common

common.tensorflow_defaults(log_level="2", onednn=True)

PATHS = ("saved-model", "frozen-graph")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-handle", required=True, help="a MobileNet TF Hub module")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--calibration-images", type=int, default=150)
    parser.add_argument("--path", choices=PATHS, help="run one path in this process")
    return parser.parse_args()


def convert_once(args) -> None:
    import numpy as np
    import tensorflow as tf
    import tensorflow_hub as hub
    import tf_keras

    from models import tflite_export
    from models.training_config import TrainingConfig

    size = args.image_size
    # Squashed photos and the plain view: the network as it is.
    settings = TrainingConfig("m", image_size=size, resize="squash", views=("plain",))
    images = tf_keras.Input((size, size, 3))
    features = hub.KerasLayer(args.model_handle)(images)
    model = tf_keras.Model(images, tf_keras.layers.Dense(5, activation="softmax")(features))
    rng = np.random.default_rng(0)
    calibration = [rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
                   for _ in range(args.calibration_images)]
    lower = args.path == "saved-model"
    original = tflite_export._converter

    def converter(*converter_args):
        made = original(*converter_args)
        made.experimental_lower_to_saved_model = lower
        return made

    tflite_export._converter = converter
    before_mb = int(common.peak_rss_mb())
    started = time.time()
    float_model = tflite_export.to_float_tflite(model, settings)
    float_s = time.time() - started
    cpu_before = time.process_time()  # every thread of the process
    int8_model = tflite_export.to_int8_tflite(model, settings, calibration)
    total_s = time.time() - started
    int8_cpu_s = time.process_time() - cpu_before
    peak_mb = int(common.peak_rss_mb())

    pixels = rng.random((1, size, size, 3), dtype=np.float32)
    interpreter = tf.lite.Interpreter(model_content=float_model)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
    interpreter.invoke()
    scores = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    difference = float(np.abs(scores - model(pixels).numpy()).max())
    print(f"| {args.path} | {float_s:.1f} | {total_s - float_s:.1f} | {int8_cpu_s:.1f} | "
          f"{total_s:.1f} | "
          f"{before_mb:,} | {peak_mb:,} | {len(float_model) / 1e6:.2f} | "
          f"{len(int8_model) / 1e6:.2f} | {difference:.1e} |", flush=True)


def main() -> int:
    args = parse_args()
    if args.path:
        convert_once(args)
        return 0
    print(f"{args.calibration_images} calibration images, {args.image_size}x{args.image_size}")
    print("| converter path | float s | int8 s | int8 CPU s (all threads) | total s "
          "| RSS before MB | peak RSS MB | float MB | int8 MB | float max score difference |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in PATHS:
        command = common.module_command(
            "bench.tflite_speed", "--path", path, "--model-handle", args.model_handle,
            "--image-size", str(args.image_size),
            "--calibration-images", str(args.calibration_images))
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        if result.returncode:
            print(f"tflite_speed.py: the {path} run failed (exit {result.returncode})",
                  file=sys.stderr)
            return 1
        sys.stdout.write(result.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
