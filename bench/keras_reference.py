"""A plain Keras fine-tune of a TF Hub MobileNet, the reference the pipeline's run is held to.

Written after TF Hub's "transfer learning with TF Hub" tutorials, without TFX: photos are read
with tf.data straight from the class folders, resized to the model's resolution and rescaled to
[0, 1]; a frozen hub.KerasLayer with a dropout and softmax Dense head is trained for
--head-epochs, then the hub layer is unfrozen and the whole network fine-tuned for
--fine-tune-epochs at a small learning rate. Batch norm stays in inference mode
(training=False), as in the pipeline's Trainer, unless --batch-norm-training.

The train / eval / test split is ImageExampleGen's (bench/photos.py `split_files`): retrain.py's
hash of the file name (components/image_example_gen/images.py `which_split`), byte-identical
copies in one class go to the split of the first copy, and a photo found in two classes is left
out. Eval is the validation data of each epoch; the accuracies printed are on the test split
only.

    .venv/bin/python -m bench.keras_reference --data-dir PHOTOS --model-handle MODULE

Prints the wall time, the peak RSS, test accuracy after the head phase and after fine-tuning,
and the fine-tune throughput (train photos per second of fine-tune training, validation not
counted), last as a markdown table row.
"""

from __future__ import annotations

import time

STARTED = time.time()

import argparse  # noqa: E402
import sys  # noqa: E402

from bench import common  # noqa: E402

common.tensorflow_defaults(log_level="2")

from bench.photos import split_files  # noqa: E402
from components.image_example_gen import images  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data-dir", required=True, help="folder with one subfolder per class")
    parser.add_argument("--model-handle", required=True,
                        help="TF Hub image feature-vector module (path or URL)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--head-learning-rate", type=float, default=1e-3, help="Adam")
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--fine-tune-learning-rate", type=float, default=1e-5, help="Adam")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--testing-percentage", type=int, default=10)
    parser.add_argument("--validation-percentage", type=int, default=10)
    parser.add_argument("--batch-norm-training", action="store_true",
                        help="call the hub layer with training=True while fine-tuning")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    splits, class_names, conflicts = split_files(
        args.data_dir, args.testing_percentage, args.validation_percentage
    )
    print(f"classes {list(class_names)}; " + ", ".join(
        f"{split} {len(files)}" for split, files in splits.items()
    ) + f"; {conflicts} files left out as label conflicts", flush=True)

    import tensorflow as tf
    import tensorflow_hub as hub
    import tf_keras

    from models import transform_module

    tf_keras.utils.set_random_seed(args.seed)
    size = args.image_size

    def dataset(files, shuffle: bool) -> tf.data.Dataset:
        paths = tf.constant([path for path, _ in files])
        labels = tf.constant([label for _, label in files], tf.int64)

        def load(path, label):
            # Transform's decode and antialiased resize, kept as uint8 pixels (150 KB a photo).
            image = transform_module.decode_and_resize(tf.io.read_file(path), size)
            return tf.image.convert_image_dtype(image, tf.uint8, saturate=True), label

        ds = (tf.data.Dataset.from_tensor_slices((paths, labels))
              .map(load, num_parallel_calls=tf.data.AUTOTUNE)
              .cache())
        if shuffle:
            ds = ds.shuffle(len(files), seed=args.seed, reshuffle_each_iteration=True)
        rescale = tf_keras.layers.Rescaling(1.0 / 255)  # uint8 -> float32 in [0, 1]
        return (ds.batch(args.batch_size)
                .map(lambda x, y: (rescale(x), y), num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))

    train_ds = dataset(splits[images.TRAIN], shuffle=True)
    eval_ds = dataset(splits[images.EVAL], shuffle=False)
    test_ds = dataset(splits[images.TEST], shuffle=False)

    backbone = hub.KerasLayer(args.model_handle, trainable=False, name="mobilenet")
    inputs = tf_keras.Input((size, size, 3))
    features = backbone(inputs, training=False)
    outputs = tf_keras.layers.Dense(len(class_names), activation="softmax")(
        tf_keras.layers.Dropout(args.dropout)(features)
    )
    model = tf_keras.Model(inputs, outputs)

    def compile_model(learning_rate: float) -> None:
        model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class TrainTime(tf_keras.callbacks.Callback):
        """Seconds spent training (not validating) per epoch."""

        def __init__(self):
            super().__init__()
            self.seconds, self._started = [], None

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_test_begin(self, logs=None):
            if self._started is not None:
                self.seconds.append(time.perf_counter() - self._started)
                self._started = None

    def test_accuracy() -> float:
        return model.evaluate(test_ds, verbose=0, return_dict=True)["accuracy"]

    phase_started = time.time()
    compile_model(args.head_learning_rate)
    head_timer = TrainTime()
    model.fit(train_ds, epochs=args.head_epochs, validation_data=eval_ds,
              callbacks=[head_timer], verbose=2)
    head_seconds = time.time() - phase_started
    head_accuracy = test_accuracy()
    print(f"head phase: {head_seconds:.0f} s (train epochs "
          f"{[round(s) for s in head_timer.seconds]} s); test accuracy {head_accuracy:.4f}",
          flush=True)

    fine_accuracy, fine_seconds, throughput = float("nan"), 0.0, float("nan")
    if args.fine_tune_epochs > 0:
        if args.batch_norm_training:
            features = backbone(inputs, training=True)
            model = tf_keras.Model(inputs, model.layers[-1](model.layers[-2](features)))
        backbone.trainable = True
        phase_started = time.time()
        compile_model(args.fine_tune_learning_rate)
        fine_timer = TrainTime()
        model.fit(train_ds, epochs=args.head_epochs + args.fine_tune_epochs,
                  initial_epoch=args.head_epochs, validation_data=eval_ds,
                  callbacks=[fine_timer], verbose=2)
        fine_seconds = time.time() - phase_started
        throughput = len(splits[images.TRAIN]) * len(fine_timer.seconds) / sum(fine_timer.seconds)
        fine_accuracy = test_accuracy()
        print(f"fine-tune phase: {fine_seconds:.0f} s (train epochs "
              f"{[round(s) for s in fine_timer.seconds]} s, {throughput:.1f} photos/s); "
              f"test accuracy {fine_accuracy:.4f}", flush=True)

    wall = time.time() - STARTED
    print(f"wall time {wall:.0f} s (interpreter start to end), "
          f"peak RSS {common.peak_rss_mb():.0f} MB")
    print("\n| wall s | head phase s | fine-tune phase s | fine-tune photos/s "
          "| test acc, head | test acc, fine-tuned | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {wall:.0f} | {head_seconds:.0f} | {fine_seconds:.0f} | {throughput:.1f} "
          f"| {100 * head_accuracy:.1f} % | {100 * fine_accuracy:.1f} % "
          f"| {common.peak_rss_mb():.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
