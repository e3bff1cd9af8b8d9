"""Fine-tuning the top MobileNet blocks from the fitted head: the loss, the learning rate, and
keeping the weights with the best validation loss (the FineTuner's phase)."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from models import training_summaries  # noqa: E402
from models.network import TransferModel  # noqa: E402
from models.training_config import TrainingConfig  # noqa: E402

logger = logging.getLogger(__name__)


def learning_rate(settings: TrainingConfig, initial: float, epochs: int, steps_per_epoch: int):
    """The fine-tuning learning rate: constant, or a cosine decay to 0 over its epochs."""
    if settings.lr_schedule == "constant" or epochs <= 0:
        return initial
    return tf_keras.optimizers.schedules.CosineDecay(initial, max(1, epochs * steps_per_epoch))


class KeepBestWeights(tf_keras.callbacks.Callback):
    """Restores, at the end of training, the weights with the lowest validation loss.

    Unlike EarlyStopping(restore_best_weights=True) it also restores when training was not
    stopped early, and it counts the starting weights (`initial_loss`) as a candidate.
    """

    def __init__(self, initial_loss: float = float("inf")):
        super().__init__()
        self.best_loss = initial_loss
        self.best_weights = None
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        if np.isfinite(self.best_loss):
            self.best_weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        if loss is not None and loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, epoch
            self.best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def smoothed_crossentropy(num_classes: int, label_smoothing: float):
    """Cross-entropy on integer labels with label smoothing (the sparse loss has none)."""
    loss = tf_keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)

    def sparse_smoothed_crossentropy(labels, scores):
        one_hot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), num_classes)
        return loss(one_hot, scores)

    return sparse_smoothed_crossentropy


def compile_for_fine_tuning(model: tf_keras.Model, settings: TrainingConfig, rate) -> None:
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=rate),
        loss=smoothed_crossentropy(len(settings.class_names), settings.label_smoothing),
        metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def _steps(count: int, batch_size: int) -> int:
    return max(1, -(-count // batch_size))


def fine_tune(transfer: TransferModel, settings: TrainingConfig, train_ds, eval_ds, log_dir,
              num_train: int, weights: dict | None, initial_loss: float) -> None:
    """The top blocks at a small learning rate, from the fitted head, keeping the best weights.

    `initial_loss`, the starting weights' eval loss, makes them a candidate too.
    """
    steps = _steps(num_train, settings.train_batch_size)
    compile_for_fine_tuning(transfer.model, settings, learning_rate(
        settings, settings.fine_tune_learning_rate, settings.fine_tune_epochs, steps))
    logger.info(
        "FineTuner: fine-tuning %d variables (blocks >= %d) for up to %d epochs",
        # The layer's own first block: 0 after the fallback for a module without blocks.
        len(transfer.backbone.trainable_weights), transfer.backbone.first_block,
        settings.fine_tune_epochs,
    )
    transfer.model.fit(
        train_ds,
        epochs=settings.fine_tune_epochs,
        validation_data=eval_ds,
        class_weight=weights,
        callbacks=[
            tf_keras.callbacks.TensorBoard(
                log_dir=log_dir, update_freq="epoch", write_graph=False, profile_batch=0
            ),
            tf_keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=settings.early_stopping_patience
            ),
            KeepBestWeights(initial_loss),
            # Last, so that the matrix drawn at the end shows the restored best weights.
            training_summaries.ConfusionMatrixSummary(
                log_dir, settings.class_names, lambda model: _predict(model, eval_ds),
                every_epoch=False,
            ),
        ],
        verbose=2,
    )


def _predict(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(labels [N], scores [N, C]) of a dataset of (images, labels) batches."""
    labels, scores = [], []
    for images, batch_labels in dataset:
        scores.append(model(images, training=False).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(labels), np.concatenate(scores)
