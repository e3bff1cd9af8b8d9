"""Compares fine-tuning recipes outside the pipeline: which MobileNet blocks, what rate.

The experiment behind the Trainer's defaults (BENCHMARKS.md, "Fine-tuning recipes"). Same
photos and split as the pipeline (bench/photos.py `split_files`); a softmax head is
first trained for 20 epochs on features cached by a first pass (`--features`, an .npz of
`{train,eval,test}_{x,y}`, computed and saved there if missing), then MobileNet blocks >=
FIRST_BLOCK (0: all) are fine-tuned with Adam and a cosine decay for EPOCHS epochs, batch norm
in inference mode, on distorted images (DISTORTIONS: any of flip, crop = a random 80-100 %
square crop, bright = x0.9-1.1; or none).
Prints, per epoch: seconds, eval accuracy and loss, test accuracy, and peak RSS.

    .venv/bin/python -m bench.fine_tune_recipes FIRST_BLOCK LEARNING_RATE EPOCHS DISTORTIONS \\
        --data-dir PHOTOS --model-handle MODULE --features FEATURES.npz
"""

import argparse
import os
import time

from bench import common

common.tensorflow_defaults(log_level="2", onednn=True)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from bench.photos import split_files  # noqa: E402
from models.network import TopBlocksKerasLayer  # noqa: E402

SIZE = 224


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first_block", type=int)
    parser.add_argument("learning_rate", type=float)
    parser.add_argument("epochs", type=int)
    parser.add_argument("distortions", help="e.g. flip_crop_bright, or none")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model-handle", required=True)
    parser.add_argument("--features", required=True,
                        help=".npz of the squashed 224x224 photos' features per split")
    return parser.parse_args()


def load(path):
    raw = tf.io.read_file(path)
    image = tf.io.decode_image(raw, channels=3, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)
    return tf.clip_by_value(tf.image.resize(image, [SIZE, SIZE], antialias=True), 0, 1)


def distort(image, distortions: str):
    if "flip" in distortions:
        image = tf.image.random_flip_left_right(image)
    if "crop" in distortions:
        side = tf.cast(SIZE * tf.random.uniform([], 0.8, 1.0), tf.int32)
        image = tf.image.resize(tf.image.random_crop(image, [side, side, 3]), [SIZE, SIZE])
    if "bright" in distortions:
        image = image * tf.random.uniform([], 0.9, 1.1)
    return tf.clip_by_value(image, 0, 1)


def dataset(files, train: bool, distortions: str):
    paths_and_labels = ([path for path, _ in files], [label for _, label in files])
    data = tf.data.Dataset.from_tensor_slices(paths_and_labels)
    if train:
        data = data.shuffle(len(files), seed=1)
    data = data.map(lambda path, label: (load(path), label), num_parallel_calls=2)
    if train and distortions != "none":
        data = data.map(lambda image, label: (distort(image, distortions), label),
                        num_parallel_calls=2)
    return data.batch(32).prefetch(2)


def save_features(path: str, splits, extractor) -> None:
    """The features of every photo, squashed to SIZE x SIZE, one forward pass."""
    arrays = {}
    for split, files in splits.items():
        batches = dataset(files, False, "none").map(lambda images, labels: images)
        arrays[f"{split}_x"] = np.concatenate([extractor(b, training=False) for b in batches])
        arrays[f"{split}_y"] = np.array([label for _, label in files])
    np.savez(path, **arrays)


def main():
    args = parse_args()
    splits, class_names, _ = split_files(args.data_dir, 10, 10)
    tf_keras.utils.set_random_seed(42)
    backbone = TopBlocksKerasLayer(args.model_handle, args.first_block, trainable=True)
    inputs = tf_keras.Input((SIZE, SIZE, 3))
    dropout = tf_keras.layers.Dropout(0.2)
    classifier = tf_keras.layers.Dense(len(class_names), activation="softmax")
    model = tf_keras.Model(inputs, classifier(dropout(backbone(inputs, training=False))))

    if not os.path.exists(args.features):
        save_features(args.features, splits, tf_keras.Model(inputs, backbone(inputs)))
    features = np.load(args.features)
    bottleneck = tf_keras.Input((features["train_x"].shape[1],))
    head = tf_keras.Model(bottleneck, classifier(dropout(bottleneck)))
    head.compile(tf_keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                 metrics=["accuracy"])
    head.fit(features["train_x"], features["train_y"], epochs=20, batch_size=32, verbose=0,
             validation_data=(features["eval_x"], features["eval_y"]))
    print("head", head.evaluate(features["eval_x"], features["eval_y"], verbose=0),
          head.evaluate(features["test_x"], features["test_y"], verbose=0), flush=True)

    steps = args.epochs * ((len(splits["train"]) + 31) // 32)
    schedule = tf_keras.optimizers.schedules.CosineDecay(args.learning_rate, steps)
    model.compile(tf_keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    print("trainable", len(model.trainable_weights), flush=True)
    eval_data = dataset(splits["eval"], False, "none")
    test_data = dataset(splits["test"], False, "none")

    class Progress(tf_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.time() - self.started
            test = [round(value, 4) for value in model.evaluate(test_data, verbose=0)]
            peak_mb = int(common.peak_rss_mb())
            print(epoch, f"{seconds:.0f}s", "val", round(logs["val_accuracy"], 4),
                  round(logs["val_loss"], 4), "test", test, "rss", peak_mb, flush=True)

    model.fit(dataset(splits["train"], True, args.distortions), epochs=args.epochs,
              validation_data=eval_data, callbacks=[Progress()], verbose=0)


if __name__ == "__main__":
    main()
