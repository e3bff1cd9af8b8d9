"""Does the final head gain from more views of each photo, or from test-time flips?

Takes a fine-tuned MobileNet (the FineTuner's output: PIPELINE_ROOT/artifacts/FineTuner/model/
<id>/Format-Serving) and computes, once, the features of four views of every photo of the
pipeline's hash split: the photo squashed to 224x224 as the Transform does (without its JPEG
re-encoding), mirrored, a central 87.5 % crop, and that crop mirrored (`--features`, an .npz,
reused if present). Then it trains the final head with the Trainer's own code and defaults
(`trainer_module.train_head`: dropout 0.2, Adam 1e-3 with a cosine decay over 30 epochs, label
smoothing 0.1, automatic class weights, batch 32, early stopping after 3 epochs without a
better eval loss, the best weights kept) on the plain train views alone, on plain + mirrored,
and on all four, with SEEDS seeds each, and prints the test accuracy of each head on the plain
test photos and with the mirrored photo's scores added (test-time flips). The test split
selects nothing here.

    .venv/bin/python bench/head_views.py --module FINE_TUNED_MODULE \\
        --data-dir ../shared/assets/flower_photos --features /tmp/views.npz [--seeds 3]
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
sys.path.insert(0, os.path.dirname(BENCH_DIR))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402
import tf_keras  # noqa: E402
from tflite_accuracy import read_encoded, split_photos  # noqa: E402

from components import trainer_module  # noqa: E402
from components.image_example_gen.images import discover_classes  # noqa: E402
from components.transform_module import decode_and_resize  # noqa: E402
from pipeline.config import TrainingConfig  # noqa: E402

SIZE = 224
BATCH = 64
VIEWS = ("plain", "mirrored", "crop", "crop_mirrored")
HEAD_VARIANTS = {"plain": VIEWS[:1], "plain + mirrored": VIEWS[:2], "all four views": VIEWS}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", required=True, help="a fine-tuned MobileNet (TF Hub format)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--features", required=True, help=".npz of the views' features")
    parser.add_argument("--seeds", type=int, default=3)
    return parser.parse_args()


def views_of(images: tf.Tensor) -> dict:
    crops = tf.image.resize(tf.image.central_crop(images, 0.875), [SIZE, SIZE])
    return {"plain": images, "mirrored": tf.image.flip_left_right(images),
            "crop": crops, "crop_mirrored": tf.image.flip_left_right(crops)}


def save_features(path: str, module: str, data_dir: str) -> None:
    layer = hub.KerasLayer(module)
    extract = tf.function(lambda images: layer(images, training=False), reduce_retracing=True)
    arrays = {}
    for split in ("train", "eval", "test"):
        _, photos = split_photos(data_dir, split, 10, 10)
        per_view = {view: [] for view in VIEWS}
        for start in range(0, len(photos), BATCH):
            images = tf.stack([decode_and_resize(read_encoded(path), SIZE)
                               for path, _ in photos[start:start + BATCH]])
            for view, pixels in views_of(images).items():
                per_view[view].append(extract(pixels).numpy())
        for view, batches in per_view.items():
            arrays[f"{split}_{view}"] = np.concatenate(batches)
        arrays[f"{split}_y"] = np.array([label for _, label in photos])
        print(f"{split}: {len(photos)} photos", flush=True)
    np.savez(path, **arrays)


def train_head(module: str, class_names: list[str], features: dict, seed: int, log_dir: str):
    """The Trainer's own head phase (`trainer_module.train_head`, TrainingConfig's defaults
    and class weights) on the given features; returns the trained head."""
    settings = TrainingConfig(model_handle=module, class_names=tuple(class_names), seed=seed)
    tf_keras.utils.set_random_seed(seed)
    transfer = trainer_module.TransferModel(settings, fine_tuning=False)
    weights = trainer_module.class_weights(
        features["train"][1], len(class_names), settings.class_weights)
    trainer_module.train_head(transfer, settings, features, log_dir, weights)
    return transfer.head


def main():
    args = parse_args()
    if not os.path.exists(args.features):
        save_features(args.features, args.module, args.data_dir)
    data = np.load(args.features)
    class_names = discover_classes(args.data_dir)
    eval_data = (data["eval_plain"], data["eval_y"])
    test_labels = data["test_y"]
    print("| head trained on | test accuracy per seed | with test-time mirroring "
          "| eval accuracy per seed |\n|---|---|---|---|")
    for name, views in HEAD_VARIANTS.items():
        features = np.concatenate([data[f"train_{view}"] for view in views])
        labels = np.concatenate([data["train_y"]] * len(views))
        plain, mirrored, evals = [], [], []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as log_dir:  # TensorBoard logs, not kept
                head = train_head(args.module, class_names,
                                  {"train": (features, labels), "eval": eval_data}, seed, log_dir)
            scores = head.predict(data["test_plain"], verbose=0)
            flipped = head.predict(data["test_mirrored"], verbose=0)
            plain.append((scores.argmax(1) == test_labels).mean())
            mirrored.append(((scores + flipped).argmax(1) == test_labels).mean())
            evals.append((head.predict(eval_data[0], verbose=0).argmax(1) == eval_data[1]).mean())

        def percent(values):
            return ", ".join(f"{100 * value:.1f}" for value in values) + " %"

        print(f"| {name} | {percent(plain)} | {percent(mirrored)} | {percent(evals)} |",
              flush=True)


if __name__ == "__main__":
    main()
