"""Test-split accuracy and file size of the SavedModel, the float TFLite and the int8 TFLite model.

    .venv/bin/python -m bench.tflite_accuracy --model SERVING_DIR --data-dir PHOTOS \
        [--splits test eval train]

SERVING_DIR is a pushed model (base folder or one version) or a Trainer's serving_model_dir
with its tflite/ folder. The test split is rebuilt from PHOTOS with ImageExampleGen's own hash
split (`which_split`, --testing-percentage / --validation-percentage as in the pipeline); each
photo is read as label_image reads it and classified by each model through label_image's
classifiers, so the TFLite models get exactly the training preprocessing.

235 test photos cannot tell a point of quantization loss from chance, so --splits can add the
eval and train photos: each TFLite model's accuracy is then given against the SavedModel's as
a difference with its paired standard error (over photos), and how often their top-1 agree.
The train photos trained the head and 150 of them calibrated int8: their accuracy is
optimistic, but the difference between two models of one head still measures quantization.

With `--convert-to OUT` the SavedModel is copied to OUT and its tflite/ folder written there by
`models/tflite_export.py` (size, resize and views from its preprocessing.json), calibrated on
--calibration-images photos of the train split (the Trainer calibrates on its train dataset
the same way), then OUT is measured: how int8 depends on its calibration.
"""

import argparse
import os
import shutil
import sys
import time

from bench import common

common.tensorflow_defaults(log_level="3")

import numpy as np  # noqa: E402

from bench.photos import list_photos, read_encoded  # noqa: E402
from components.image_example_gen import images  # noqa: E402
from models import features, tflite_export  # noqa: E402
from models.training_config import TrainingConfig  # noqa: E402
from tools import classifiers as saved_model_classifier  # noqa: E402
from tools import tflite_classifier  # noqa: E402

BATCH = 32


def split_photos(data_dir, split, testing_percentage, validation_percentage):
    """[(path, class index)] of one split (or of a tuple of splits), by ImageExampleGen's hash
    of the file name."""
    wanted = (split,) if isinstance(split, str) else tuple(split)
    class_names, rows = list_photos(data_dir, testing_percentage, validation_percentage)
    return class_names, [
        (os.path.join(data_dir, relative), index)
        for relative, index, photo_split in rows
        if photo_split in wanted
    ]


def paired_difference(correct: np.ndarray, reference_correct: np.ndarray) -> tuple[float, float]:
    """(mean of correct - reference_correct, its standard error), both over the same photos."""
    return common.mean_and_standard_error(correct.astype(float) - reference_correct.astype(float))


def predict(classify, encoded_photos):
    scores = []
    for start in range(0, len(encoded_photos), BATCH):
        batch_scores, _ = classify(encoded_photos[start : start + BATCH])
        scores.extend(batch_scores)
    return np.asarray(scores, dtype=np.float32)


def folder_bytes(path):
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(path)
        for name in names
    )


def model_settings(model_dir, class_names, views):
    """The TrainingConfig the TFLite conversion needs, from the model's tflite/preprocessing.json
    (size, resize and, since issue 15, the averaged views); `views` when the file has none."""
    import json

    path = model_dir / features.TFLITE_DIR / features.PREPROCESSING_FILE
    if not path.is_file():
        raise SystemExit(f"{path}: missing; --convert-to needs the model's preprocessing file")
    preprocessing = json.loads(path.read_text())
    return TrainingConfig(
        "m", image_size=int(preprocessing["image_size"]), resize=preprocessing["resize"],
        views=tuple(preprocessing.get("views", views)), class_names=tuple(class_names))


