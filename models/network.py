"""The network: a MobileNet hub.KerasLayer whose top blocks may be fine-tuned, and the head
on its L2-normalised features (TransferModel); the module it runs (backbone_handle)."""

from __future__ import annotations

import logging
import os
import re

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow_hub as hub  # noqa: E402
import tf_keras  # noqa: E402

from models import kernel_head, linear_head, resolution_free  # noqa: E402
from models.training_config import TrainingConfig  # noqa: E402

logger = logging.getLogger(__name__)


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
    scores (L2 normalisation, then the softmax layer the logistic regression is loaded into,
    or the RBF head's layer that `load_head` puts in its place).
    """

    def __init__(self, settings: TrainingConfig, handle: str, fine_tuning: bool = False):
        keep_autograph_out_of_tf_keras()  # before Keras traces anything of this model
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
    def num_classes(self) -> int:
        return int(self.head.output.shape[-1])

    @property
    def dimension(self) -> int:
        return int(self.feature_extractor.output.shape[-1])

    def load_head(self, fitted) -> None:
        """Loads a fitted head: a logistic regression into the Dense layer; an RBF head
        (models/kernel_head.py) as a new classifier layer sized by its support vectors, with
        `model` and `head` rebuilt on it."""
        if isinstance(fitted, kernel_head.KernelHead):
            self.classifier = kernel_head.kernel_classifier(fitted, self.num_classes)
            images = self.feature_extractor.input
            self.model = tf_keras.Model(
                images, self.classifier(self.normalise(self.feature_extractor.output)))
            bottleneck = self.head.input
            self.head = tf_keras.Model(bottleneck, self.classifier(self.normalise(bottleneck)))
            return
        kernel, bias = linear_head.dense_weights(fitted, self.num_classes, self.dimension)
        self.classifier.set_weights([kernel, bias])


def backbone_handle(settings: TrainingConfig) -> str:
    """The module the network runs: the configured one if it takes the photos' shapes, else its
    any-size copy (made once, in `settings.backbone_dir`)."""
    return resolution_free.any_size_module(settings.model_handle, settings.backbone_dir)
