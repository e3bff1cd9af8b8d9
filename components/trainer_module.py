"""Trainer's user module: transfer learning from a TF Hub MobileNet, in two phases.

1. A new softmax head is trained on MobileNet features computed once per image (the
   "bottleneck" idea of TF for Poets), so head epochs cost milliseconds, not forward passes.
2. The whole network is fine-tuned from that head with a small learning rate; the weights with
   the best validation loss (the head alone included) are kept.

The exported SavedModel takes raw encoded image bytes (`serving_default`) or serialized raw
tf.Examples (`serving_examples`, for TFMA) and returns class names and scores. Float and int8
TFLite copies go to `tflite/` beside it (components/tflite_export.py).
"""

from __future__ import annotations

import logging
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras  # noqa: E402

from components import tflite_export, training_summaries, transform_module  # noqa: E402
from pipeline import config as config_lib  # noqa: E402
from pipeline.config import TrainingConfig  # noqa: E402

logger = logging.getLogger(__name__)
SERVING_IMAGES_SIGNATURE = "serving_default"
SERVING_EXAMPLES_SIGNATURE = "serving_examples"
LABELS_FILE = "labels.txt"


def _expand_patterns(file_patterns: list[str]) -> list[str]:
    files = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no transformed examples match {file_patterns}")
    return files


