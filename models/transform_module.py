"""Transform's user module: decode each image and resize it to the size the network sees.

Squashed to a square, or (`short-side`) with its aspect ratio kept and its short side at the
chosen size.

The resized image is stored re-encoded as JPEG, not as floats: 224x224x3 float32 would cost
600 KB an image on disk, a quality-90 JPEG of it about 15 KB. The Trainer and the serving
signature decode it with the same `decode_transformed_image`, so training and serving match.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

from models import features

# 90, not 95: 30 % fewer bytes (33 against 47 KB a photo at short side 288), the same
# cross-validated accuracy, +0.00 +- 0.27 points paired (BENCHMARKS.md, "The Transform's JPEG").
TRANSFORMED_JPEG_QUALITY = 90
RESIZE_MODES = features.RESIZE_MODES
SHORT_SIDE, SQUASH = RESIZE_MODES
# With SHORT_SIDE, the long side is at most this many times the short one: a panorama is
# cropped to its centre there, so one odd photo cannot cost the memory of ten.
MAX_ASPECT_RATIO = 2.0
# With SHORT_SIDE, the long side is rounded to a multiple of this (MobileNet's stride): photos
# then fall into a few shapes, which the Trainer and serving batch together; the aspect ratio
# moves by under 16 / image_size.
LONG_SIDE_STEP = 32


def _rounded_long_side(short: tf.Tensor, long: tf.Tensor, image_size: int) -> tf.Tensor:
    scaled = tf.cast(long, tf.float32) * image_size / tf.cast(short, tf.float32)
    steps = tf.maximum(1.0, tf.round(scaled / LONG_SIDE_STEP))
    longest = int(image_size * MAX_ASPECT_RATIO)
    return tf.maximum(image_size, tf.minimum(longest, tf.cast(steps, tf.int32) * LONG_SIDE_STEP))


def resized_shape(height: tf.Tensor, width: tf.Tensor, image_size: int, mode: str):
    """(height, width) after resizing: square, or the short side at `image_size` and the long
    side at the nearest multiple of LONG_SIDE_STEP, at most MAX_ASPECT_RATIO times that."""
    if mode == SQUASH:
        return tf.constant(image_size), tf.constant(image_size)
    short, long = tf.minimum(height, width), tf.maximum(height, width)
    long_side = _rounded_long_side(short, long, image_size)
    size = tf.constant(image_size)
    return tf.cond(height <= width, lambda: (size, long_side), lambda: (long_side, size))


def decode_and_resize(encoded: tf.Tensor, image_size: int, mode: str = SQUASH) -> tf.Tensor:
    """One encoded JPEG/PNG/GIF/BMP image to a float32 [h, w, 3] tensor in [0, 1].

    SQUASH: [size, size], not cropped, as retrain.py did, so no part of the photo is lost.
    SHORT_SIDE: the aspect ratio kept (see resized_shape); a longer panorama is scaled to the
    longest side allowed, not cropped.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r} is not one of {RESIZE_MODES}")
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)
    shape = tf.shape(image)
    height, width = resized_shape(shape[0], shape[1], image_size, mode)
    image = tf.image.resize(image, [height, width], method="bilinear", antialias=True)
    return tf.clip_by_value(image, 0.0, 1.0)


def encode_jpeg(image: tf.Tensor, quality: int = TRANSFORMED_JPEG_QUALITY) -> tf.Tensor:
    """A [h, w, 3] float image in [0, 1] to JPEG bytes."""
    pixels = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
    return tf.io.encode_jpeg(pixels, quality=quality)


def resize_to_jpeg(encoded_images: tf.Tensor, image_size: int, mode: str = SQUASH,
                   quality: int = TRANSFORMED_JPEG_QUALITY) -> tf.Tensor:
    """A [batch] tensor of encoded images to a [batch] tensor of resized JPEGs."""
    return tf.map_fn(
        lambda encoded: encode_jpeg(decode_and_resize(encoded, image_size, mode), quality),
        encoded_images,
        fn_output_signature=tf.TensorSpec([], tf.string),
    )


def decode_transformed_image(jpeg: tf.Tensor, image_size: int, mode: str = SQUASH) -> tf.Tensor:
    """A resized JPEG from Transform to the float32 [h, w, 3] input of the MobileNet:
    [size, size, 3] when squashed, else of the photo's own shape."""
    image = tf.io.decode_jpeg(jpeg, channels=3)
    image = tf.image.convert_image_dtype(image, tf.float32)
    if mode == SQUASH:
        return tf.ensure_shape(image, [image_size, image_size, 3])
    return tf.ensure_shape(image, [None, None, 3])


def decode_transformed_images(jpegs: tf.Tensor, image_size: int, mode: str = SQUASH
                              ) -> tf.Tensor:
    """[B] resized JPEGs of one shape to float32 pixels [B, h, w, 3], as
    `decode_transformed_image` decodes each."""
    side = image_size if mode == SQUASH else None
    return tf.map_fn(lambda jpeg: decode_transformed_image(jpeg, image_size, mode), jpegs,
                     fn_output_signature=tf.TensorSpec([side, side, 3], tf.float32))


# Packs a resized (height, width) into one int64 key; the sides stay far below it.
_SHAPE_KEY_BASE = 1 << 20


def shape_key(height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """One int64 per distinct (height, width), for grouping photos of one shape."""
    return tf.cast(height, tf.int64) * _SHAPE_KEY_BASE + tf.cast(width, tf.int64)


def _flatten(feature: tf.Tensor) -> tf.Tensor:
    """Schema features have shape [batch, 1]; the outputs are [batch]."""
    return tf.reshape(feature, [-1])


def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    """tf.Transform entry point; `custom_config` gives `image_size` (the short side, or the
    square's) and `resize` (one of RESIZE_MODES; SQUASH if absent)."""
    image_size = int(custom_config["image_size"])
    mode = custom_config.get("resize", SQUASH)
    outputs = {
        features.TRANSFORMED_IMAGE_KEY: resize_to_jpeg(
            _flatten(inputs[features.IMAGE_KEY]), image_size, mode
        )
    }
    outputs[features.TRANSFORMED_LABEL_KEY] = _flatten(inputs[features.LABEL_KEY])
    if features.FILENAME_KEY in inputs:
        # Passed on, so that the Trainer can name the photos whose label it doubts.
        outputs[features.FILENAME_KEY] = _flatten(inputs[features.FILENAME_KEY])
    return outputs
