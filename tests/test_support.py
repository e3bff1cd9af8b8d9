"""Tests for the offline test fixtures in tests/support (photo folders, random Hub module)."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# The imports below must come after TF_USE_LEGACY_KERAS is set, hence E402.
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402
import tf_keras  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

from tests.support import (  # noqa: E402
    make_corrupt_file,
    make_image_folder,
    make_random_hub_mobilenet,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_MODULE_DIR = REPO_ROOT.parent / "shared" / "assets" / "mobilenet_v1_100_224_feature_vector"

RESOLUTION = 128
ALPHA = 0.25
FEATURE_DIM = int(1024 * ALPHA)
CLASS_COUNTS = {"daisy": 3, "roses": 2, "tulips": 4}


@pytest.fixture(scope="module")
def random_module_dir(tmp_path_factory):
    return make_random_hub_mobilenet(
        tmp_path_factory.mktemp("hub") / "mobilenet", alpha=ALPHA, resolution=RESOLUTION
    )


def load_folder_batch(root, class_names, resolution):
    """Decodes every image under root/<class>/ into a [n, res, res, 3] batch in [0, 1]."""
    images, labels = [], []
    for label, class_name in enumerate(class_names):
        for path in sorted((root / class_name).iterdir()):
            with Image.open(path) as image:
                resized = image.convert("RGB").resize((resolution, resolution))
            images.append(np.asarray(resized, dtype=np.float32) / 255.0)
            labels.append(label)
    return np.stack(images), np.array(labels)


@pytest.mark.parametrize(
    ("image_format", "extension"),
    [("JPEG", ".jpg"), ("PNG", ".png"), ("GIF", ".gif"), ("BMP", ".bmp")],
)
def test_image_folder_has_counts_format_and_size(tmp_path, image_format, extension):
    root = make_image_folder(tmp_path / "photos", CLASS_COUNTS, size=(40, 30),
                             image_format=image_format)

    assert root == tmp_path / "photos"
    assert sorted(p.name for p in root.iterdir()) == sorted(CLASS_COUNTS)
    for class_name, count in CLASS_COUNTS.items():
        files = sorted((root / class_name).iterdir())
        assert [f.name for f in files] == sorted(
            f"{class_name}_{i}{extension}" for i in range(count)
        )
        for path in files:
            with Image.open(path) as image:
                image.load()
                assert image.format == image_format
                assert image.size == (40, 30)


def test_image_folder_is_deterministic_varied_and_separable(tmp_path):
    first = make_image_folder(tmp_path / "a", CLASS_COUNTS, seed=3)
    again = make_image_folder(tmp_path / "b", CLASS_COUNTS, seed=3)
    other_seed = make_image_folder(tmp_path / "c", CLASS_COUNTS, seed=4)

    relative_paths = sorted(p.relative_to(first) for p in first.rglob("*.jpg"))
    assert len(relative_paths) == sum(CLASS_COUNTS.values())
    for relative in relative_paths:
        assert (first / relative).read_bytes() == (again / relative).read_bytes()
    assert any(
        (first / r).read_bytes() != (other_seed / r).read_bytes() for r in relative_paths
    )

    class_names = sorted(CLASS_COUNTS)
    images, labels = load_folder_batch(first, class_names, resolution=32)
    # No two images alike, yet each class's mean colour is far from every other class's.
    flat = images.reshape(len(images), -1)
    assert len({row.tobytes() for row in flat}) == len(images)
    mean_colours = np.stack([images[labels == k].mean(axis=(0, 1, 2)) for k in range(3)])
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(mean_colours[i] - mean_colours[j]).max() > 0.1


def test_corrupt_file_is_named_like_an_image_but_does_not_decode(tmp_path):
    path = make_corrupt_file(tmp_path / "roses" / "broken.jpg")

    assert path == tmp_path / "roses" / "broken.jpg"
    assert path.stat().st_size > 0
    with pytest.raises(UnidentifiedImageError):
        Image.open(path)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_image(path.read_bytes())


def test_random_module_has_hub_feature_vector_interface(random_module_dir):
    loaded = tf.saved_model.load(str(random_module_dir))

    assert len(loaded.trainable_variables) > 0
    assert len(loaded.variables) > len(loaded.trainable_variables)  # + batch-norm statistics
    assert list(loaded.regularization_losses) == []
    serving = loaded.signatures["serving_default"]
    (input_spec,) = serving.structured_input_signature[1].values()
    assert input_spec.shape.as_list() == [None, RESOLUTION, RESOLUTION, 3]
    (output_spec,) = serving.structured_outputs.values()
    assert output_spec.shape.as_list() == [None, FEATURE_DIM]


def test_random_module_is_deterministic_for_a_seed(random_module_dir, tmp_path):
    again = make_random_hub_mobilenet(tmp_path / "again", alpha=ALPHA, resolution=RESOLUTION)

    reader = tf.train.load_checkpoint(str(random_module_dir / "variables" / "variables"))
    reader_again = tf.train.load_checkpoint(str(again / "variables" / "variables"))
    names = [n for n in reader.get_variable_to_shape_map() if "VARIABLE_VALUE" in n]
    assert names
    for name in names:
        np.testing.assert_array_equal(reader.get_tensor(name), reader_again.get_tensor(name))


def test_random_module_in_keras_layer_gives_features_and_honours_training(random_module_dir):
    layer = hub.KerasLayer(str(random_module_dir), trainable=True)
    images = tf.random.stateless_uniform([5, RESOLUTION, RESOLUTION, 3], seed=(1, 2))

    inference = layer(images, training=False)
    training = layer(images, training=True)

    assert inference.shape == (5, FEATURE_DIM)
    assert inference.dtype == tf.float32
    assert len(layer.trainable_weights) > 0
    # Calibrated batch-norm statistics keep inference features informative, not ~0.
    assert float(tf.math.reduce_std(inference, axis=0).numpy().mean()) > 1e-3
    # training=True switches batch norm to batch statistics.
    assert not np.allclose(inference.numpy(), training.numpy())


def test_classifier_on_random_module_fine_tunes_saves_and_reloads(random_module_dir, tmp_path):
    class_names = sorted(CLASS_COUNTS)
    folder = make_image_folder(tmp_path / "photos", CLASS_COUNTS)
    images, labels = load_folder_batch(folder, class_names, RESOLUTION)

    hub_layer = hub.KerasLayer(str(random_module_dir), trainable=True)
    inputs = tf_keras.Input(shape=(RESOLUTION, RESOLUTION, 3))
    outputs = tf_keras.layers.Dense(len(class_names), activation="softmax")(hub_layer(inputs))
    model = tf_keras.Model(inputs, outputs)
    # run_eagerly: the same train_step, minus ~20 s (on 2 cores) of autograph converting
    # Keras's own training internals into a graph.
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1),
                  loss="sparse_categorical_crossentropy", run_eagerly=True)

    hub_weight_ids = {id(w) for w in hub_layer.trainable_weights}
    with tf.GradientTape() as tape:
        loss = tf_keras.losses.sparse_categorical_crossentropy(
            labels, model(images, training=True)
        )
    gradients = tape.gradient(loss, model.trainable_weights)
    hub_gradients = [
        g for w, g in zip(model.trainable_weights, gradients, strict=True)
        if id(w) in hub_weight_ids
    ]
    assert len(hub_gradients) == len(hub_layer.trainable_weights)
    assert all(g is not None for g in hub_gradients)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in hub_gradients)

    before = [w.numpy().copy() for w in hub_layer.trainable_weights]
    model.train_on_batch(images, labels)
    after = [w.numpy() for w in hub_layer.trainable_weights]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))

    # Direct calls rather than predict(): no predict_function to trace, same inference path.
    expected = model(images, training=False).numpy()
    saved_path = tmp_path / "classifier"
    model.save(str(saved_path))

    reloaded = tf_keras.models.load_model(
        str(saved_path), custom_objects={"KerasLayer": hub.KerasLayer}
    )
    np.testing.assert_allclose(reloaded(images, training=False).numpy(), expected, atol=1e-5)

    serving = tf.saved_model.load(str(saved_path)).signatures["serving_default"]
    (served,) = serving(tf.constant(images)).values()
    np.testing.assert_allclose(served.numpy(), expected, atol=1e-5)


def test_real_shared_module_gives_1024_features():
    if not REAL_MODULE_DIR.is_dir():
        pytest.fail(
            "Real TF Hub module not found: looked for the directory "
            f"{REAL_MODULE_DIR} (../shared/assets/mobilenet_v1_100_224_feature_vector "
            f"relative to the repo root {REPO_ROOT})."
        )
    layer = hub.KerasLayer(str(REAL_MODULE_DIR))
    images = tf.random.stateless_uniform([2, 224, 224, 3], seed=(3, 4))

    features = layer(images)

    assert features.shape == (2, 1024)
    assert features.dtype == tf.float32
