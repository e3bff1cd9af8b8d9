"""Tests of Transform's preprocessing_fn and its helpers."""

import io
import os
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from models import (
    features,
    transform_module,  # noqa: E402
)


def _encoded(colour, size=(50, 30), image_format="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=image_format)
    return buffer.getvalue()


def test_decode_and_resize_gives_square_float_image_in_unit_range():
    image = transform_module.decode_and_resize(tf.constant(_encoded((255, 0, 0))), 32)
    assert image.shape == (32, 32, 3)
    assert image.dtype == tf.float32
    np.testing.assert_allclose(image.numpy().mean(axis=(0, 1)), [1.0, 0.0, 0.0], atol=0.02)


def test_resize_to_jpeg_stores_small_jpegs_of_the_right_size():
    encoded = tf.constant([_encoded((0, 255, 0)), _encoded((0, 0, 255), image_format="GIF")])
    jpegs = transform_module.resize_to_jpeg(encoded, 64).numpy()
    for jpeg, colour in zip(jpegs, ([0, 1, 0], [0, 0, 1]), strict=True):
        decoded = transform_module.decode_transformed_image(tf.constant(jpeg), 64)
        np.testing.assert_allclose(decoded.numpy().mean(axis=(0, 1)), colour, atol=0.03)
        # Far below the 64*64*3*4 bytes of floats: the point of storing JPEG.
        assert len(jpeg) < 64 * 64 * 3 * 4 / 10


def test_preprocessing_fn_with_tf_transform():
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    feature_spec = {
        features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
    }
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    raw = [
        {features.IMAGE_KEY: [_encoded((250, 10, 10))], features.LABEL_KEY: [0]},
        {features.IMAGE_KEY: [_encoded((10, 10, 250), image_format="JPEG")],
         features.LABEL_KEY: [1]},
    ]
    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        (transformed, _), _ = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: transform_module.preprocessing_fn(inputs, {"image_size": 48}),
            output_record_batches=False,
        )
    assert [row[features.TRANSFORMED_LABEL_KEY] for row in transformed] == [0, 1]
    first = transform_module.decode_transformed_image(
        tf.constant(transformed[0][features.TRANSFORMED_IMAGE_KEY]), 48
    )
    assert first.numpy()[..., 0].mean() > 0.9


@pytest.mark.parametrize("height,width,expected", [
    (240, 320, (288, 384)), (333, 500, (288, 448)), (500, 333, (448, 288)),
    (288, 288, (288, 288)),
    (100, 1000, (288, 576)),  # a panorama: the long side at most twice the short one
])
def test_short_side_keeps_the_aspect_ratio_with_the_long_side_a_multiple_of_32(
        height, width, expected):
    photo = tf.io.encode_jpeg(tf.zeros([height, width, 3], tf.uint8))
    resized = transform_module.decode_and_resize(photo, 288, transform_module.SHORT_SIDE)
    assert tuple(resized.shape[:2]) == expected
    squashed = transform_module.decode_and_resize(photo, 288, transform_module.SQUASH)
    assert tuple(squashed.shape[:2]) == (288, 288)
    jpeg = transform_module.resize_to_jpeg(tf.stack([photo]), 288, transform_module.SHORT_SIDE)
    decoded = transform_module.decode_transformed_image(jpeg[0], 288, transform_module.SHORT_SIDE)
    assert tuple(decoded.shape[:2]) == expected
