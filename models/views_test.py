"""The views of a photo."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from models import (
    training_config,
    views,  # noqa: E402
)


def test_views_batched_and_alone():
    images = tf.random.stateless_uniform([2, 6, 10, 3], seed=[1, 1])
    np.testing.assert_array_equal(views.apply_view(images, "plain"), images)
    np.testing.assert_array_equal(views.apply_view(images, "mirror")[:, :, 0],
                                  images[:, :, -1])
    np.testing.assert_array_equal(views.apply_view(images[0], "mirror"),
                                  views.apply_view(images, "mirror")[0])
    assert views.apply_view(images, "squash4").shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match="unknown view"):
        views.apply_view(images, "rotate")


def test_per_view_pads_a_single_photo_and_returns_one_row():
    calls = []

    def function(batch):
        calls.append(int(batch.shape[0]))
        return tf.reduce_mean(batch, axis=[1, 2])

    one = tf.ones([1, 8, 8, 3])
    outputs = views.per_view(function, one, ("plain", "squash4"), pad_single=True)
    assert calls == [2, 2] and [o.shape for o in outputs] == [(1, 3), (1, 3)]


def test_the_config_accepts_exactly_the_views_that_exist():
    assert training_config.views_are_valid(("plain", "mirror", "squash224"))
    for bad in ((), ("mirror",), ("plain", "plain"), ("plain", "squash"), ("plain", "crop")):
        assert not training_config.views_are_valid(bad)
