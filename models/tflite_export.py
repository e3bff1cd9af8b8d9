"""TFLite copies of the trained classifier, written beside the SavedModel.

The Trainer writes them to ``<serving_model_dir>/tflite/``; the Pusher copies that whole folder,
so every pushed version holds:

- ``model_float.tflite``: float32 weights and activations;
- ``model_int8.tflite``: full-integer post-training quantization (int8 weights, activations,
  input and output), about 4x smaller, calibrated on photos of the train split;
- ``labels.txt``: the class names, one a line, in the order of the scores;
- ``preprocessing.json``: how to prepare pixels for them (``image_size``, ``resize``), and the
  ``views`` the models average inside (informative: callers pass the plain view's pixels).

Both models take pixels, not encoded photos, in [0, 1] as the Trainer's
``decode_transformed_image`` makes them: ``[1, size, size, 3]`` when squashed, else
``[1, height, width, 3]`` of the photo's resized shape (resize the input tensor); the int8
model takes them quantized with its input tensor's scale and zero point. Both average the
scores of the photo's views inside the model, as the SavedModel does, and return softmax scores
``[batch, classes]``. ``tools/label_image.py --model x.tflite`` does the preprocessing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from models import features, serving  # noqa: E402

logger = logging.getLogger(__name__)

# Calibration images for the int8 ranges. Each costs one float forward pass inside the
# converter (about 0.1 s for MobileNet 1.0/224 on two cores), counted in the Trainer's time;
# beyond ~100 the ranges of a MobileNet barely move.
CALIBRATION_IMAGES = 150


def pixel_function(model, settings):
    """The model as a concrete function: float pixels [batch, h, w, 3] -> scores, the mean
    over the serving views (models/serving.py).

    The batch dimension is left open so an interpreter may be resized to run batches, and so
    are height and width unless the photos are squashed to one size.
    """
    from models import transform_module

    side = settings.image_size if settings.resize == transform_module.SQUASH else None
    spec = tf.TensorSpec([None, side, side, 3], tf.float32, name="image")

    @tf.function(input_signature=[spec])
    def scores(image):
        scored = serving.score_pixels(model, image, serving.serving_views(settings))
        return {features.SCORES_KEY: scored}

    return scores.get_concrete_function()


def _converter(model, settings) -> tf.lite.TFLiteConverter:
    # trackable_obj keeps the model's variables alive (and found) while converting.
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [pixel_function(model, settings)], model
    )
    # Freeze the function's graph instead of first saving it as a SavedModel and converting
    # that: float and int8 of MobileNet 1.0/224 took 17.8 s instead of 30.8 s and peaked
    # 318 MB lower (bench/tflite_speed.py, BENCHMARKS.md); float scores agree to 2e-6.
    converter.experimental_lower_to_saved_model = False
    return converter


def to_float_tflite(model, settings) -> bytes:
    """The model as a float32 TFLite flatbuffer."""
    return _converter(model, settings).convert()


def to_int8_tflite(model, settings, calibration: Sequence[np.ndarray]) -> bytes:
    """The model quantized to int8 after training, calibrated on ``calibration`` images.

    ``calibration``: arrays [1, size, size, 3] of float32 in [0, 1] or of uint8 pixels (as
    `calibration_images` keeps them, 4x smaller). Weights, activations, input
    and output are int8; MobileNet, Dense and Softmax all have int8 kernels. (An op without
    one, in some other backbone, is kept float between dequantize and quantize ops by the
    converter; `float_tensors` finds them.)
    """
    if not calibration:
        raise ValueError("int8 quantization needs at least one calibration image")
    converter = _converter(model, settings)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # Called once per calibration pass, so it returns a fresh iterator each time.
    converter.representative_dataset = lambda: ([as_float_pixels(image)] for image in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def float_tensors(model_content: bytes) -> list[str]:
    """Names of the float32 tensors of a TFLite model: none in a fully int8 one."""
    interpreter = tf.lite.Interpreter(model_content=model_content)
    return [
        detail["name"]
        for detail in interpreter.get_tensor_details()
        if detail["dtype"] == np.float32
    ]


def as_float_pixels(image: np.ndarray) -> np.ndarray:
    """float32 in [0, 1], as the models take them, from uint8 pixels or float32 ones."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.asarray(image, dtype=np.float32)


def calibration_images(batches: Iterable, count: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """The first ``count`` images of (images [B, h, w, 3], labels) batches, each as [1, h, w, 3]
    uint8 pixels.

    The batches hold float32 in [0, 1] decoded from 8-bit JPEGs, so uint8 keeps them exactly,
    in a quarter of the memory the Trainer holds while converting (90 MB as float for 150
    MobileNet 224 images). Pass the Trainer's shuffled train dataset: a mix of classes, never
    eval or test photos.
    """
    images: list[np.ndarray] = []
    for batch, _ in batches:
        for image in np.asarray(batch, dtype=np.float32):
            if len(images) == count:
                return images
            images.append(np.round(image * 255.0).astype(np.uint8)[np.newaxis])
    return images


def write_tflite_models(
    model,
    settings,
    calibration: Sequence[np.ndarray],
    export_dir: str,
) -> dict[str, str]:
    """Writes the float and int8 models, labels.txt and preprocessing.json to
    ``export_dir/tflite``; `settings` is the Trainer's TrainingConfig.

    Returns {file name: path}. tf.io.gfile, so ``export_dir`` may be a gs:// path as well.
    """
    tflite_dir = os.path.join(export_dir, features.TFLITE_DIR)
    tf.io.gfile.makedirs(tflite_dir)
    started = time.time()
    contents = {
        features.FLOAT_MODEL_FILE: to_float_tflite(model, settings),
        features.INT8_MODEL_FILE: to_int8_tflite(model, settings, calibration),
        features.LABELS_FILE: "".join(
            f"{name}\n" for name in settings.class_names
        ).encode("utf-8"),
        features.PREPROCESSING_FILE: json.dumps(
            {"image_size": settings.image_size, "resize": settings.resize,
             "views": list(serving.serving_views(settings))}
        ).encode("utf-8"),
    }
    left_float = float_tensors(contents[features.INT8_MODEL_FILE])
    if left_float:
        logger.warning(
            "TFLite: %d tensors of the int8 model stay float (ops without an int8 kernel), "
            "e.g. %s", len(left_float), left_float[0],
        )
    paths = {}
    for name, content in contents.items():
        paths[name] = os.path.join(tflite_dir, name)
        with tf.io.gfile.GFile(paths[name], "wb") as output:
            output.write(content)
    logger.info(
        "TFLite: float (%.1f MB) and int8 (%.1f MB, %d calibration images) models in %.0f s",
        len(contents[features.FLOAT_MODEL_FILE]) / 1e6,
        len(contents[features.INT8_MODEL_FILE]) / 1e6,
        len(calibration), time.time() - started,
    )
    return paths
