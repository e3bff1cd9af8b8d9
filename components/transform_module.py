"""Transform's user module: decode each image and resize it to the model's resolution.

The resized image is stored re-encoded as JPEG, not as floats: 224x224x3 float32 would cost
600 KB an image on disk, a quality-95 JPEG of it costs about 20 KB. The Trainer and the serving
signature decode it with the same `decode_transformed_image`, so training and serving match.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

from pipeline import config as config_lib  # noqa: E402

TRANSFORMED_JPEG_QUALITY = 95


def decode_and_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """One encoded JPEG/PNG/GIF/BMP image to a [size, size, 3] float32 tensor in [0, 1].

    Squashes to a square without cropping, as retrain.py did, so no part of the photo is lost.
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)
    return tf.clip_by_value(image, 0.0, 1.0)


def encode_jpeg(image: tf.Tensor) -> tf.Tensor:
    """A [h, w, 3] float image in [0, 1] to JPEG bytes."""
    pixels = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
    return tf.io.encode_jpeg(pixels, quality=TRANSFORMED_JPEG_QUALITY)


def resize_to_jpeg(encoded_images: tf.Tensor, image_size: int) -> tf.Tensor:
    """A [batch] tensor of encoded images to a [batch] tensor of resized JPEGs."""
    return tf.map_fn(
        lambda encoded: encode_jpeg(decode_and_resize(encoded, image_size)),
        encoded_images,
        fn_output_signature=tf.TensorSpec([], tf.string),
    )


def decode_transformed_image(jpeg: tf.Tensor, image_size: int) -> tf.Tensor:
    """A resized JPEG from Transform to the float32 [size, size, 3] input of the MobileNet."""
    image = tf.io.decode_jpeg(jpeg, channels=3)
    image = tf.image.convert_image_dtype(image, tf.float32)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def _flatten(feature: tf.Tensor) -> tf.Tensor:
    """Schema features have shape [batch, 1]; the outputs are [batch]."""
    return tf.reshape(feature, [-1])


def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    """tf.Transform entry point; `custom_config["image_size"]` is the model's resolution."""
    image_size = int(custom_config["image_size"])
    outputs = {
        config_lib.TRANSFORMED_IMAGE_KEY: resize_to_jpeg(
            _flatten(inputs[config_lib.IMAGE_KEY]), image_size
        )
    }
    outputs[config_lib.TRANSFORMED_LABEL_KEY] = _flatten(inputs[config_lib.LABEL_KEY])
    return outputs
