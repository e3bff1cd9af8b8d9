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


def test_pending_batches_are_one_shape_each_and_run_as_soon_as_full():
    shapes = [(8, 12), (12, 8), (8, 12), (8, 8), (8, 12), (8, 12), (12, 8)]
    jpegs = [_jpeg(height, width, seed) for seed, (height, width) in enumerate(shapes)]
    consumed = []

    def photos():
        for position, jpeg in enumerate(jpegs):
            consumed.append(position)
            yield position, jpeg

    batches, consumed_at_yield = [], []
    for batch in feature_pass.pending_batches(photos(), batch_size=3):
        batches.append([position for position, _ in batch])
        consumed_at_yield.append(len(consumed))
    assert sorted(sum(batches, [])) == list(range(len(shapes)))
    for batch in batches:
        assert 1 <= len(batch) <= 3 and len({shapes[position] for position in batch}) == 1
    # The third (8, 12) photo fills a batch, which runs before a fourth photo is read: no
    # more than a partial batch of bytes per shape is ever held.
    assert batches[0] == [0, 2, 4] and consumed_at_yield[0] == 5
    assert sorted(map(len, batches)) == [1, 1, 2, 3]


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
