"""The feature pass: batches of one shape, each photo's features under its own key."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from models import bottleneck_cache, feature_pass, transform_module  # noqa: E402
from models.training_config import TrainingConfig  # noqa: E402


class DictCache(dict):
    def put(self, key, value):
        self[key] = value


def _jpeg(height: int, width: int, seed: int) -> bytes:
    pixels = tf.random.stateless_uniform([height, width, 3], seed=[seed, 0])
    return transform_module.encode_jpeg(pixels).numpy()


def test_shape_batches_group_one_shape_each_and_cover_every_photo_once():
    shapes = [(8, 12), (12, 8), (8, 12), (8, 8), (8, 12), (8, 12), (12, 8)]
    batches = feature_pass.shape_batches(shapes, batch_size=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(shapes)))
    for batch in batches:
        assert 1 <= len(batch) <= 3
        assert len({shapes[position] for position in batch}) == 1
    # Four photos of (8, 12) in batches of at most three: two batches, one shape at a time.
    assert [len(batch) for batch in batches] == [1, 3, 1, 2]


def test_jpeg_shape_reads_the_header():
    assert feature_pass.jpeg_shape(_jpeg(10, 14, seed=1)) == (10, 14)


def test_cached_features_are_each_photos_own_whatever_the_order_of_shapes():
    # The feature of a photo is its mean pixel, so any mix-up of rows shows.
    shapes = [(8, 12), (12, 8), (8, 8), (8, 12), (12, 8), (8, 12)]
    jpegs = [_jpeg(height, width, seed) for seed, (height, width) in enumerate(shapes)]
    settings = TrainingConfig(model_handle="unused", image_size=8, class_names=("a",),
                              resize="short-side", views=("plain", "mirror"))
    batch_sizes = []

    def extract(images):
        batch_sizes.append(int(images.shape[0]))
        return tf.reduce_mean(images, axis=[1, 2])

    cache = DictCache()
    by_view, computed = feature_pass.cached_features(extract, jpegs, settings, cache,
                                                     settings.views)
    assert computed == len(jpegs) and len(by_view) == 2
    for row, jpeg in enumerate(jpegs):
        expected = tf.reduce_mean(transform_module.decode_transformed_image(
            jpeg, 8, "short-side"), axis=[0, 1]).numpy()
        np.testing.assert_allclose(by_view[0][row], expected, atol=1e-6)
        np.testing.assert_allclose(by_view[1][row], expected, atol=1e-6)  # mirror: same mean
    assert 1 not in batch_sizes  # the lone (8, 8) photo ran padded to two

    # A second pass finds every photo in the cache and runs nothing.
    batch_sizes.clear()
    again, computed = feature_pass.cached_features(extract, jpegs, settings, cache,
                                                   settings.views)
    assert computed == 0 and batch_sizes == []
    np.testing.assert_array_equal(again[0], by_view[0])
    key = bottleneck_cache.view_key(bottleneck_cache.photo_key(jpegs[2]), "mirror")
    np.testing.assert_array_equal(cache[key], by_view[1][2])
