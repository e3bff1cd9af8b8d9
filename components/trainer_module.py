"""Trainer's user module: transfer learning from a TF Hub MobileNet, in two phases.

1. A new softmax head is trained on MobileNet features computed once per (photo, module) and
   cached across runs (the "bottleneck" idea of TF for Poets, components/bottleneck_cache.py),
   so head epochs cost milliseconds, and a rerun with other head settings skips the forward
   passes.
2. The top MobileNet blocks (all of them with `fine_tune_from_block=0`) are fine-tuned from
   that head on images distorted as retrain.py did (components/augmentation.py), with a small
   learning rate; the weights with the best validation loss (the head alone included) are kept.
Both phases use label smoothing, class weights when classes are imbalanced, and a cosine
learning-rate schedule unless told otherwise (pipeline/config.py TrainingConfig).

The exported SavedModel takes raw encoded image bytes (`serving_default`) or serialized raw
tf.Examples (`serving_examples`, for TFMA) and returns class names and scores. Float and int8
TFLite copies go to `tflite/` beside it (components/tflite_export.py).
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import gc
import logging
import os
import re
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras  # noqa: E402

from components import (  # noqa: E402
    augmentation,
    bottleneck_cache,
    tflite_export,
    training_summaries,
    transform_module,
)
from pipeline import config as config_lib  # noqa: E402
from pipeline.config import TrainingConfig  # noqa: E402

logger = logging.getLogger(__name__)
SERVING_IMAGES_SIGNATURE = "serving_default"
SERVING_EXAMPLES_SIGNATURE = "serving_examples"
LABELS_FILE = "labels.txt"


def keep_autograph_out_of_tf_keras() -> None:
    """Tells AutoGraph not to convert tf_keras's own code, as it never converted `keras`'s.

    TF 2.16's rules skip the `keras` package but not `tf_keras`, so tracing each Keras
    train or test function converted Keras's internals statement by statement: 14.4 s for the
    first epoch of a head on cached features against 0.9 s with this rule (BENCHMARKS.md).
    Keras still converts the `call` of user layers and losses itself (`tf_convert`).
    """
    from tensorflow.python.autograph.core import config as autograph_config

    rules = autograph_config.CONVERSION_RULES
    if not any(isinstance(rule, autograph_config.DoNotConvert) and rule.matches("tf_keras")
               for rule in rules):
        autograph_config.CONVERSION_RULES = (autograph_config.DoNotConvert("tf_keras"), *rules)


keep_autograph_out_of_tf_keras()


def _expand_patterns(file_patterns: list[str]) -> list[str]:
    files = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no transformed examples match {file_patterns}")
    return files


def _records(file_patterns: list[str]) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(_expand_patterns(file_patterns), compression_type="GZIP")


def _parse(tf_transform_output: tft.TFTransformOutput):
    feature_spec = tf_transform_output.transformed_feature_spec()

    def parse(record):
        features = tf.io.parse_single_example(record, feature_spec)
        return (
            features[config_lib.TRANSFORMED_IMAGE_KEY],
            features[config_lib.TRANSFORMED_LABEL_KEY],
        )

    return parse


def make_dataset(
    file_patterns: list[str],
    tf_transform_output: tft.TFTransformOutput,
    image_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    distortions: augmentation.Distortions | None = None,
) -> tf.data.Dataset:
    """(images [B, size, size, 3] float32 in [0, 1], labels [B] int64) batches, streamed."""
    parse = _parse(tf_transform_output)

    def decode(record):
        jpeg, label = parse(record)
        image = transform_module.decode_transformed_image(jpeg, image_size)
        if distortions is not None and distortions.enabled:
            image = augmentation.distort_image(image, distortions)
        return image, label

    dataset = _records(file_patterns)
    if shuffle:
        # Shuffles the small serialized JPEGs, not decoded pixels, to keep memory flat.
        dataset = dataset.shuffle(2048, seed=seed, reshuffle_each_iteration=True)
    return (
        dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def block_of(variable_name: str) -> int:
    """MobileNet V1 block of a variable: conv_dw_N / conv_pw_N is N, anything else 0."""
    match = re.search(r"conv_(?:dw|pw)_(\d+)", variable_name)
    return int(match.group(1)) if match else 0


class TopBlocksKerasLayer(hub.KerasLayer):
    """A trainable hub.KerasLayer whose variables below `first_block` stay frozen.

    TF Hub modules are trained or frozen as a whole; filtering `trainable_weights` is what
    makes Keras compute gradients for the top blocks only, so the backward pass stops there:
    about 3x cheaper a step than fine-tuning everything, and far less memory.
    """

    def __init__(self, handle, first_block: int = 0, **kwargs):
        self.first_block = first_block
        super().__init__(handle, **kwargs)

    @property
    def trainable_weights(self):
        return [w for w in super().trainable_weights if block_of(w.name) >= self.first_block]

    @property
    def non_trainable_weights(self):
        frozen = [w for w in super().trainable_weights if block_of(w.name) < self.first_block]
        return frozen + super().non_trainable_weights


class TransferModel:
    """The MobileNet backbone, a new head, and the two models that share them."""

    def __init__(self, settings: TrainingConfig, fine_tuning: bool = True):
        num_classes = len(settings.class_names)
        self.backbone = TopBlocksKerasLayer(
            settings.model_handle, settings.fine_tune_from_block, trainable=fine_tuning,
            name="mobilenet",
        )
        if fine_tuning and not self.backbone.trainable_weights:
            # Not a MobileNet V1 (no conv_dw_N / conv_pw_N variables): fine-tune all of it.
            logger.warning(
                "Trainer: %s has no MobileNet V1 blocks to pick from; fine-tuning all of it "
                "(--fine-tune-from-block 0)", settings.model_handle,
            )
            self.backbone.first_block = 0
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


def cached_features(
    feature_extractor: tf_keras.Model,
    file_patterns: list[str],
    tf_transform_output: tft.TFTransformOutput,
    image_size: int,
    cache: bottleneck_cache.BottleneckCache,
    batch_size: int = 64,
):
    """(features [N, D], labels [N], photos computed) of a split, reading `cache` first.

    Streams the resized JPEGs; only the photos missing from the cache are decoded and run
    through the network, in batches. The new features are added to `cache`.
    """
    extract = tf.function(
        lambda images: feature_extractor(images, training=False), reduce_retracing=True
    )
    decode = tf.function(
        lambda jpegs: tf.map_fn(
            lambda jpeg: transform_module.decode_transformed_image(jpeg, image_size), jpegs,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
        ),
        reduce_retracing=True,
    )
    dataset = _records(file_patterns).map(_parse(tf_transform_output)).batch(batch_size)
    features, labels, computed = [], [], 0
    for jpegs, batch_labels in dataset:
        keys = [bottleneck_cache.photo_key(jpeg) for jpeg in jpegs.numpy()]
        missing = [index for index, key in enumerate(keys) if key not in cache]
        if missing:
            new = extract(decode(tf.gather(jpegs, missing))).numpy()
            for index, vector in zip(missing, new, strict=True):
                cache.put(keys[index], vector)
            computed += len(missing)
        features.append(np.stack([cache.get(key) for key in keys]))
        labels.append(batch_labels.numpy())
    return np.concatenate(features), np.concatenate(labels), computed


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    """Keras `class_weight`: inverse class frequency (mean 1 over photos), or None.

    "auto" weights only when the largest class has more than CLASS_WEIGHT_AUTO_RATIO times
    the photos of the smallest; a class without train photos gets weight 1.
    """
    counts = collections.Counter(labels.tolist())
    present = [counts[label] for label in range(num_classes) if counts[label]]
    if mode == "none" or not present:
        return None
    if mode == "auto" and max(present) <= config_lib.CLASS_WEIGHT_AUTO_RATIO * min(present):
        return None
    total = sum(present)
    return {
        label: (total / (len(present) * counts[label]) if counts[label] else 1.0)
        for label in range(num_classes)
    }


def learning_rate(settings: TrainingConfig, initial: float, epochs: int, steps_per_epoch: int):
    """The phase's learning rate: constant, or a cosine decay to 0 over its epochs."""
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