def make_dataset(
    file_patterns: list[str],
    tf_transform_output: tft.TFTransformOutput,
    image_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """(images [B, size, size, 3] float32 in [0, 1], labels [B] int64) batches, streamed."""
    feature_spec = tf_transform_output.transformed_feature_spec()

    def parse(record):
        features = tf.io.parse_single_example(record, feature_spec)
        image = transform_module.decode_transformed_image(
            features[config_lib.TRANSFORMED_IMAGE_KEY], image_size
        )
        return image, features[config_lib.TRANSFORMED_LABEL_KEY]

    dataset = tf.data.TFRecordDataset(_expand_patterns(file_patterns), compression_type="GZIP")
    if shuffle:
        # Shuffles the small serialized JPEGs, not decoded pixels, to keep memory flat.
        dataset = dataset.shuffle(2048, seed=seed, reshuffle_each_iteration=True)
    return (
        dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


class TransferModel:
    """The MobileNet backbone, a new head, and the two models that share them."""

    def __init__(self, settings: TrainingConfig):
        num_classes = len(settings.class_names)
        self.backbone = hub.KerasLayer(settings.model_handle, trainable=True, name="mobilenet")
        images = tf_keras.Input((settings.image_size, settings.image_size, 3), name="image")
        # training=False keeps batch norm in inference mode while fine-tuning: with small
        # batches, updating its statistics hurts more than it helps.
        features = self.backbone(images, training=False)
        self.dropout = tf_keras.layers.Dropout(settings.dropout, seed=settings.seed)
        self.classifier = tf_keras.layers.Dense(
            num_classes, activation="softmax", name="classifier"
        )
        self.model = tf_keras.Model(images, self.classifier(self.dropout(features)))
        self.feature_extractor = tf_keras.Model(images, features)
        bottleneck = tf_keras.Input((features.shape[-1],), name="bottleneck")
        self.head = tf_keras.Model(bottleneck, self.classifier(self.dropout(bottleneck)))


def extract_features(feature_extractor: tf_keras.Model, dataset: tf.data.Dataset):
    """One forward pass over a dataset: (features [N, D] float32, labels [N] int64)."""
    extract = tf.function(
        lambda images: feature_extractor(images, training=False), reduce_retracing=True
    )
    features, labels = [], []
    for images, batch_labels in dataset:
        features.append(extract(images).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(features), np.concatenate(labels)


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


def _callbacks(log_dir: str, patience: int, initial_loss: float = float("inf"),
               confusion_matrix: training_summaries.ConfusionMatrixSummary | None = None) -> list:
    return [
        tf_keras.callbacks.TensorBoard(
            log_dir=log_dir, update_freq="epoch", write_graph=False, profile_batch=0
        ),
        *([confusion_matrix] if confusion_matrix else []),
        tf_keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience),
        KeepBestWeights(initial_loss),
    ]


def _compile(model: tf_keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def train_head(transfer: TransferModel, settings: TrainingConfig, train_ds, eval_ds, log_dir):
    """Phase 1: the new head on features computed once; returns the number of epochs run."""
    logger.info("Trainer: computing MobileNet features once for the head phase")
    started = time.time()
    train_features, train_labels = extract_features(transfer.feature_extractor, train_ds)
    eval_features, eval_labels = extract_features(transfer.feature_extractor, eval_ds)
    logger.info(
        "Trainer: features of %d train and %d eval images in %.0f s",
        len(train_labels), len(eval_labels), time.time() - started,
    )
    _compile(transfer.head, settings.learning_rate)
    history = transfer.head.fit(
        train_features,
        train_labels,
        batch_size=settings.train_batch_size,
        epochs=settings.epochs,
        validation_data=(eval_features, eval_labels),
        callbacks=_callbacks(
            log_dir, settings.early_stopping_patience,
            # On the cached eval features: milliseconds per epoch.
            confusion_matrix=training_summaries.ConfusionMatrixSummary(
                log_dir, settings.class_names,
                lambda head: (eval_labels, head(eval_features, training=False).numpy()),
            ),
        ),
        verbose=2,
    )
    return len(history.epoch)


def fine_tune(transfer: TransferModel, settings: TrainingConfig, train_ds, eval_ds, log_dir,
              initial_epoch: int) -> None:
    """Phase 2: the whole network at a small learning rate, keeping the best weights."""
    _compile(transfer.model, settings.fine_tune_learning_rate)
    initial_loss = (
        transfer.model.evaluate(eval_ds, verbose=0, return_dict=True)["loss"]
        if initial_epoch > 0
        else float("inf")
    )
    transfer.model.fit(
        train_ds,
        epochs=initial_epoch + settings.fine_tune_epochs,
        initial_epoch=initial_epoch,
        validation_data=eval_ds,
        callbacks=_callbacks(
            log_dir, settings.early_stopping_patience, initial_loss,
            # One extra forward pass over the eval images per epoch.
            confusion_matrix=training_summaries.ConfusionMatrixSummary(
                log_dir, settings.class_names,
                lambda model: extract_features(model, eval_ds)[::-1],
            ),
        ),
        verbose=2,
    )


def _serving_signatures(model: tf_keras.Model, tf_transform_output, settings: TrainingConfig):
    """The two serving functions; both reuse Transform's graph, so serving matches training."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    class_names = tf.constant(list(settings.class_names))
    image_spec = tf_transform_output.raw_feature_spec()[config_lib.IMAGE_KEY]

    def classify(encoded_images):
        transformed = model.tft_layer({config_lib.IMAGE_KEY: tf.reshape(encoded_images, [-1, 1])})
        pixels = tf.map_fn(
            lambda jpeg: transform_module.decode_transformed_image(jpeg, settings.image_size),
            transformed[config_lib.TRANSFORMED_IMAGE_KEY],
            fn_output_signature=tf.TensorSpec(
                [settings.image_size, settings.image_size, 3], tf.float32
            ),
        )
        scores = model(pixels, training=False)
        classes = tf.tile(class_names[tf.newaxis, :], [tf.shape(scores)[0], 1])
        return {"scores": scores, "classes": classes}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(images):
        return classify(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        parsed = tf.io.parse_example(examples, {config_lib.IMAGE_KEY: image_spec})
        return classify(tf.reshape(parsed[config_lib.IMAGE_KEY], [-1]))

    return {
        SERVING_IMAGES_SIGNATURE: serve_images.get_concrete_function(),
        SERVING_EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
    }


def export_model(model, tf_transform_output, settings: TrainingConfig, export_dir: str) -> None:
    signatures = _serving_signatures(model, tf_transform_output, settings)
    model.save(export_dir, save_format="tf", signatures=signatures)
    with tf.io.gfile.GFile(os.path.join(export_dir, "assets", LABELS_FILE), "w") as labels:
        labels.write("".join(f"{name}\n" for name in settings.class_names))


def run_fn(fn_args) -> None:
    """TFX Trainer entry point."""
    settings = TrainingConfig.from_custom_config(fn_args.custom_config)
    tf_keras.utils.set_random_seed(settings.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)

    def dataset(files, shuffle):
        return make_dataset(files, tf_transform_output, settings.image_size,
                            settings.train_batch_size, shuffle=shuffle, seed=settings.seed)

    train_ds, eval_ds = dataset(fn_args.train_files, True), dataset(fn_args.eval_files, False)
    # Its own shuffled dataset, so that training's shuffle order stays as without the samples.
    training_summaries.log_sample_images(
        fn_args.model_run_dir, dataset(fn_args.train_files, True), settings.class_names
    )
    transfer = TransferModel(settings)
    head_epochs = 0
    if settings.epochs > 0:
        head_epochs = train_head(transfer, settings, train_ds, eval_ds, fn_args.model_run_dir)
    if settings.fine_tune_epochs > 0:
        fine_tune(transfer, settings, train_ds, eval_ds, fn_args.model_run_dir, head_epochs)
    export_model(transfer.model, tf_transform_output, settings, fn_args.serving_model_dir)
    # Beside the SavedModel, so the Pusher (which copies the whole folder) pushes them too.
    tflite_export.write_tflite_models(
        transfer.model, settings.image_size, settings.class_names,
        tflite_export.calibration_images(train_ds), fn_args.serving_model_dir,
    )
