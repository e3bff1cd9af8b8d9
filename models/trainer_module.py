"""Trainer's user module: a head on MobileNet features of several views of each photo.

1. The backbone takes photos at the size the network sees (`image_size`, squashed or with
   their aspect ratio kept): a fixed-size MobileNet V1 module is rebuilt once to take any size
   (models/resolution_free.py).
2. Its features of every view of each photo (the photo and its mirror image,
   models/views.py) are computed once per (photo, view, module) and cached across runs
   (models/bottleneck_cache.py), as TF for Poets' bottlenecks.
3. The head (`--head`: RBF support vector machines, models/kernel_head.py, or a logistic
   regression) on the L2-normalised features, its regularisation chosen by cross-validation
   over the train photos (models/linear_head.py).
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

import dataclasses
import json
import logging
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras  # noqa: E402

from models import (  # noqa: E402
    augmentation,
    bottleneck_cache,
    feature_pass,
    resolution_free,
    serving,
    tflite_export,
    training_summaries,
)
from models.features import HEAD_REPORT_FILE, LABEL_ISSUES_FILE  # noqa: E402
from models.fine_tuning import compile_for_fine_tuning, fine_tune  # noqa: E402
from models.head import HeadFit, class_weights, fit_head  # noqa: E402
from models.memory import release_memory  # noqa: E402
from models.network import TransferModel, backbone_handle  # noqa: E402
from models.training_config import TrainingConfig  # noqa: E402

logger = logging.getLogger(__name__)


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
        photos = feature_pass.SplitReader(files, tf_transform_output)
        by_view, count = feature_pass.cached_features(extract, photos, settings, cache,
                                                      settings.views)
        labels = photos.labels
        features[split] = (by_view, labels)
        features.setdefault("files", {})[split] = photos.files
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
        compile_for_fine_tuning(self.transfer.head, self.settings, 1e-3)
        initial_loss = self.transfer.head.evaluate(eval_by_view[0], eval_labels, verbose=0,
                                                   return_dict=True)["loss"]
        fine_tune(self.transfer, self.settings, train_ds,
                  self.dataset(self.fn_args.eval_files, False), self.fn_args.model_run_dir,
                  self.num_train, self.weights, initial_loss)


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
