"""Tests of the TFLite conversion, on a tiny Keras classifier (seconds, not a MobileNet)."""

import json
import logging
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from models import features, tflite_export  # noqa: E402
from models.training_config import TrainingConfig  # noqa: E402

SIZE = 16
CLASSES = ("ant", "bee", "cat")
# Squashed photos and the plain view alone: the model as it is.
SETTINGS = TrainingConfig("m", image_size=SIZE, resize="squash", views=("plain",),
                          class_names=CLASSES)


def _classifier(extra_layer=None, side=SIZE):
    tf_keras.utils.set_random_seed(0)
    images = tf_keras.Input((side, side, 3))
    hidden = tf_keras.layers.Conv2D(8, 3, activation="relu")(images)
    if extra_layer is not None:
        hidden = extra_layer(hidden)
    pooled = tf_keras.layers.GlobalAveragePooling2D()(hidden)
    return tf_keras.Model(images, tf_keras.layers.Dense(3, activation="softmax")(pooled))


def _images(count, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (count, SIZE, SIZE, 3)).astype(np.float32)


def _run(model_content, images):
    """Scores of a TFLite model for float images, (de)quantizing int8 input and output."""
    interpreter = tf.lite.Interpreter(model_content=model_content)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], images.shape)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    if source["dtype"] == np.int8:
        scale, zero_point = source["quantization"]
        images = np.clip(np.round(images / scale + zero_point), -128, 127).astype(np.int8)
    interpreter.set_tensor(source["index"], images)
    interpreter.invoke()
    scores = interpreter.get_tensor(target["index"])
    if target["dtype"] == np.int8:
        scale, zero_point = target["quantization"]
        scores = (scores.astype(np.float32) - zero_point) * scale
    return scores


@pytest.fixture(scope="module")
def classifier():
    return _classifier()


@pytest.fixture(scope="module")
def calibration():
    return list(_images(40, seed=1)[:, np.newaxis])


def test_float_model_matches_keras_for_one_image_and_a_batch(classifier):
    content = tflite_export.to_float_tflite(classifier, SETTINGS)
    interpreter = tf.lite.Interpreter(model_content=content)
    (source,) = interpreter.get_input_details()
    assert source["dtype"] == np.float32
    assert source["shape"].tolist() == [1, SIZE, SIZE, 3]
    assert source["shape_signature"].tolist() == [-1, SIZE, SIZE, 3]  # batches: resize
    images = _images(5)
    expected = classifier(images, training=False).numpy()
    np.testing.assert_allclose(_run(content, images[:1]), expected[:1], atol=1e-5)
    np.testing.assert_allclose(_run(content, images), expected, atol=1e-5)


def test_int8_model_is_full_integer_and_close_to_keras(classifier, calibration):
    content = tflite_export.to_int8_tflite(classifier, SETTINGS, calibration)
    interpreter = tf.lite.Interpreter(model_content=content)
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert source["dtype"] == target["dtype"] == np.int8
    assert source["quantization"][0] > 0 and target["quantization"][0] > 0
    assert tflite_export.float_tensors(content) == []  # No float op left inside.
    images = _images(8, seed=2)
    expected = classifier(images, training=False).numpy()
    np.testing.assert_allclose(_run(content, images), expected, atol=0.03)


def test_int8_needs_calibration_images(classifier):
    with pytest.raises(ValueError, match="calibration image"):
        tflite_export.to_int8_tflite(classifier, SETTINGS, [])


def test_ops_without_int8_kernel_stay_float_and_are_reported(calibration, caplog, tmp_path):
    # TFLite's SIN has only a float kernel: the converter wraps it in dequantize/quantize.
    model = _classifier(tf_keras.layers.Lambda(tf.math.sin))
    content = tflite_export.to_int8_tflite(model, SETTINGS, calibration)
    assert any("Sin" in name for name in tflite_export.float_tensors(content))
    images = _images(4, seed=3)
    expected = model(images, training=False).numpy()
    np.testing.assert_allclose(_run(content, images), expected, atol=0.03)
    with caplog.at_level(logging.WARNING, logger=tflite_export.__name__):
        tflite_export.write_tflite_models(model, SETTINGS, calibration, str(tmp_path))
    assert "stay float" in caplog.text


def test_calibration_images_takes_single_images_from_batches():
    batches = [(_images(4, seed), np.zeros(4)) for seed in range(3)]
    taken = tflite_export.calibration_images(batches, count=6)
    assert len(taken) == 6
    assert all(image.shape == (1, SIZE, SIZE, 3) and image.dtype == np.uint8 for image in taken)
    # Pixels decoded from 8-bit JPEGs come back exactly as the model took them.
    pixels = np.round(batches[1][0][1] * 255) / 255
    np.testing.assert_allclose(tflite_export.as_float_pixels(taken[5])[0], pixels, atol=1e-7)
    assert len(tflite_export.calibration_images(batches, count=100)) == 12


def test_write_tflite_models_writes_both_models_and_labels(classifier, calibration, tmp_path):
    paths = tflite_export.write_tflite_models(classifier, SETTINGS, calibration, str(tmp_path))
    folder = tmp_path / features.TFLITE_DIR
    assert sorted(p.name for p in folder.iterdir()) == ["labels.txt", "model_float.tflite",
                                                       "model_int8.tflite", "preprocessing.json"]
    assert json.loads((folder / "preprocessing.json").read_text()) == {
        "image_size": SIZE, "resize": "squash", "views": ["plain"]}
    assert paths[features.INT8_MODEL_FILE] == str(folder / "model_int8.tflite")
    assert (folder / "labels.txt").read_text() == "ant\nbee\ncat\n"
    float_model = (folder / "model_float.tflite").read_bytes()
    np.testing.assert_allclose(
        _run(float_model, _images(2)), classifier(_images(2), training=False), atol=1e-5
    )


def test_photos_of_any_shape_and_their_views_are_scored_inside_the_model(calibration):
    """Aspect ratio kept: the input takes any height and width; the views' mean is inside."""
    model = _classifier(side=None)
    settings = TrainingConfig("m", image_size=SIZE, resize="short-side",
                              views=("plain", "mirror", "squash8"), class_names=CLASSES)
    content = tflite_export.to_float_tflite(model, settings)
    (source,) = tf.lite.Interpreter(model_content=content).get_input_details()
    assert source["shape_signature"].tolist() == [-1, -1, -1, 3]
    image = np.random.default_rng(4).uniform(0, 1, (1, SIZE, 24, 3)).astype(np.float32)
    views = [image, image[:, :, ::-1], tf.image.resize(image, [8, 8]).numpy()]
    expected = np.mean([model(view, training=False).numpy() for view in views], axis=0)
    np.testing.assert_allclose(_run(content, image), expected, atol=1e-5)
    # Calibrated on images of other shapes, the int8 model takes any shape too.
    shaped = [np.random.default_rng(i).uniform(0, 1, (1, SIZE, SIZE + 8 * (i % 2), 3))
              .astype(np.float32) for i in range(12)]
    int8 = tflite_export.to_int8_tflite(model, settings, shaped)
    np.testing.assert_allclose(_run(int8, image), expected, atol=0.05)
