"""Trainer's user module: a linear head on MobileNet features of several views of each photo.

1. The backbone takes photos at the size the network sees (`image_size`, squashed or with
   their aspect ratio kept): a fixed-size MobileNet V1 module is rebuilt once to take any size
   (models/resolution_free.py).
2. Its features of every view of each photo (the photo and its mirror image,
   models/views.py) are computed once per (photo, view, module) and cached across runs
   (models/bottleneck_cache.py), as TF for Poets' bottlenecks.
3. The head is a logistic regression on the L2-normalised features, its regularisation chosen
   by cross-validation over the train photos (models/linear_head.py).
4. Optionally (`fine_tune_epochs`, the FineTuner), the top MobileNet blocks are fine-tuned
   from that head on distorted images (models/augmentation.py), keeping the weights with
   the best validation loss.

The exported SavedModel scores photos as training saw them (models/serving.py); float and
int8 TFLite copies go to `tflite/` beside it (models/tflite_export.py). The head's
cross-validation goes to `head.json` in the ModelRun folder, and the photos whose class folder its
out-of-fold probabilities doubt (models/label_issues.py) to `label_issues.json` beside the
model, from where the Trainer's executor (components/metrics_on_artifacts/) puts their numbers
on the Model artifact in ML Metadata.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import gc
import json
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

from models import (  # noqa: E402  # noqa: E402
    augmentation,
    bottleneck_cache,
    feature_pass,
    features,
    label_issues,
    linear_head,
    resolution_free,
    serving,
    tflite_export,
    training_config,
    training_summaries,
)
from models.training_config import TrainingConfig  # noqa: E402

logger = logging.getLogger(__name__)
HEAD_REPORT_FILE = features.HEAD_REPORT_FILE
LABEL_ISSUES_FILE = features.LABEL_ISSUES_FILE


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
    """The MobileNet backbone, the head, and the models that share them.

    `model`: pixels -> scores; `feature_extractor`: pixels -> features; `head`: features ->
    scores (L2 normalisation, then the softmax layer the logistic regression is loaded into).
    """

    def __init__(self, settings: TrainingConfig, handle: str, fine_tuning: bool = False):
        self.backbone = TopBlocksKerasLayer(
            handle, settings.fine_tune_from_block, trainable=fine_tuning, name="mobilenet",
        )
        if fine_tuning and not self.backbone.trainable_weights:
            # Not a MobileNet V1 (no conv_dw_N / conv_pw_N variables): fine-tune all of it.
            logger.warning(
                "Trainer: %s has no MobileNet V1 blocks to pick from; fine-tuning all of it "
                "(--fine-tune-from-block 0)", handle,
            )
            self.backbone.first_block = 0
        # Any size: photos keep their aspect ratio, and views may show them at other sizes.
        images = tf_keras.Input((None, None, 3), name="image")
        # training=False keeps batch norm in inference mode while fine-tuning: with small
        # batches, updating its statistics hurts more than it helps.
        features = self.backbone(images, training=False)
        self.normalise = tf_keras.layers.UnitNormalization(name="l2_normalise")
        self.classifier = tf_keras.layers.Dense(
            len(settings.class_names), activation="softmax", name="classifier"
        )
        self.model = tf_keras.Model(images, self.classifier(self.normalise(features)))
        self.feature_extractor = tf_keras.Model(images, features)
        bottleneck = tf_keras.Input((features.shape[-1],), name="bottleneck")
        self.head = tf_keras.Model(bottleneck, self.classifier(self.normalise(bottleneck)))

    @property
    def dimension(self) -> int:
        return int(self.feature_extractor.output.shape[-1])

    def load_head(self, fitted) -> None:
        kernel, bias = linear_head.dense_weights(
            fitted, self.classifier.units, self.dimension
        )
        self.classifier.set_weights([kernel, bias])


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    """Per-class weights: inverse class frequency (mean 1 over photos), or None.

    "auto" weights only when the largest class has more than CLASS_WEIGHT_AUTO_RATIO times
    the photos of the smallest; a class without train photos gets weight 1.
    """
    counts = collections.Counter(labels.tolist())
    present = [counts[label] for label in range(num_classes) if counts[label]]
    if mode == "none" or not present:
        return None
    if mode == "auto" and max(present) <= training_config.CLASS_WEIGHT_AUTO_RATIO * min(present):
        return None
    total = sum(present)
    return {
        label: (total / (len(present) * counts[label]) if counts[label] else 1.0)
        for label in range(num_classes)
    }


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


def _compile(model: tf_keras.Model, settings: TrainingConfig, rate) -> None:
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=rate),
        loss=smoothed_crossentropy(len(settings.class_names), settings.label_smoothing),
        metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def _steps(count: int, batch_size: int) -> int:
    return max(1, -(-count // batch_size))


def backbone_handle(settings: TrainingConfig) -> str:
    """The module the network runs: the configured one if it takes the photos' shapes, else its
    any-size copy (made once, in `settings.backbone_dir`)."""
    return resolution_free.any_size_module(settings.model_handle, settings.backbone_dir)


@dataclasses.dataclass
class HeadFit:
    """The fitted head, with what was measured choosing it."""

    fitted: object
    c: float
    cross_validation: list[linear_head.CrossValidation]
    eval_scores: np.ndarray  # [eval photos, classes], scored as serving scores them
    eval_accuracy: float
    eval_count: int
    # models/label_issues.py's report over the train and eval photos, and how many train
    # photos it named that the final head was not fitted on.
    label_issues: dict = dataclasses.field(default_factory=dict)
    excluded: int = 0

    @property
    def chosen(self) -> linear_head.CrossValidation:
        return next(result for result in self.cross_validation if result.c == self.c)

    def report(self) -> dict:
        chosen = self.chosen
        return {
            "c": self.c,
            "cv_accuracy": chosen.accuracy,
            "cv_standard_error": chosen.standard_error,
            "cv_folds": chosen.folds,
            "cv_by_c": {f"{result.c:g}": result.accuracy for result in self.cross_validation},
            "eval_accuracy": self.eval_accuracy,
            "eval_count": self.eval_count,
            "excluded_suspects": self.excluded,
        }


def _suspects(settings: TrainingConfig, files: dict | None, train_labels, eval_labels,
              out_of_fold: np.ndarray, eval_scores: np.ndarray) -> tuple[np.ndarray, dict]:
    """(suspected train photos' rows, label_issues' report) from out-of-sample probabilities:
    the train photos' out of fold, the eval photos' from the head fitted on the train photos."""
    names = files or {}
    labels = np.concatenate([train_labels, eval_labels])
    probabilities = np.concatenate([out_of_fold, eval_scores])
    suspects = label_issues.ranked(labels, probabilities)
    issues = label_issues.report(
        suspects, labels, probabilities,
        list(names.get("train") or [""] * len(train_labels))
        + list(names.get("eval") or [""] * len(eval_labels)),
        ["train"] * len(train_labels) + ["eval"] * len(eval_labels), settings.class_names,
    )
    return suspects[suspects < len(train_labels)], issues


def fit_head(settings: TrainingConfig, features: dict, weights, files: dict | None = None
             ) -> HeadFit:
    """Cross-validates C over the train photos, then fits the head on all of them, or with
    `exclude_suspected_label_errors` on those whose label the cross-validation does not doubt.
    `files`: {"train"|"eval": file names}, for the list of suspects."""
    train_by_view, train_labels = features["train"]
    eval_by_view, eval_labels = features["eval"]
    num_classes = len(settings.class_names)
    scored_views = len(serving.serving_views(settings))
    grid = (settings.head_c,) if settings.head_c > 0 else linear_head.C_GRID
    started = time.time()
    results = linear_head.cross_validate(
        train_by_view, train_labels, num_classes, grid, weights, seed=settings.seed,
        scored_views=scored_views,
    )
    best = max(results, key=lambda result: result.accuracy)
    fitted = linear_head.fit(train_by_view, train_labels, best.c, weights)
    eval_scores = linear_head.predict(fitted, eval_by_view[:scored_views], num_classes)
    checked = time.time()
    train_suspects, issues = _suspects(settings, files, train_labels, eval_labels,
                                       best.out_of_fold, eval_scores)
    logger.info("Trainer: %s (in %.1f s)", label_issues.message(issues), time.time() - checked)
    excluded = 0
    if settings.exclude_suspected_label_errors and len(train_suspects):
        keep = np.ones(len(train_labels), bool)
        keep[train_suspects] = False
        excluded = int(len(train_suspects))
        logger.info("Trainer: the final head leaves out the %d suspected train photos", excluded)
        fitted = linear_head.fit([f[keep] for f in train_by_view], train_labels[keep], best.c,
                                 weights)
        eval_scores = linear_head.predict(fitted, eval_by_view[:scored_views], num_classes)
    eval_accuracy = float(np.mean(eval_scores.argmax(1) == eval_labels))
    logger.info(
        "Trainer: head C=%g, cross-validated accuracy %.1f %% ± %.1f (%d folds over %d train "
        "photos, %s), eval accuracy %.1f %%, in %.1f s", best.c, 100 * best.accuracy,
        100 * best.standard_error, best.folds, len(train_labels),
        ", ".join(f"C={r.c:g}: {100 * r.accuracy:.1f} %" for r in results),
        100 * eval_accuracy, time.time() - started,
    )
    return HeadFit(fitted, best.c, results, eval_scores, eval_accuracy, len(eval_labels),
                   issues, excluded)


def fine_tune(transfer: TransferModel, settings: TrainingConfig, train_ds, eval_ds, log_dir,
              num_train: int, weights: dict | None, initial_loss: float) -> None:
    """The top blocks at a small learning rate, from the fitted head, keeping the best weights.

    `initial_loss`, the starting weights' eval loss, makes them a candidate too.
    """
    steps = _steps(num_train, settings.train_batch_size)
    _compile(transfer.model, settings, learning_rate(
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


def split_features(transfer: TransferModel, settings: TrainingConfig, fn_args, handle: str,
                   tf_transform_output) -> dict:
    """{"train"|"eval": ([features per view], labels)} through the cross-run cache.

    The photos are read with the Trainer's own reader rather than `fn_args.data_accessor`:
    the cache needs each photo's resized JPEG bytes (its key) before deciding whether to run
    the network on it, which TFX's batched Keras datasets do not give.
    """
    cache = bottleneck_cache.BottleneckCache(settings.bottleneck_dir,
                                             bottleneck_cache.module_key(handle))
    extract = tf.function(lambda images: transfer.feature_extractor(images, training=False),
                          reduce_retracing=True)
    started, features, computed, total = time.time(), {}, 0, 0
    for split, files in (("train", fn_args.train_files), ("eval", fn_args.eval_files)):
        jpegs, labels, names = feature_pass.read_split(files, tf_transform_output)
        by_view, count = feature_pass.cached_features(extract, jpegs, settings, cache,
                                                      settings.views)
        features[split] = (by_view, labels)
        features.setdefault("files", {})[split] = names
        computed, total = computed + count, total + len(labels)
    cache.flush()
    # The pass's activations are freed but sit in malloc's arenas; the head and the export
    # that follow would stack their own peaks on top.
    release_memory(clear_keras_session=False)
    logger.info(
        "Trainer: features of %d photos x %d views in %.0f s (%d photos computed, %d from the "
        "cache %s)", total, len(settings.views), time.time() - started, computed,
        total - computed, cache.directory or "(off)",
    )
    return features


class _Phases:
    """What both entry points share: settings, features, class weights and the fitted head."""

    def __init__(self, fn_args, settings: TrainingConfig, handle: str, fine_tuning: bool):
        self.fn_args, self.settings = fn_args, settings
        tf_keras.utils.set_random_seed(settings.seed)
        self.tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
        self.transfer = TransferModel(settings, handle, fine_tuning=fine_tuning)
        self.features = split_features(self.transfer, settings, fn_args, handle,
                                       self.tf_transform_output)
        train_labels = self.features["train"][1]
        self.num_train = len(train_labels)
        self.weights = class_weights(train_labels, len(settings.class_names),
                                     settings.class_weights)
        if self.weights:
            logger.info("Trainer: class weights %s", {
                settings.class_names[label]: round(weight, 2)
                for label, weight in self.weights.items()
            })
        self.head = fit_head(settings, self.features, self.weights, self.features["files"])
        self.transfer.load_head(self.head.fitted)
        training_summaries.log_head(
            fn_args.model_run_dir, settings.class_names, self.head.report(),
            self.features["eval"][1], self.head.eval_scores,
        )

    def dataset(self, files, shuffle, distort=None):
        return feature_pass.image_dataset(files, self.tf_transform_output, self.settings,
                                          self.settings.train_batch_size, shuffle=shuffle,
                                          distort=distort)

    def fine_tune(self) -> None:
        distortions = augmentation.Distortions.from_settings(self.settings)
        train_ds = self.dataset(
            self.fn_args.train_files, True,
            (lambda image: augmentation.distort_image(image, distortions))
            if distortions.enabled else None,
        )
        eval_by_view, eval_labels = self.features["eval"]
        _compile(self.transfer.head, self.settings, 1e-3)
        initial_loss = self.transfer.head.evaluate(eval_by_view[0], eval_labels, verbose=0,
                                                   return_dict=True)["loss"]
        fine_tune(self.transfer, self.settings, train_ds,
                  self.dataset(self.fn_args.eval_files, False), self.fn_args.model_run_dir,
                  self.num_train, self.weights, initial_loss)


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


def model_artifact_dir(fn_args) -> str:
    """The Model artifact's folder, which holds the SavedModel's (TFX's path_utils names it
    Format-Serving): where files beside the model go, not pushed with it."""
    return os.path.dirname(fn_args.serving_model_dir.rstrip("/"))


def _write_head_report(fn_args, head: HeadFit) -> None:
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, HEAD_REPORT_FILE), "w") as file:
        json.dump(head.report(), file, indent=1)
    model_dir = model_artifact_dir(fn_args)
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(os.path.join(model_dir, LABEL_ISSUES_FILE), "w") as file:
        json.dump({**head.label_issues, "excluded_from_training": head.excluded}, file,
                  indent=1, ensure_ascii=False)


def fine_tune_fn(fn_args) -> None:
    """The FineTuner's entry point (a second TFX Trainer): the head, fine-tuning, the backbone.

    It fits a head on cached features, fine-tunes from it, and writes the fine-tuned MobileNet
    as a TF Hub module (any input size) for the Trainer (its `base_model`), which then fits the
    final head on that module's cached features. So a change of head settings reruns only the
    Trainer, and TFX's cache skips this component.
    """
    settings = TrainingConfig.from_custom_config(fn_args.custom_config)
    phases = _Phases(fn_args, settings, backbone_handle(settings), fine_tuning=True)
    phases.fine_tune()
    resolution_free.save_hub_module(phases.transfer.feature_extractor, fn_args.serving_model_dir)
    del phases
    release_memory()


def run_fn(fn_args) -> None:
    """TFX Trainer entry point: the head, and the exported classifier.

    With a `base_model` (the FineTuner's fine-tuned MobileNet) the head is fitted on that
    module's features; without one, on the configured module's, and fine-tuning (if any) runs
    here too.
    """
    settings = TrainingConfig.from_custom_config(fn_args.custom_config)
    if fn_args.base_model:
        handle = fn_args.base_model
        settings = dataclasses.replace(settings, fine_tune_epochs=0)
        logger.info("Trainer: the head on the fine-tuned MobileNet %s", handle)
    else:
        handle = backbone_handle(settings)
    phases = _Phases(fn_args, settings, handle, fine_tuning=settings.fine_tune_epochs > 0)
    _write_head_report(fn_args, phases.head)
    # Its own shuffled dataset, so that training's shuffle order stays as without the samples.
    training_summaries.log_sample_images(
        fn_args.model_run_dir, phases.dataset(fn_args.train_files, True), settings.class_names
    )
    if settings.fine_tune_epochs > 0:
        phases.fine_tune()
    model = phases.transfer.model
    serving.export_model(model, phases.tf_transform_output, settings, fn_args.serving_model_dir)
    # Beside the SavedModel, so the Pusher (which copies the whole folder) pushes them too.
    calibration = tflite_export.calibration_images(phases.dataset(fn_args.train_files, True))
    # The converters need only the model: the training state goes first, lowering the peak.
    del phases
    release_memory(clear_keras_session=False)
    tflite_export.write_tflite_models(
        model, settings, calibration, fn_args.serving_model_dir,
    )
    del model, calibration
    release_memory()
