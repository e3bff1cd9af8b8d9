"""retrain.py's image distortions, for the fine-tuning phase of the Trainer.

The flags keep retrain.py's names and meaning (percentages):
- `flip_left_right`: mirror half of the images;
- `random_crop`: the margin, in percent of the image, that may be cropped off;
- `random_scale`: how much, in percent, the image may be scaled up before that crop;
- `random_brightness`: how much, in percent, pixel values may be multiplied up or down.

The head phase trains on cached, undistorted MobileNet features; only fine-tuning, which runs
the network on every image anyway, sees distorted images.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Distortions:
    flip_left_right: bool = False
    random_crop: int = 0
    random_scale: int = 0
    random_brightness: int = 0

    @classmethod
    def from_settings(cls, settings) -> Distortions:
        """The distortions of a models.training_config.TrainingConfig."""
        return cls(
            flip_left_right=settings.flip_left_right,
            random_crop=settings.random_crop,
            random_scale=settings.random_scale,
            random_brightness=settings.random_brightness,
        )

    @property
    def enabled(self) -> bool:
        return bool(
            self.flip_left_right or self.random_crop or self.random_scale or self.random_brightness
        )


def distort_image(image: tf.Tensor, distortions: Distortions) -> tf.Tensor:
    """A randomly distorted copy of one [h, w, 3] float image in [0, 1], same shape.

    As retrain.py's `add_input_distortions`: scale the image up by the crop margin times a
    random scale, crop a random h x w window, maybe mirror it, then multiply it by a random
    brightness.
    """
    shape = tf.shape(image)
    margin_scale = 1.0 + distortions.random_crop / 100.0
    scale = margin_scale * tf.random.uniform([], 1.0, 1.0 + distortions.random_scale / 100.0)
    if distortions.random_crop or distortions.random_scale:
        scaled_shape = tf.cast(tf.math.ceil(scale * tf.cast(shape[:2], tf.float32)), tf.int32)
        scaled = tf.image.resize(image, scaled_shape, method="bilinear")
        image = tf.ensure_shape(tf.image.random_crop(scaled, shape), image.shape)
    if distortions.flip_left_right:
        image = tf.image.random_flip_left_right(image)
    if distortions.random_brightness:
        low = 1.0 - distortions.random_brightness / 100.0
        high = 1.0 + distortions.random_brightness / 100.0
        image = image * tf.random.uniform([], low, high)
    return tf.clip_by_value(image, 0.0, 1.0)
