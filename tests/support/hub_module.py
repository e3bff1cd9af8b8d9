"""A random-weight stand-in for the TF Hub MobileNet V1 image feature-vector module.

The real module (shared/assets/mobilenet_v1_100_224_feature_vector) is a tf_keras functional
model ``Input("images") -> Rescaling(2, -1) -> MobileNet(include_top=False, pooling="avg")``
saved with ``tf.saved_model.save``. This builds the same network with random weights and
exports the same Hub interface: ``__call__(images, training)`` traced for training=True and
False, ``variables``, ``trainable_variables``, ``regularization_losses`` and a
``serving_default`` signature ``images -> {model name: features}``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from pathlib import Path  # noqa: E402  (imports below must see TF_USE_LEGACY_KERAS)

import numpy as np  # noqa: E402

# Dimensions of the images used to calibrate batch-norm statistics (see _calibrate_batch_norm).
_CALIBRATION_BATCH = 8
_CALIBRATION_GRID = 8


def make_random_hub_mobilenet(
    export_dir: str | os.PathLike,
    alpha: float = 0.25,
    resolution: int = 128,
    seed: int = 0,
) -> Path:
    """Saves a random MobileNet V1 feature-vector module to ``export_dir`` and returns it.

    Input: float32 ``[batch, resolution, resolution, 3]`` in [0, 1] (rescaled to [-1, 1]
    inside). Output: float32 ``[batch, int(1024 * alpha)]``, global-average pooled.
    Same seed, same weights.
    """
    # Imported here so that importing tests.support for the image helpers stays cheap.
    import tensorflow as tf
    import tf_keras

    from models import resolution_free

    images = tf_keras.Input(shape=(resolution, resolution, 3), dtype=tf.float32, name="images")
    rescaled = tf_keras.layers.Rescaling(scale=2.0, offset=-1.0)(images)
    backbone = tf_keras.applications.MobileNet(
        input_shape=(resolution, resolution, 3),
        alpha=alpha,
        include_top=False,
        pooling="avg",
        weights=None,
    )
    model = tf_keras.Model(images, backbone(rescaled), name=f"{backbone.name}_feature_vector")

    rng = np.random.default_rng(seed)
    _reinitialize_kernels(model, rng)
    _calibrate_batch_norm(model, resolution, rng)

    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    # The pipeline's own writer of Hub modules; keyed by the backbone's name and with batch
    # statistics in training mode, like the real module ("mobilenet_1.00_224").
    resolution_free.save_hub_module(model, str(export_dir), (resolution, resolution),
                                    output_key=backbone.name, batch_norm_follows_training=True)
    return export_dir


def _reinitialize_kernels(model, rng: np.random.Generator) -> None:
    """Redraws every kernel from a seeded Glorot-uniform, the layers' own default.

    Keras initializers draw from TF's global random state; reseeding that would leak into
    the caller's test, so the seeded values come from numpy instead.
    """
    for variable in model.weights:
        if "kernel" not in variable.name:
            continue
        shape = variable.shape.as_list()
        receptive_field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = shape[-2] * receptive_field, shape[-1] * receptive_field
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        variable.assign(rng.uniform(-limit, limit, size=shape).astype(np.float32))


def _calibrate_batch_norm(model, resolution: int, rng: np.random.Generator) -> None:
    """Sets each batch norm's moving mean/variance to the statistics of one smooth batch.

    Fresh moving statistics (mean 0, variance 1) let activations shrink layer after layer
    in inference mode, giving near-constant features; a pipeline that evaluates or serves
    with training=False would then see inputs it cannot tell apart.
    """
    import tensorflow as tf
    import tf_keras

    batch_norms = [
        module
        for module in model.submodules
        if isinstance(module, tf_keras.layers.BatchNormalization)
    ]
    coarse = rng.uniform(0.0, 1.0, size=(_CALIBRATION_BATCH, _CALIBRATION_GRID,
                                         _CALIBRATION_GRID, 3)).astype(np.float32)
    # Upsampled coarse noise looks more like photos (smooth regions, edges) than white noise.
    calibration_images = tf.image.resize(coarse, (resolution, resolution), method="bilinear")
    saved_momenta = [layer.momentum for layer in batch_norms]
    try:
        for layer in batch_norms:
            # momentum 0: one training-mode call copies the batch statistics verbatim.
            layer.momentum = 0.0
        model(calibration_images, training=True)
    finally:
        for layer, momentum in zip(batch_norms, saved_momenta, strict=True):
            layer.momentum = momentum
