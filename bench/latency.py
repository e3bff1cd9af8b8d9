"""One-photo latency and batch throughput of each way to serve the model, in one run.

    .venv/bin/python -m bench.latency --model SERVING_DIR --backbone HUB_MODULE --data-dir PHOTOS

Compares, on the same photos and threads:
- the bare MobileNet forward pass: the hub module alone on float pixels (no preprocessing, no
  head) at the size the model's preprocessing gives: the floor the goals are set against; and
  the same for every serving view (models/views.py), the floor of a model that averages
  them. With `resize` short-side (preprocessing.json beside the TFLite models) HUB_MODULE must
  take any size: the pipeline's `<root>/backbones/<key>-any-size`;
- the SavedModel through label_image's classifier (serving_default on encoded JPEG bytes:
  Transform graph, decode, network, head);
- the float and int8 TFLite models through label_image's TFLite classifier (the training
  preprocessing in TensorFlow, then the TFLite interpreter), with one thread and with one
  per CPU.
Each is warmed up first; one photo is the median of --repeats calls, a batch the median of
--batch-repeats calls. All photos are of one shape once prepared (the commonest among the
first few hundred), so that a bare batch exists to compare with. SERVING_DIR needs its
tflite/ folder (`python -m bench.tflite_accuracy --convert-to` writes one for an older pushed
model).
"""

import argparse
import os

from bench import common

common.tensorflow_defaults(log_level="3")

from bench.photos import read_encoded  # noqa: E402
from components.image_example_gen.scan import discover_classes, list_class_images  # noqa: E402
from models import features  # noqa: E402
from tools import classifiers as saved_model_classifier  # noqa: E402
from tools import tflite_classifier  # noqa: E402

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


def photos(data_dir, count, to_pixels, scan=400):
    """`count` photos of data_dir, the classes in turn, as label_image sends them (upright RGB
    JPEG bytes), all of the commonest prepared shape among the first `scan`."""
    import collections

    import tensorflow as tf

    per_class = [list_class_images(data_dir, name) for name in discover_classes(data_dir)]
    paths = [os.path.join(data_dir, files[index])
             for index in range(scan) for files in per_class if index < len(files)]
    by_shape = collections.defaultdict(list)
    for path in paths[:scan]:
        encoded = read_encoded(path)
        by_shape[tuple(to_pixels(tf.constant([encoded])).shape[1:3])].append(encoded)
    shape, chosen = max(by_shape.items(), key=lambda item: len(item[1]))
    if len(chosen) < count:
        raise SystemExit(f"only {len(chosen)} photos of one prepared shape {shape}: lower "
                         "--batch-size")
    return shape, chosen[:count]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="serving_model_dir with tflite/")
    parser.add_argument("--backbone", required=True, help="the hub module the model was built on")
    parser.add_argument("--data-dir", required=True, help="photos to classify")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=50, help="one-photo calls timed")
    parser.add_argument("--batch-repeats", type=int, default=10, help="batch calls timed")
    parser.add_argument("--views", nargs="+", default=["plain"], help="the model's views "
                        "(its --views), for the bare floor of them all")
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()[0]

    import tensorflow as tf

    from models import serving, views
    from models.training_config import TrainingConfig

    model_dir = saved_model_classifier.resolve_model_dir(args.model)
    tflite_dir = model_dir / features.TFLITE_DIR
    float_model = tf.lite.Interpreter(str(tflite_dir / features.FLOAT_MODEL_FILE))
    image_size, resize = tflite_classifier.read_tflite_preprocessing(
        tflite_dir / features.FLOAT_MODEL_FILE,
        int(float_model.get_input_details()[0]["shape"][1]))
    to_pixels = tflite_classifier.training_pixels_function(image_size, resize)
    shape, encoded = photos(args.data_dir, args.batch_size, to_pixels)
    singles = [[photo] for photo in encoded]
    batch = [encoded]

    classifiers = {
        "SavedModel, serving_default on JPEG bytes":
            saved_model_classifier.load_classifier(model_dir),
    }
    for threads in sorted({1, common.cpu_count()}):
        for kind, file_name in (("float", features.FLOAT_MODEL_FILE),
                                ("int8", features.INT8_MODEL_FILE)):
            classifiers[f"TFLite {kind}, label_image, {threads} thread(s)"] = (
                tflite_classifier.load_tflite_classifier(tflite_dir / file_name, threads)
            )
    pixel_singles = [to_pixels(tf.constant(single)).numpy() for single in singles]
    pixel_batch = [tf.concat(pixel_singles, axis=0).numpy()]
    settings = TrainingConfig(model_handle=args.backbone, image_size=image_size, resize=resize,
                              views=tuple(args.views), class_names=("unused",))
    view_names = serving.serving_views(settings)

    rows = {}
    forward = bare_forward(args.backbone)
    rows[f"bare MobileNet forward pass (hub module, float pixels {shape[0]}x{shape[1]})"] = (
        median_seconds(forward, pixel_singles, args.repeats),
        median_seconds(forward, pixel_batch, args.batch_repeats),
    )
    if len(view_names) > 1:
        def every_view(pixels):
            return [forward(views.apply_view(tf.constant(pixels), view).numpy())
                    for view in view_names]

        rows[f"bare forward passes of the views {', '.join(view_names)}"] = (
            median_seconds(every_view, pixel_singles, args.repeats),
            median_seconds(every_view, pixel_batch, args.batch_repeats),
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
    print(f"model {model_dir} ({resize}, {image_size}), backbone {args.backbone}, "
          f"{common.cpu_count()} CPUs; "
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