def convert_saved_model(model_dir, output_dir, settings, calibration_paths):
    """A copy of model_dir whose tflite/ folder is written again, calibrated on the given
    photos prepared as the Trainer's train dataset prepares them."""
    import tensorflow as tf

    shutil.copytree(model_dir, output_dir, ignore=shutil.ignore_patterns(features.TFLITE_DIR))
    # The SavedModel keeps the Keras model's traced call on float pixels of any shape.
    keras_model = tf.saved_model.load(str(model_dir))
    to_pixels = tflite_classifier.training_pixels_function(settings.image_size, settings.resize)
    calibration = [
        np.round(to_pixels(tf.constant([read_encoded(path)])).numpy() * 255).astype(np.uint8)
        for path in calibration_paths
    ]
    started = time.time()
    tflite_export.write_tflite_models(keras_model, settings, calibration, str(output_dir))
    return time.time() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="pushed model folder or serving_model_dir")
    parser.add_argument("--data-dir", required=True, help="the photo folder of the pipeline run")
    parser.add_argument("--testing-percentage", type=int, default=10)
    parser.add_argument("--validation-percentage", type=int, default=10)
    parser.add_argument("--convert-to", help="copy the SavedModel here and write its tflite/")
    parser.add_argument("--calibration-images", type=int,
                        default=tflite_export.CALIBRATION_IMAGES)
    parser.add_argument("--calibration-seed", type=int, default=0,
                        help="which train photos calibrate (--convert-to)")
    parser.add_argument("--views", default=",".join(TrainingConfig("m").views),
                        help="the model's averaged views, for a model whose "
                        "preprocessing.json does not name them (--convert-to)")
    parser.add_argument("--splits", nargs="+", default=[images.TEST],
                        choices=[images.TRAIN, images.EVAL, images.TEST],
                        help="the splits whose photos are scored (default: test)")
    args = parser.parse_args(argv)

    model_dir = saved_model_classifier.resolve_model_dir(args.model)
    split = (args.testing_percentage, args.validation_percentage)
    class_names, test = split_photos(args.data_dir, args.splits, *split)
    conversion_s = None
    if args.convert_to:
        _, train = split_photos(args.data_dir, images.TRAIN, *split)
        rng = np.random.default_rng(args.calibration_seed)
        picked = rng.choice(len(train), size=min(args.calibration_images, len(train)),
                            replace=False)
        settings = model_settings(model_dir, class_names, tuple(args.views.split(",")))
        conversion_s = convert_saved_model(
            model_dir, args.convert_to, settings, [train[i][0] for i in picked]
        )
        model_dir = saved_model_classifier.resolve_model_dir(args.convert_to)
    tflite_dir = model_dir / features.TFLITE_DIR

    encoded = [read_encoded(path) for path, _ in test]
    labels = np.array([label for _, label in test])
    classifiers = {
        "SavedModel (serving_default)": (saved_model_classifier.load_classifier(model_dir),
                                         folder_bytes(model_dir) - folder_bytes(tflite_dir)),
    }
    for name in (features.FLOAT_MODEL_FILE, features.INT8_MODEL_FILE):
        path = tflite_dir / name
        classifiers[f"TFLite {name}"] = (tflite_classifier.load_tflite_classifier(path),
                                         path.stat().st_size)

    print(f"model: {model_dir}; {' + '.join(args.splits)} split of {args.data_dir}: "
          f"{len(test)} photos, {len(class_names)} classes")
    if conversion_s is not None:
        print(f"TFLite conversion (float + int8, {args.calibration_images} calibration "
              f"photos of the train split): {conversion_s:.0f} s")
    print("\n| model | accuracy | correct | - SavedModel's (paired SE), points "
          "| top-1 = SavedModel's | max score diff | size |")
    print("|---|---|---|---|---|---|---|")
    reference = None
    for name, (classify, size) in classifiers.items():
        started = time.time()
        scores = predict(classify, encoded)
        seconds = time.time() - started
        reference = scores if reference is None else reference
        hits = scores.argmax(axis=1) == labels
        correct = int(hits.sum())
        difference, error = paired_difference(hits, reference.argmax(axis=1) == labels)
        agree = int((scores.argmax(axis=1) == reference.argmax(axis=1)).sum())
        print(f"| {name} | {100 * correct / len(labels):.1f} % | {correct} / {len(labels)} | "
              f"{100 * difference:+.2f} ± {100 * error:.2f} | "
              f"{agree} / {len(labels)} | {np.abs(scores - reference).max():.4f} | "
              f"{size / 1e6:.2f} MB |", flush=True)
        print(f"  ({name}: {seconds:.1f} s for the split)", file=sys.stderr)
    float_size = classifiers[f"TFLite {features.FLOAT_MODEL_FILE}"][1]
    int8_size = classifiers[f"TFLite {features.INT8_MODEL_FILE}"][1]
    print(f"\nfloat / int8 size: {float_size / int8_size:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
