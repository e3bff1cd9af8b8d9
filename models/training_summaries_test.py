"""Tests of the Trainer's extra TensorBoard summaries: sample images and the confusion matrix."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from models import training_summaries  # noqa: E402

CLASSES = ("daisy", "rose", "tulip")


def _image_summaries(folder) -> dict[str, list[tuple[int, np.ndarray]]]:
    """{tag: [(step, first image as uint8 array)]} of every image summary under `folder`."""
    found: dict[str, list] = {}
    for path in tf.io.gfile.glob(os.path.join(str(folder), "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "images":
                    continue
                # An image summary's tensor is [width, height, encoded image, ...].
                encoded = tf.make_ndarray(value.tensor)[2]
                found.setdefault(value.tag, []).append(
                    (event.step, tf.io.decode_png(encoded).numpy())
                )
    return found


def test_pick_samples_per_class_stops_once_every_class_is_full():
    batches_read = []

    def batches():
        for index in range(10):
            batches_read.append(index)
            yield np.full((4, 2, 2, 3), index, np.float32), np.array([0, 1, 2, 0])

    samples = training_summaries.pick_samples_per_class(batches(), 3, per_class=2)
    assert {label: len(images) for label, images in samples.items()} == {0: 2, 1: 2, 2: 2}
    assert batches_read == [0, 1]


def test_pick_samples_per_class_is_bounded_when_a_class_is_missing():
    batches = ((np.zeros((2, 2, 2, 3)), np.array([0, 0])) for _ in range(100))
    samples = training_summaries.pick_samples_per_class(batches, 2, per_class=1, max_batches=3)
    assert len(samples[0]) == 1 and samples[1] == []


def test_log_sample_images_writes_each_class_at_step_0(tmp_path):
    images = np.random.default_rng(0).random((6, 32, 32, 3)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.array([0, 1, 2, 0, 1, 2]))).batch(3)
    training_summaries.log_sample_images(str(tmp_path), dataset, CLASSES, per_class=2)
    summaries = _image_summaries(tmp_path / "train")
    assert set(summaries) == {f"samples/{name}" for name in CLASSES}
    assert all(steps[0][0] == 0 for steps in summaries.values())
    assert summaries["samples/daisy"][0][1].shape == (32, 32, 3)


def test_confusion_matrix_summary_logs_one_cheap_image_per_epoch(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 8)).astype(np.float32)
    labels = rng.integers(0, len(CLASSES), 60)
    model = tf_keras.Sequential([tf_keras.layers.Dense(len(CLASSES), activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    summary = training_summaries.ConfusionMatrixSummary(
        str(tmp_path), CLASSES, lambda trained: (labels[:20], trained(features[:20]).numpy())
    )
    model.fit(features, labels, epochs=3, verbose=0, callbacks=[summary])
    summaries = _image_summaries(tmp_path / "validation")
    steps = summaries[training_summaries.CONFUSION_MATRIX_TAG]
    assert [step for step, _ in steps] == [0, 1, 2]
    height, width, channels = steps[0][1].shape
    assert channels == 3 and height > 200 and width > 200
    # Not a blank canvas: the matrix's blue cells are drawn.
    assert (steps[0][1][..., 2].astype(int) - steps[0][1][..., 0] > 60).any()
    # Matplotlib's rendering is the whole per-epoch cost on cached features: well under 1 s.
    # Wall time, bounded loosely: a CI run beside a benchmark, the machine saturated, took
    # 1.8 s an epoch; a traced or per-batch summary would take many times that.
    assert summary.epochs_logged == 3 and summary.seconds / 3 < 3.0, summary.seconds


def test_confusion_matrix_summary_at_the_end_predicts_once_with_the_final_weights(tmp_path):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 8)).astype(np.float32)
    labels = rng.integers(0, len(CLASSES), 40)
    model = tf_keras.Sequential([tf_keras.layers.Dense(len(CLASSES), activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    kernels_seen = []

    def predict_eval(trained):
        kernels_seen.append(trained.layers[0].kernel.numpy().copy())
        return labels, trained(features).numpy()

    class ZeroTheKernelAtTheEnd(tf_keras.callbacks.Callback):  # stands in for KeepBestWeights
        def on_train_end(self, logs=None):
            self.model.layers[0].kernel.assign(tf.zeros_like(self.model.layers[0].kernel))

    summary = training_summaries.ConfusionMatrixSummary(
        str(tmp_path), CLASSES, predict_eval, every_epoch=False
    )
    model.fit(features, labels, epochs=3, verbose=0,
              callbacks=[ZeroTheKernelAtTheEnd(), summary])
    steps = _image_summaries(tmp_path / "validation")[training_summaries.CONFUSION_MATRIX_TAG]
    assert [step for step, _ in steps] == [2]
    assert len(kernels_seen) == 1 and not kernels_seen[0].any()
    assert summary.epochs_logged == 1


def test_log_sample_images_takes_photos_of_several_shapes(tmp_path):
    """Photos that kept their aspect ratio come in several shapes; they are letterboxed."""
    wide = tf.data.Dataset.from_tensors((tf.ones([1, 8, 12, 3]), tf.constant([0])))
    tall = tf.data.Dataset.from_tensors((tf.ones([1, 12, 8, 3]), tf.constant([0])))
    training_summaries.log_sample_images(str(tmp_path), wide.concatenate(tall), ["a"],
                                         per_class=2)
    assert tf.io.gfile.glob(str(tmp_path / "train" / "events.out.tfevents.*"))
    stacked = training_summaries._same_shape([np.ones([8, 12, 3]), np.ones([12, 8, 3])])
    assert stacked.shape == (2, 12, 12, 3)