def _callbacks(log_dir: str, patience: int, initial_loss: float = float("inf"),
               confusion_matrix: training_summaries.ConfusionMatrixSummary | None = None) -> list:
    return [
        tf_keras.callbacks.TensorBoard(
            log_dir=log_dir, update_freq="epoch", write_graph=False, profile_batch=0
        ),
        tf_keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience),
        KeepBestWeights(initial_loss),
        # Last, so that a matrix drawn at the end of training shows the restored best weights.
        *([confusion_matrix] if confusion_matrix else []),
    ]


def smoothed_crossentropy(num_classes: int, label_smoothing: float):
    """Cross-entropy on integer labels with label smoothing (the sparse loss has none)."""
    loss = tf_keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)

    def sparse_smoothed_crossentropy(labels, scores):
        one_hot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), num_classes)
        return loss(one_hot, scores)

    return sparse_smoothed_crossentropy


def _compile(model: tf_keras.Model, settings: TrainingConfig, rate) -> None:
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=rate),
        loss=smoothed_crossentropy(len(settings.class_names), settings.label_smoothing),
        metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def _steps(count: int, batch_size: int) -> int:
    return max(1, -(-count // batch_size))


def train_head(transfer: TransferModel, settings: TrainingConfig, features: dict, log_dir,
               weights: dict | None) -> int:
    """Phase 1: the new head on cached features; returns the number of epochs run."""
    train_features, train_labels = features["train"]
    eval_features, eval_labels = features["eval"]
    steps = _steps(len(train_labels), settings.train_batch_size)
    _compile(transfer.head, settings, learning_rate(settings, settings.learning_rate,
                                                    settings.epochs, steps))
    history = transfer.head.fit(
        train_features,
        train_labels,
        batch_size=settings.train_batch_size,
        epochs=settings.epochs,
        validation_data=(eval_features, eval_labels),
        class_weight=weights,
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


def head_eval_loss(transfer: TransferModel, eval_features: tuple) -> float:
    """The eval loss of the trained head, on cached features.

    The same number as a pass of the whole model over the eval images (the backbone as cached,
    dropout off), in milliseconds instead of seconds. The head must be compiled.
    """
    features, labels = eval_features
    return transfer.head.evaluate(features, labels, verbose=0, return_dict=True)["loss"]


def fine_tune(transfer: TransferModel, settings: TrainingConfig, train_ds, eval_ds, log_dir,
              initial_epoch: int, num_train: int, weights: dict | None,
              initial_loss: float = float("inf")) -> None:
    """Phase 2: the top blocks at a small learning rate, keeping the best weights.

    `initial_loss`, the starting weights' eval loss, makes them a candidate too.
    """
    steps = _steps(num_train, settings.train_batch_size)
    _compile(transfer.model, settings, learning_rate(
        settings, settings.fine_tune_learning_rate, settings.fine_tune_epochs, steps))
    logger.info(
        "Trainer: fine-tuning %d variables (blocks >= %d) for up to %d epochs",
        # The layer's own first block: 0 after the fallback for a module without blocks.
        len(transfer.backbone.trainable_weights), transfer.backbone.first_block,
        settings.fine_tune_epochs,
    )
    transfer.model.fit(
        train_ds,
        epochs=initial_epoch + settings.fine_tune_epochs,
        initial_epoch=initial_epoch,
        validation_data=eval_ds,
        class_weight=weights,
        callbacks=_callbacks(
            log_dir, settings.early_stopping_patience, initial_loss,
            # One extra forward pass over the eval images, for the weights kept.
            confusion_matrix=training_summaries.ConfusionMatrixSummary(
                log_dir, settings.class_names,
                lambda model: extract_features(model, eval_ds)[::-1], every_epoch=False,
            ),
        ),
        verbose=2,
    )


def pad_single_image(pixels: tf.Tensor) -> tf.Tensor:
    """A batch of one image as a batch of two copies of it; other batches as they are.

    With oneDNN (TF_ENABLE_ONEDNN_OPTS=1: the runner's setting, and TF's default on Intel CPUs)
    MobileNet took 279 ms on one image against 33 ms on two (BENCHMARKS.md, "First calls"),
    and TFMA's adaptive batching, seeing slow single images, then kept evaluating in batches
    of 1-2: the Evaluator with a baseline model took 74 s instead of 25 s.
    """
    return tf.cond(
        tf.shape(pixels)[0] == 1, lambda: tf.concat([pixels, pixels], axis=0), lambda: pixels
    )


def _serving_signatures(model: tf_keras.Model, tf_transform_output, settings: TrainingConfig):
    """The two serving functions; both reuse Transform's graph, so serving matches training."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    class_names = tf.constant(list(settings.class_names))
    image_spec = tf_transform_output.raw_feature_spec()[config_lib.IMAGE_KEY]

    def classify(encoded_images, pad_single: bool = False):
        transformed = model.tft_layer({config_lib.IMAGE_KEY: tf.reshape(encoded_images, [-1, 1])})
        pixels = tf.map_fn(
            lambda jpeg: transform_module.decode_transformed_image(jpeg, settings.image_size),
            transformed[config_lib.TRANSFORMED_IMAGE_KEY],
            fn_output_signature=tf.TensorSpec(
                [settings.image_size, settings.image_size, 3], tf.float32
            ),
        )
        batch = pad_single_image(pixels) if pad_single else pixels
        scores = model(batch, training=False)[: tf.shape(pixels)[0]]
        classes = tf.tile(class_names[tf.newaxis, :], [tf.shape(scores)[0], 1])
        return {"scores": scores, "classes": classes}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(images):
        return classify(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        parsed = tf.io.parse_example(examples, {config_lib.IMAGE_KEY: image_spec})
        # TFMA's batches: see pad_single_image. serving_default is not padded, since one
        # photo without oneDNN takes 19 ms alone and 31 ms padded (BENCHMARKS.md).
        return classify(tf.reshape(parsed[config_lib.IMAGE_KEY], [-1]), pad_single=True)

    return {
        SERVING_IMAGES_SIGNATURE: serve_images.get_concrete_function(),
        SERVING_EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
    }


def export_model(model, tf_transform_output, settings: TrainingConfig, export_dir: str) -> None:
    signatures = _serving_signatures(model, tf_transform_output, settings)
    model.save(export_dir, save_format="tf", signatures=signatures)
    with tf.io.gfile.GFile(os.path.join(export_dir, "assets", LABELS_FILE), "w") as labels:
        labels.write("".join(f"{name}\n" for name in settings.class_names))


def split_features(transfer: TransferModel, settings: TrainingConfig, fn_args,
                   tf_transform_output) -> dict:
    """{"train"|"eval": (features, labels)} through the cross-run bottleneck cache."""
    cache = bottleneck_cache.BottleneckCache(
        settings.bottleneck_dir, bottleneck_cache.module_key(settings.model_handle)
    )
    started, features, computed = time.time(), {}, 0
    for split, files in (("train", fn_args.train_files), ("eval", fn_args.eval_files)):
        *features[split], count = cached_features(
            transfer.feature_extractor, files, tf_transform_output, settings.image_size, cache
        )
        computed += count
    cache.flush()
    total = sum(len(labels) for _, labels in features.values())
    logger.info(
        "Trainer: MobileNet features of %d photos in %.0f s (%d computed, %d from the cache %s)",
        total, time.time() - started, computed, total - computed, cache.directory or "(off)",
    )
    return features


def save_feature_extractor(feature_extractor: tf_keras.Model, image_size: int,
                           export_dir: str) -> None:
    """A (fine-tuned) backbone as a TF Hub reusable SavedModel, which hub.KerasLayer loads.

    The bare interface (`__call__`, variables, trainable_variables, regularization_losses) on
    a plain trackable, as TF Hub's own modules have; batch norm stays in inference mode, as it
    was while fine-tuning.
    """
    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")

    # autograph=False: MobileNet has no data-dependent Python control flow to convert.
    @tf.function(autograph=False)
    def call(images, training=False):
        return feature_extractor(images, training=False)

    call.get_concrete_function(spec, True)
    call.get_concrete_function(spec, False)

    @tf.function(input_signature=[spec], autograph=False)
    def serving_default(images):
        return {"feature_vector": call(images, training=False)}

    module = tf.train.Checkpoint()
    module.__call__ = call
    module.variables = list(feature_extractor.variables)
    module.trainable_variables = list(feature_extractor.trainable_variables)
    module.regularization_losses = []
    tf.saved_model.save(module, export_dir, signatures={"serving_default": serving_default})


class _Phases:
    """What both entry points share: settings, datasets, features and class weights."""

    def __init__(self, fn_args, settings: TrainingConfig, fine_tuning: bool):
        self.fn_args, self.settings = fn_args, settings
        tf_keras.utils.set_random_seed(settings.seed)
        self.tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
        self.eval_ds = self.dataset(fn_args.eval_files, False)
        self.transfer = TransferModel(settings, fine_tuning=fine_tuning)
        self.features = split_features(self.transfer, settings, fn_args, self.tf_transform_output)
        self.num_train = len(self.features["train"][1])
        self.weights = class_weights(
            self.features["train"][1], len(settings.class_names), settings.class_weights
        )
        if self.weights:
            logger.info("Trainer: class weights %s", {
                settings.class_names[label]: round(weight, 2)
                for label, weight in self.weights.items()
            })

    def dataset(self, files, shuffle, distortions=None):
        return make_dataset(files, self.tf_transform_output, self.settings.image_size,
                            self.settings.train_batch_size, shuffle=shuffle,
                            seed=self.settings.seed, distortions=distortions)

    def train_head(self) -> int:
        return train_head(self.transfer, self.settings, self.features,
                          self.fn_args.model_run_dir, self.weights)

    def fine_tune(self, head_epochs: int) -> None:
        train_ds = self.dataset(
            self.fn_args.train_files, True, augmentation.Distortions.from_settings(self.settings)
        )
        initial_loss = (
            head_eval_loss(self.transfer, self.features["eval"]) if head_epochs > 0
            else float("inf")
        )
        fine_tune(self.transfer, self.settings, train_ds, self.eval_ds,
                  self.fn_args.model_run_dir, head_epochs, self.num_train, self.weights,
                  initial_loss)


def release_memory(clear_keras_session: bool = True) -> None:
    """Hands the memory of a finished training back to the OS.

    TFX's local runner runs every component in one process, so what one trainer leaves
    allocated (Keras graphs, freed but unreturned heap) would otherwise sit under the next
    one's peak: measured, the Trainer started at 2.3 GB after the FineTuner and reached
    3.06 GB converting to TFLite.
    """
    gc.collect()
    if clear_keras_session:  # only once no model of this component is used any more
        tf_keras.backend.clear_session()
        gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps it, nothing breaks
        pass


def fine_tune_fn(fn_args) -> None:
    """The FineTuner's entry point (a second TFX Trainer): phases 1 and 2, then the backbone.

    It trains a head on cached features, fine-tunes from it, and writes the fine-tuned
    MobileNet as a TF Hub module for the Trainer (its `base_model`), which then fits the final
    head on that module's cached features. So a change of head settings reruns only the
    Trainer, in seconds, and TFX's cache skips this component.
    """
    settings = TrainingConfig.from_custom_config(fn_args.custom_config)
    phases = _Phases(fn_args, settings, fine_tuning=True)
    phases.fine_tune(phases.train_head())
    save_feature_extractor(
        phases.transfer.feature_extractor, settings.image_size, fn_args.serving_model_dir
    )
    del phases
    release_memory()


def run_fn(fn_args) -> None:
    """TFX Trainer entry point: the head, and the exported classifier.

    With a `base_model` (the FineTuner's fine-tuned MobileNet) only the head is trained, on
    that module's features; without one, both phases run here.
    """
    settings = TrainingConfig.from_custom_config(fn_args.custom_config)
    if fn_args.base_model:
        settings = dataclasses.replace(
            settings, model_handle=fn_args.base_model, fine_tune_epochs=0
        )
        logger.info("Trainer: the head on the fine-tuned MobileNet %s", fn_args.base_model)
    phases = _Phases(fn_args, settings, fine_tuning=settings.fine_tune_epochs > 0)
    # Its own shuffled dataset, so that training's shuffle order stays as without the samples.
    training_summaries.log_sample_images(
        fn_args.model_run_dir, phases.dataset(fn_args.train_files, True), settings.class_names
    )
    head_epochs = phases.train_head()
    if settings.fine_tune_epochs > 0:
        phases.fine_tune(head_epochs)
    model = phases.transfer.model
    export_model(model, phases.tf_transform_output, settings, fn_args.serving_model_dir)
    # Beside the SavedModel, so the Pusher (which copies the whole folder) pushes them too.
    calibration = tflite_export.calibration_images(phases.dataset(fn_args.train_files, False))
    # The converters need only the model: the training state goes first, lowering the peak.
    del phases
    release_memory(clear_keras_session=False)
    tflite_export.write_tflite_models(
        model, settings.image_size, settings.class_names, calibration,
        fn_args.serving_model_dir,
    )
    del model, calibration
    release_memory()
