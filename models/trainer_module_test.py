"""Tests of the Trainer's run_fn and its pieces, on a random-weight MobileNet."""

import dataclasses
import io
import json
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras  # noqa: E402
from PIL import Image  # noqa: E402
from tfx.components.trainer.fn_args_utils import FnArgs  # noqa: E402

from models import (  # noqa: E402
    bottleneck_cache,
    feature_pass,
    features,
    fine_tuning,
    head,
    network,
    resolution_free,
    trainer_module,
    training_config,
    transform_module,
)
from models.training_config import TrainingConfig  # noqa: E402
from tests.support import make_random_hub_mobilenet  # noqa: E402
from tests.support.transformed import make_transformed_data, raw_row  # noqa: E402

IMAGE_SIZE = 96
CLASSES = ("blue", "red")


def _photo(label: int, seed: int, size: tuple[int, int] = (40, 40)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (*size, 3)).astype(np.uint8)
    pixels[..., 2 if label == 0 else 0] += 190
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


PLANTED = 2
# Two shapes, so photos with their aspect ratio kept do not all batch together.
_SHAPES = ((40, 40), (30, 50))


@pytest.fixture(scope="module", params=["squash", "short-side"])
def transformed(tmp_path_factory, request):
    """A real Transform graph and transformed train/eval files for 24 photos of 2 classes."""
    root = tmp_path_factory.mktemp("transform")
    # Photo 2, a train photo in the blue folder, is red: a label error for the Trainer to find.
    raw = [raw_row(_photo(1 if i == PLANTED else i % 2, i, _SHAPES[(i // 2) % 2]), i % 2,
                   f"{CLASSES[i % 2]}/{i}.jpg") for i in range(24)]
    data = make_transformed_data(root, raw, IMAGE_SIZE, num_train=16, resize=request.param)
    return data, request.param


@pytest.fixture(scope="module")
def hub_module(tmp_path_factory):
    return str(make_random_hub_mobilenet(tmp_path_factory.mktemp("hub") / "m", 0.25, IMAGE_SIZE))


def _settings(hub_module, resize, **changes):
    return TrainingConfig(model_handle=hub_module, image_size=IMAGE_SIZE, class_names=CLASSES,
                          resize=resize, **changes)


def _any_size(hub_module, tmp_path):
    return resolution_free.any_size_module(hub_module, str(tmp_path / "backbones"))


def test_image_dataset_batches_photos_of_one_shape(transformed):
    data, resize = transformed
    output = tft.TFTransformOutput(str(data / "transform_graph"))
    settings = _settings("m", resize)
    batches = list(feature_pass.image_dataset([str(data / "train.gz")], output, settings, 5))
    assert sum(len(labels) for _, labels in batches) == 16
    shapes = {tuple(images.shape[1:3]) for images, _ in batches}
    if resize == "squash":
        assert shapes == {(IMAGE_SIZE, IMAGE_SIZE)}
        assert [len(labels) for _, labels in batches] == [5, 5, 5, 1]
    else:  # 30x50 photos: short side 96, long side 160 (a multiple of 32)
        assert shapes == {(IMAGE_SIZE, IMAGE_SIZE), (IMAGE_SIZE, 160)}
    images, _ = batches[0]
    assert images.dtype == tf.float32
    assert set(np.concatenate([b[1].numpy() for b in batches])) == {0, 1}


def test_image_dataset_fails_clearly_without_files(transformed):
    data, resize = transformed
    output = tft.TFTransformOutput(str(data / "transform_graph"))
    with pytest.raises(ValueError, match="no transformed examples"):
        feature_pass.image_dataset([str(data / "missing*")], output, _settings("m", resize), 5)


def test_cached_features_are_computed_once_per_photo_and_view(transformed, hub_module,
                                                              tmp_path):
    data, resize = transformed
    settings = _settings(hub_module, resize)
    handle = _any_size(hub_module, tmp_path)
    extractor = network.TransferModel(settings, handle).feature_extractor
    output = tft.TFTransformOutput(str(data / "transform_graph"))
    photos = feature_pass.SplitReader([str(data / "train.gz")], output)
    jpegs = list(photos)
    labels = photos.labels
    module = bottleneck_cache.module_key(handle)

    cache = bottleneck_cache.BottleneckCache(str(tmp_path), module)
    by_view, computed = feature_pass.cached_features(extractor, jpegs, settings, cache,
                                                     ("plain", "mirror", "squash64"))
    assert [f.shape for f in by_view] == [(16, 256)] * 3 and computed == 16
    assert len(labels) == 16
    cache.flush()
    # The same features as one plain pass, photo by photo, and the mirror's differ; to
    # float16's precision (5e-4 relative), in which the cache keeps them.
    for index in (0, 3):
        image = transform_module.decode_transformed_image(jpegs[index], IMAGE_SIZE, resize)
        plain = extractor(image[tf.newaxis]).numpy()[0]
        mirror = extractor(tf.reverse(image, [1])[tf.newaxis]).numpy()[0]
        small = extractor(tf.image.resize(image, [64, 64])[tf.newaxis])
        np.testing.assert_allclose(by_view[0][index], plain, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(by_view[1][index], mirror, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(by_view[2][index], small.numpy()[0], rtol=2e-3, atol=2e-4)
    assert not np.allclose(by_view[0], by_view[1])

    reopened = bottleneck_cache.BottleneckCache(str(tmp_path), module)
    again, computed = feature_pass.cached_features(extractor, jpegs, settings, reopened,
                                                   ("plain", "mirror", "squash64"))
    assert computed == 0
    np.testing.assert_array_equal(again[1], by_view[1])


def test_block_of_reads_mobilenet_variable_names():
    assert network.block_of("conv_dw_12/depthwise_kernel:0") == 12
    assert network.block_of("mobilenet/conv_pw_3_bn/gamma:0") == 3
    assert network.block_of("conv1/kernel:0") == 0


@pytest.mark.parametrize("first_block", [0, 12])
def test_top_blocks_layer_trains_only_the_top_blocks(hub_module, first_block):
    layer = network.TopBlocksKerasLayer(hub_module, first_block, trainable=True)
    trainable = [network.block_of(w.name) for w in layer.trainable_weights]
    frozen = [network.block_of(w.name) for w in layer.non_trainable_weights]
    assert trainable and min(trainable) >= first_block
    assert len(layer.trainable_weights) + len(layer.non_trainable_weights) == len(layer.weights)
    if first_block:
        assert set(trainable) == {12, 13}
        assert {0, 1, 11} <= set(frozen)  # conv1 and the blocks below stay frozen
    else:
        assert set(trainable) == set(range(14))


def test_autograph_leaves_tf_keras_alone_but_converts_our_code():
    from tensorflow.python.autograph.core import config as autograph_config
    from tensorflow.python.autograph.impl import conversion

    network.keep_autograph_out_of_tf_keras()  # a second call adds no second rule
    assert sum(rule.matches("tf_keras") for rule in autograph_config.CONVERSION_RULES) == 1
    assert conversion.is_allowlisted(tf_keras.layers.Dense(2).call)
    assert not conversion.is_allowlisted(fine_tuning.smoothed_crossentropy(2, 0.1))


def test_class_weights_only_when_classes_are_imbalanced():
    balanced_enough = np.array([0] * 14 + [1] * 10)
    assert head.class_weights(balanced_enough, 2, "auto") is None
    assert head.class_weights(balanced_enough, 2, "none") is None
    skewed = np.array([0] * 30 + [1] * 10)
    weights = head.class_weights(skewed, 3, "auto")
    assert weights[1] == pytest.approx(3 * weights[0]) and weights[2] == 1.0
    # Mean weight over photos is 1: the loss keeps its scale.
    assert (30 * weights[0] + 10 * weights[1]) / 40 == pytest.approx(1.0)
    assert head.class_weights(balanced_enough, 2, "balanced")[1] > 1


def test_the_folds_group_train_photos_by_subject():
    names = ["roses/a_nohash_0.jpg", "roses/a_nohash_1.jpg", "tulips/b.jpg", ""]
    assert head.subjects(names) == ["a", "a", "b.jpg", "#3"]
    assert head.subjects(None) is None and head.subjects([]) is None


def test_learning_rate_cosine_decays_to_zero_over_the_phase():
    cosine = fine_tuning.learning_rate(
        TrainingConfig(model_handle="m", lr_schedule="cosine"), 0.01, epochs=4, steps_per_epoch=10)
    assert float(cosine(0)) == pytest.approx(0.01)
    assert float(cosine(20)) == pytest.approx(0.005, rel=1e-3)
    assert float(cosine(40)) == pytest.approx(0.0, abs=1e-9)
    constant = TrainingConfig(model_handle="m", lr_schedule="constant")
    assert fine_tuning.learning_rate(constant, 0.01, 4, 10) == 0.01


def test_smoothed_crossentropy_matches_one_hot_smoothing():
    loss = fine_tuning.smoothed_crossentropy(2, 0.2)
    scores = tf.constant([[0.9, 0.1]])
    expected = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))  # targets 0.9 / 0.1 after smoothing
    assert float(loss(tf.constant([0]), scores)) == pytest.approx(expected, rel=1e-4)


def test_keep_best_weights_restores_the_best_epoch():
    model = tf_keras.Sequential([tf_keras.Input((1,)), tf_keras.layers.Dense(1)])
    callback = fine_tuning.KeepBestWeights()
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, loss in enumerate([3.0, 1.0, 2.0]):
        model.layers[0].kernel.assign([[float(epoch)]])
        callback.on_epoch_end(epoch, {"val_loss": loss})
    callback.on_train_end()
    assert model.layers[0].kernel.numpy()[0, 0] == 1.0


def test_keep_best_weights_keeps_starting_weights_when_nothing_improves():
    model = tf_keras.Sequential([tf_keras.Input((1,)), tf_keras.layers.Dense(1)])
    model.layers[0].kernel.assign([[7.0]])
    callback = fine_tuning.KeepBestWeights(initial_loss=0.5)
    callback.set_model(model)
    callback.on_train_begin()
    model.layers[0].kernel.assign([[8.0]])
    callback.on_epoch_end(0, {"val_loss": 0.9})
    callback.on_train_end()
    assert model.layers[0].kernel.numpy()[0, 0] == 7.0


def test_transfer_model_shares_head_between_models(hub_module, tmp_path):
    settings = _settings(hub_module, "short-side")
    transfer = network.TransferModel(settings, _any_size(hub_module, tmp_path))
    assert transfer.model.output_shape == (None, 2)
    assert transfer.head.input_shape == (None, 256)  # 1024 * alpha 0.25
    transfer.classifier.kernel.assign(tf.ones_like(transfer.classifier.kernel))
    assert transfer.head.layers[-1] is transfer.model.layers[-1]
    # Any size: the backbone was rebuilt from the fixed 96x96 module.
    assert transfer.model(tf.zeros([2, 96, 160, 3])).shape == (2, 2)


def _fn_args(data, tmp_path, name, settings, base_model=None):
    return FnArgs(
        train_files=[str(data / "train.gz")],
        eval_files=[str(data / "eval.gz")],
        transform_output=str(data / "transform_graph"),
        serving_model_dir=str(tmp_path / name / "model"),
        model_run_dir=str(tmp_path / name / "logs"),
        base_model=base_model,
        custom_config=settings.to_custom_config(),
    )


def test_run_fn_fits_the_head_and_exports_both_signatures(transformed, hub_module, tmp_path):
    data, resize = transformed
    settings = _settings(hub_module, resize, bottleneck_dir=str(tmp_path / "bottlenecks"),
                         backbone_dir=str(tmp_path / "backbones"), views=("plain", "squash64"))
    fn_args = _fn_args(data, tmp_path, "trainer", settings)
    trainer_module.run_fn(fn_args)
    # The features of the 16 train and 8 eval photos, both views, are cached for the next run.
    shards = tf.io.gfile.glob(str(tmp_path / "bottlenecks" / "*" / "features-*.npz"))
    assert len(shards) == 1 and len(np.load(shards[0])["keys"]) == 48
    # The any-size copy of the fixed-size module is made once, in the cache.
    assert len(tf.io.gfile.glob(str(tmp_path / "backbones" / "*-any-size"))) == 1

    head = json.loads((tmp_path / "trainer" / "logs" / features.HEAD_REPORT_FILE)
                      .read_text())
    assert head["c"] in training_config.HEAD_C_GRID and head["cv_folds"] >= 2
    assert head["cv_accuracy"] > 0.9 and head["eval_accuracy"] == 1.0  # easy colours
    # Beside the model: the photos whose label the out-of-sample probabilities doubt.
    issues = json.loads((tmp_path / "trainer" / features.LABEL_ISSUES_FILE).read_text())
    assert issues["checked"] == {"eval": 8, "train": 16}
    assert issues["suspects"][0]["file"] == f"blue/{PLANTED}.jpg"
    assert issues["suspects"][0]["suggested"] == "red"
    assert issues["excluded_from_training"] == head["excluded_suspects"] == 0
    assert tf.io.gfile.glob(str(tmp_path / "trainer" / "logs" / "validation" / "events.*"))
    labels = (tmp_path / "trainer" / "model" / "assets" / features.LABELS_FILE).read_text()
    assert labels.split() == list(CLASSES)

    loaded = tf.saved_model.load(fn_args.serving_model_dir)
    serve_images = loaded.signatures[features.SERVING_IMAGES_SIGNATURE]
    assert list(serve_images.structured_input_signature[1]) == ["images"]
    photos = tf.constant([_photo(0, 100), _photo(1, 101, (30, 50)), _photo(1, 102)])
    outputs = serve_images(images=photos)
    scores = outputs["scores"].numpy()
    assert scores.shape == (3, 2)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-4)
    assert outputs["classes"].numpy().tolist() == [[b"blue", b"red"]] * 3
    # The colours are easy: even a random MobileNet's features separate them.
    assert scores.argmax(axis=1).tolist() == [0, 1, 1]

    example = tf.train.Example()
    example.features.feature[features.IMAGE_KEY].bytes_list.value.append(_photo(1, 103))
    example.features.feature[features.LABEL_KEY].int64_list.value.append(1)
    serve_examples = loaded.signatures[features.SERVING_EXAMPLES_SIGNATURE]
    from_examples = serve_examples(examples=tf.constant([example.SerializeToString()]))
    assert from_examples["scores"].numpy().argmax() == 1

    # Other head settings: every feature comes from the cache, no new shard.
    rerun = dataclasses.replace(settings, head_c=0.5, exclude_suspected_label_errors=True)
    trainer_module.run_fn(_fn_args(data, tmp_path, "rerun", rerun))
    assert len(tf.io.gfile.glob(str(tmp_path / "bottlenecks" / "*" / "features-*.npz"))) == 1
    rerun_head = json.loads((tmp_path / "rerun" / "logs" / features.HEAD_REPORT_FILE)
                            .read_text())
    assert rerun_head["c"] == 0.5 and list(rerun_head["cv_by_c"]) == ["0.5"]
    rerun_issues = json.loads((tmp_path / "rerun" / features.LABEL_ISSUES_FILE).read_text())
    train_suspects = [s for s in rerun_issues["suspects"] if s["split"] == "train"]
    assert rerun_head["excluded_suspects"] == len(train_suspects) >= 1


def test_fine_tuner_hands_the_trainer_a_fine_tuned_module(transformed, hub_module, tmp_path):
    import tensorflow_hub as hub

    data, resize = transformed
    settings = _settings(
        hub_module, resize, fine_tune_epochs=2, fine_tune_learning_rate=1e-3,
        # A strongly regularised head, so that fine-tuning improves the validation loss and
        # its weights (not the head-only ones) are kept.
        head_c=1e-3, train_batch_size=8, bottleneck_dir=str(tmp_path / "bottlenecks"),
        backbone_dir=str(tmp_path / "backbones"),
    )
    fine_tuner_args = _fn_args(data, tmp_path, "fine_tuner", settings)
    trainer_module.fine_tune_fn(fine_tuner_args)
    fine_tuned = fine_tuner_args.serving_model_dir
    original = {w.name: w.numpy() for w in hub.KerasLayer(hub_module).weights}
    tuned = {w.name: w.numpy() for w in hub.KerasLayer(fine_tuned).weights}
    assert tuned.keys() == original.keys()
    changed = {network.block_of(name) for name in tuned
               if not np.array_equal(tuned[name], original[name])}
    assert changed == {12, 13}  # only the top blocks were fine-tuned
    assert bottleneck_cache.module_key(fine_tuned) != bottleneck_cache.module_key(hub_module)
    # The fine-tuned module takes any size, as the any-size copy it was made from.
    assert hub.KerasLayer(fine_tuned)(tf.zeros([2, 96, 160, 3])).shape == (2, 256)

    shards = str(tmp_path / "bottlenecks" / "*" / "features-*.npz")
    trainer_args = _fn_args(data, tmp_path, "trainer", dataclasses.replace(settings, head_c=0),
                            base_model=fine_tuned)
    trainer_module.run_fn(trainer_args)
    assert len(tf.io.gfile.glob(shards)) == 2  # the original module's, the fine-tuned one's
    loaded = tf.saved_model.load(trainer_args.serving_model_dir)
    scores = loaded.signatures[features.SERVING_IMAGES_SIGNATURE](
        images=tf.constant([_photo(0, 200), _photo(1, 201)]))["scores"].numpy()
    assert scores.argmax(axis=1).tolist() == [0, 1]
