"""One-photo latency and batch throughput of each way to serve the model, in one run.

    .venv/bin/python -m bench.latency --model SERVING_DIR --backbone HUB_MODULE --data-dir PHOTOS

Compares, on the same photos and threads:
- the bare MobileNet forward pass: the hub module alone on float pixels (no preprocessing, no
  head): the floor the goals are set against;
- the SavedModel through label_image's classifier (serving_default on encoded JPEG bytes:
  Transform graph, decode, network, head);
- the float and int8 TFLite models through label_image's TFLite classifier (the training
  preprocessing in TensorFlow, then the TFLite interpreter), with one thread and with one
  per CPU.
Each is warmed up first; one photo is the median of --repeats calls, a batch the median of
--batch-repeats calls. SERVING_DIR needs its tflite/ folder (`python -m bench.tflite_accuracy
--convert-to` writes one for an older pushed model).
"""

import argparse
import os

from bench import common

common.tensorflow_defaults(log_level="3")

from bench.photos import read_encoded  # noqa: E402
from components import tflite_export  # noqa: E402
from components.image_example_gen import images  # noqa: E402
from pipeline import label_image  # noqa: E402

WARMUP_CALLS = 3


def median_seconds(call, inputs, repeats):
    """Median wall time of `call(input)` over `repeats` calls, cycling through `inputs`."""
    return common.median_seconds(
        lambda index: call(inputs[index % len(inputs)]), WARMUP_CALLS, repeats)


def bare_forward(backbone):
    """The hub module's forward pass on float pixels, as a function of a numpy batch."""
    import tensorflow as tf

    module = tf.saved_model.load(backbone)

    def forward(pixels):
        return module(tf.constant(pixels), training=False).numpy()

    return forward


def photos(data_dir, count):
    """`count` photos of data_dir, the classes in turn, as label_image sends them (upright RGB
    JPEG bytes): a batch mixes photo sizes and contents."""
    per_class = [images.list_class_images(data_dir, name)
                 for name in images.discover_classes(data_dir)]
    paths = [os.path.join(data_dir, files[index])
             for index in range(count) for files in per_class if index < len(files)]
    return [read_encoded(path) for path in paths[:count]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="serving_model_dir with tflite/")
    parser.add_argument("--backbone", required=True, help="the hub module the model was built on")
    parser.add_argument("--data-dir", required=True, help="photos to classify")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=50, help="one-photo calls timed")
    parser.add_argument("--batch-repeats", type=int, default=10, help="batch calls timed")
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()[0]

    import tensorflow as tf

    model_dir = label_image.resolve_model_dir(args.model)
    tflite_dir = model_dir / tflite_export.TFLITE_DIR
    encoded = photos(args.data_dir, args.batch_size)
    singles = [[photo] for photo in encoded]
    batch = [encoded]

    classifiers = {
        "SavedModel, serving_default on JPEG bytes": label_image.load_classifier(model_dir)
    }
    for threads in sorted({1, common.cpu_count()}):
        for kind, file_name in (("float", tflite_export.FLOAT_MODEL_FILE),
                                ("int8", tflite_export.INT8_MODEL_FILE)):
            classifiers[f"TFLite {kind}, label_image, {threads} thread(s)"] = (
                label_image.load_tflite_classifier(tflite_dir / file_name, threads)
            )
    float_model = tf.lite.Interpreter(str(tflite_dir / tflite_export.FLOAT_MODEL_FILE))
    to_pixels = label_image.training_pixels_function(
        int(float_model.get_input_details()[0]["shape"][1])
    )
    pixel_singles = [to_pixels(tf.constant(single)).numpy() for single in singles]
    pixel_batch = [to_pixels(tf.constant(encoded)).numpy()]

    rows = {}
    forward = bare_forward(args.backbone)
    rows["bare MobileNet forward pass (hub module, float pixels)"] = (
        median_seconds(forward, pixel_singles, args.repeats),
        median_seconds(forward, pixel_batch, args.batch_repeats),
    )
    rows["preprocessing alone (TFLite path: decode, resize, JPEG, decode)"] = (
        median_seconds(lambda data: to_pixels(tf.constant(data)).numpy(), singles,
                       args.repeats),
        median_seconds(lambda data: to_pixels(tf.constant(data)).numpy(), batch,
                       args.batch_repeats),
    )
    for name, classify in classifiers.items():
        rows[name] = (median_seconds(classify, singles, args.repeats),
                      median_seconds(classify, batch, args.batch_repeats))

    bare_one, bare_batch = next(iter(rows.values()))
    print(f"model {model_dir}, backbone {args.backbone}, {common.cpu_count()} CPUs; "
          f"1-minute load average {load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at "
          f"end; one photo: median of "
          f"{args.repeats} calls; batch of {args.batch_size}: median of {args.batch_repeats}")
    print(f"\n| path | one photo (ms) | vs bare | batch of {args.batch_size} (photos/s) "
          "| vs bare |")
    print("|---|---|---|---|---|")
    for name, (one, whole_batch) in rows.items():
        throughput = args.batch_size / whole_batch
        print(f"| {name} | {1000 * one:.1f} | {one / bare_one:.2f}x | {throughput:.1f} | "
              f"{throughput / (args.batch_size / bare_batch):.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
