"""The any-size MobileNet: the module's weights, the module's features at the module's size."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402

from models import resolution_free  # noqa: E402
from tests.support import make_random_hub_mobilenet  # noqa: E402


@pytest.fixture(scope="module")
def fixed_module(tmp_path_factory):
    return str(make_random_hub_mobilenet(tmp_path_factory.mktemp("hub") / "m", 0.25, 96))


def test_the_copy_gives_the_modules_features_at_its_size_and_takes_any_size(fixed_module,
                                                                            tmp_path):
    copy = resolution_free.any_size_module(fixed_module, str(tmp_path))
    assert copy != fixed_module and copy.endswith("-any-size")
    original = hub.KerasLayer(fixed_module)
    rebuilt = hub.KerasLayer(copy)
    pixels = tf.random.stateless_uniform([3, 96, 96, 3], seed=[3, 4])
    difference = np.abs(original(pixels).numpy() - rebuilt(pixels).numpy()).max()
    assert difference <= resolution_free.FEATURE_TOLERANCE
    assert rebuilt(tf.zeros([2, 128, 192, 3])).shape == (2, 256)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        original(tf.zeros([2, 128, 192, 3]))  # the module itself takes only 96x96
    # Made once: a second call finds it, and the module that takes any size is used as it is.
    assert resolution_free.any_size_module(fixed_module, str(tmp_path)) == copy
    assert resolution_free.any_size_module(copy, str(tmp_path / "other")) == copy
    assert resolution_free.fixed_input_size(tf.saved_model.load(fixed_module)) == (96, 96)


def test_the_shared_module_is_rebuilt_within_the_tolerance(shared_mobilenet, tmp_path):
    difference = resolution_free.make_resolution_free(shared_mobilenet, str(tmp_path / "copy"))
    assert difference is not None and difference <= resolution_free.FEATURE_TOLERANCE
    pixels = tf.random.stateless_uniform([2, 224, 224, 3], seed=[5, 6])
    original = hub.KerasLayer(shared_mobilenet)(pixels).numpy()
    rebuilt = hub.KerasLayer(str(tmp_path / "copy"))(pixels).numpy()
    np.testing.assert_allclose(rebuilt, original, atol=resolution_free.FEATURE_TOLERANCE)


def test_a_fixed_module_of_another_architecture_is_not_converted(tmp_path):
    import tf_keras

    images = tf_keras.Input((32, 32, 3))
    model = tf_keras.Model(images, tf_keras.layers.GlobalAveragePooling2D()(
        tf_keras.layers.Conv2D(4, 3)(images)))
    resolution_free.save_hub_module(model, str(tmp_path / "other"), (32, 32))
    module = tf.saved_model.load(str(tmp_path / "other"))
    assert resolution_free.fixed_input_size(module) == (32, 32)
    with pytest.raises(resolution_free.NotConvertibleError, match="not a MobileNet V1"):
        resolution_free.mobilenet_v1_width(resolution_free._loaded_variables(module))
    assert resolution_free.any_size_module(str(tmp_path / "other"), str(tmp_path / "c")) == str(
        tmp_path / "other")
