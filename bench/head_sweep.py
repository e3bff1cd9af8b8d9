"""Sweeps the softmax head's hyper-parameters on MobileNet features of a finished run.

Reads the Transform output of PIPELINE_ROOT, computes the features of the train / eval / test
splits once (cached in --features), then trains one head per setting and prints its eval and
test accuracy. Head only, no fine-tuning: it asks whether the head's settings limit accuracy.

    .venv/bin/python bench/head_sweep.py PIPELINE_ROOT --model-handle MODULE
"""

import argparse
import glob
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras  # noqa: E402

from components import trainer_module  # noqa: E402
from pipeline.config import TrainingConfig  # noqa: E402

SPLITS = ("train", "eval", "test")
SETTINGS = [
    {},
    {"patience": 10, "epochs": 50},
    {"smoothing": 0.1, "patience": 10, "epochs": 50},
    {"lr": 3e-4, "epochs": 100, "patience": 10},
    {"dropout": 0.5, "epochs": 50, "patience": 10},
    {"l2": 1e-4, "epochs": 50, "patience": 10},
    {"smoothing": 0.1, "dropout": 0.5, "epochs": 60, "patience": 10},
]


def load_features(pipeline_root, model_handle, image_size, cache_path):
    if os.path.exists(cache_path):
        saved = np.load(cache_path)
        return {split: (saved[split + "_x"], saved[split + "_y"]) for split in SPLITS}
    transform_graph = sorted(glob.glob(f"{pipeline_root}/artifacts/Transform/transform_graph/*"))
    examples = sorted(glob.glob(f"{pipeline_root}/artifacts/Transform/transformed_examples/*"))
    output = tft.TFTransformOutput(transform_graph[-1])
    settings = TrainingConfig(model_handle=model_handle, image_size=image_size,
                              class_names=("unused", "unused2"))
    extractor = trainer_module.TransferModel(settings).feature_extractor
    features = {}
    for split in SPLITS:
        dataset = trainer_module.make_dataset(
            [f"{examples[-1]}/Split-{split}/*"], output, image_size, 64
        )
        features[split] = trainer_module.extract_features(extractor, dataset)
    np.savez(cache_path, **{f"{s}_x": v[0] for s, v in features.items()},
             **{f"{s}_y": v[1] for s, v in features.items()})
    return features


def train_head(features, num_classes, lr=1e-3, epochs=20, dropout=0.2, smoothing=0.0,
               batch=32, l2=0.0, patience=3):
    tf_keras.utils.set_random_seed(42)
    inputs = tf_keras.Input((features["train"][0].shape[1],))
    regularizer = tf_keras.regularizers.l2(l2) if l2 else None
    outputs = tf_keras.layers.Dense(num_classes, activation="softmax",
                                    kernel_regularizer=regularizer)(
        tf_keras.layers.Dropout(dropout)(inputs))
    model = tf_keras.Model(inputs, outputs)
    model.compile(tf_keras.optimizers.Adam(lr),
                  tf_keras.losses.CategoricalCrossentropy(label_smoothing=smoothing),
                  metrics=["accuracy"])

    def one_hot(split):
        return tf.one_hot(features[split][1], num_classes)

    model.fit(features["train"][0], one_hot("train"), batch_size=batch, epochs=epochs,
              verbose=0, validation_data=(features["eval"][0], one_hot("eval")),
              callbacks=[trainer_module.KeepBestWeights(),
                         tf_keras.callbacks.EarlyStopping(patience=patience)])
    return [model.evaluate(features[s][0], one_hot(s), verbose=0)[1] for s in ("eval", "test")]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline_root")
    parser.add_argument("--model-handle", required=True)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--features", default="/tmp/tfx_poets_head_sweep_features.npz")
    args = parser.parse_args()
    features = load_features(args.pipeline_root, args.model_handle, args.image_size,
                             args.features)
    num_classes = int(max(features["train"][1]) + 1)
    print({split: len(labels) for split, (_, labels) in features.items()})
    for setting in SETTINGS:
        eval_accuracy, test_accuracy = train_head(features, num_classes, **setting)
        print(f"{setting}: eval {eval_accuracy:.4f} test {test_accuracy:.4f}", flush=True)


if __name__ == "__main__":
    main()
