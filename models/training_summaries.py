"""Extra TensorBoard summaries of the Trainer: what it learned from, and how it confuses classes.

- `log_sample_images`: a few training images of each class, once, before training (Images tab,
  run `train`): shows what the model sees after Transform (resolution, crops, colours).
- `log_head`: the head's cross-validated accuracy for each regularisation C tried (Scalars,
  run `validation`, step = the C's place in the grid), and the eval split's confusion matrix.
- `ConfusionMatrixSummary`: a Keras callback (fine-tuning) that renders the eval split's
  confusion matrix as an image (Images tab, run `validation`).

Both write beside the Keras TensorBoard callback's `train/` and `validation/` event files, so
TensorBoard shows them in the same runs as the loss and accuracy curves.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from models import confusion

logger = logging.getLogger(__name__)
TRAIN_RUN, VALIDATION_RUN = "train", "validation"
SAMPLES_PER_CLASS = 4
# Enough batches of a shuffled train set to meet every class; a bound, not a pass over the data.
MAX_SAMPLE_BATCHES = 20
CONFUSION_MATRIX_TAG = "eval_confusion_matrix"


def pick_samples_per_class(
    batches, num_classes: int, per_class: int = SAMPLES_PER_CLASS,
    max_batches: int = MAX_SAMPLE_BATCHES,
) -> dict[int, list[np.ndarray]]:
    """Up to `per_class` images of each label from (images, labels) batches; stops reading as
    soon as every class has enough, or after `max_batches`."""
    samples: dict[int, list[np.ndarray]] = {label: [] for label in range(num_classes)}
    for batch_index, (images, labels) in enumerate(batches):
        for image, label in zip(np.asarray(images), np.asarray(labels).reshape(-1), strict=True):
            if 0 <= label < num_classes and len(samples[int(label)]) < per_class:
                samples[int(label)].append(image)
        if all(len(found) >= per_class for found in samples.values()):
            break
        if batch_index + 1 >= max_batches:
            break
    return samples


def _same_shape(images: list[np.ndarray]) -> np.ndarray:
    """Photos that kept their aspect ratio, letterboxed to the largest height and width, so
    they stack into one summary."""
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    return np.stack([tf.image.resize_with_pad(image, height, width).numpy() for image in images])


def log_sample_images(
    log_dir: str, dataset: tf.data.Dataset, class_names: Sequence[str],
    per_class: int = SAMPLES_PER_CLASS,
) -> float:
    """Writes `samples/<class>` images (float [0, 1] RGB) at step 0; returns the seconds taken."""
    started = time.perf_counter()
    samples = pick_samples_per_class(dataset.as_numpy_iterator(), len(class_names), per_class)
    writer = tf.summary.create_file_writer(os.path.join(log_dir, TRAIN_RUN))
    with writer.as_default():
        for label, images in samples.items():
            if images:
                tf.summary.image(f"samples/{class_names[label]}", _same_shape(images), step=0,
                                 max_outputs=per_class,
                                 description=f"training images of class {class_names[label]}")
    writer.close()
    seconds = time.perf_counter() - started
    logger.info("Trainer: sample images per class for TensorBoard in %.1f s", seconds)
    return seconds


def confusion_matrix_image(
    matrix: np.ndarray, class_names: Sequence[str], title: str
) -> np.ndarray:
    """The confusion matrix drawn as a uint8 [1, height, width, 3] batch for tf.summary.image."""
    figure = confusion.confusion_matrix_figure(matrix, class_names, title)
    return confusion.rgb_pixels(figure)[np.newaxis]


def log_head(log_dir: str, class_names: Sequence[str], report: dict, eval_labels: np.ndarray,
             eval_scores: np.ndarray) -> None:
    """The fitted head's cross-validation and eval confusion matrix, in run `validation`."""
    writer = tf.summary.create_file_writer(os.path.join(log_dir, VALIDATION_RUN))
    matrix = confusion.confusion_matrix(eval_labels, np.argmax(eval_scores, axis=-1),
                                          len(class_names))
    title = f"eval split, head C={report['c']:g}: accuracy {confusion.accuracy(matrix):.1%}"
    with writer.as_default():
        for step, (c, accuracy) in enumerate(report["cv_by_c"].items()):
            tf.summary.scalar("head/cross_validated_accuracy", accuracy, step=step,
                              description=f"C={c}, {report['cv_folds']}-fold over train photos")
        tf.summary.image(CONFUSION_MATRIX_TAG, confusion_matrix_image(matrix, class_names, title),
                         step=0, description="rows: true class, columns: predicted class")
    writer.close()


class ConfusionMatrixSummary(tf_keras.callbacks.Callback):
    """Predicts the eval split and logs its confusion matrix as an image.

    `predict_eval(model)` returns (labels [N], class scores [N, C]) of the eval split; the head
    phase passes one over cached features (milliseconds) and logs after every epoch.
    Fine-tuning, where each pass runs the network over the eval images (6 s an epoch here),
    passes `every_epoch=False`: one matrix at the end of training, of the weights training
    ends with (put this callback after the one restoring the best weights). The time spent
    is logged at the end, so the cost stays visible.
    """

    def __init__(
        self, log_dir: str, class_names: Sequence[str],
        predict_eval: Callable[[tf_keras.Model], tuple[np.ndarray, np.ndarray]],
        every_epoch: bool = True,
    ):
        super().__init__()
        self._every_epoch = every_epoch
        self._last_epoch = None
        self._log_dir = os.path.join(log_dir, VALIDATION_RUN)
        self._class_names = list(class_names)
        self._predict_eval = predict_eval
        self._writer = None
        self.seconds = 0.0
        self.epochs_logged = 0

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self._log_dir)

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        if self._every_epoch:
            self._log(epoch, f"epoch {epoch + 1}")

    def _log(self, epoch: int, when: str) -> None:
        started = time.perf_counter()
        labels, scores = self._predict_eval(self.model)
        predictions = np.argmax(scores, axis=-1)
        matrix = confusion.confusion_matrix(labels, predictions, len(self._class_names))
        accuracy = confusion.accuracy(matrix)
        title = f"eval split, {when}: accuracy {accuracy:.1%}"
        with self._writer.as_default():
            tf.summary.image(CONFUSION_MATRIX_TAG,
                             confusion_matrix_image(matrix, self._class_names, title), step=epoch,
                             description="rows: true class, columns: predicted class")
        self._writer.flush()
        self.seconds += time.perf_counter() - started
        self.epochs_logged += 1

    def on_train_end(self, logs=None):
        if not self._every_epoch and self._last_epoch is not None:
            self._log(self._last_epoch, "end of training")
        if self._writer is not None:
            self._writer.close()
        logger.info(
            "Trainer: eval confusion matrix for TensorBoard: %d %s, %.2f s each",
            self.epochs_logged, "epochs" if self._every_epoch else "time, at the end",
            self.seconds / max(self.epochs_logged, 1),
        )
