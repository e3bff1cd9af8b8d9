"""A MobileNet V1 feature vector that takes any input size, made from a fixed-size module.

TF Hub's MobileNet V1 modules (and ../shared/assets') fix their signature at the nominal
resolution, but their weights do not depend on it: a convolutional network with a global
average pool accepts any height and width. `make_resolution_free` rebuilds the same
architecture (tf_keras's MobileNet, whose variable names the modules carry) with an unknown
input size, loads the module's weights into it by name, checks it gives the module's features
at the module's own size, and saves it in TF Hub format so the Trainer still loads and
fine-tunes it as a `hub.KerasLayer`.
"""

from __future__ import annotations

import logging
import os
import re

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

# The largest difference allowed between the module's features and the rebuilt network's, at
# the module's own size, on random pixels; float32 reassociation alone gives about 1e-6 here.
FEATURE_TOLERANCE = 1e-4
_FIRST_KERNEL = "conv1/kernel"
_BLOCK_VARIABLE = re.compile(r"conv_(?:dw|pw)_(\d+)")
_FILTERS_OF_WIDTH_1 = 32  # conv1 of MobileNet V1 at width 1.0


class NotConvertibleError(ValueError):
    """The module is fixed-size and not a MobileNet V1 this code can rebuild."""


def _loaded_variables(module) -> dict[str, tf.Variable]:
    return {variable.name.split(":")[0]: variable for variable in module.variables}


def fixed_input_size(module) -> tuple[int | None, int | None] | None:
    """The (height, width) a loaded TF Hub module's images must have; None if any size works.

    Read from the module's `__call__` (what hub.KerasLayer calls), else its serving signature.
    """
    specs = []
    call = getattr(module, "__call__", None)  # noqa: B004 - the saved function, not callable()
    for function in getattr(call, "concrete_functions", []) or []:
        args = function.structured_input_signature[0]
        if args and isinstance(args[0], tf.TensorSpec):
            specs.append(args[0])
    # A TF Hub module's own default signature, not this project's serving contract.
    hub_signature = "serving_default"
    if not specs and hub_signature in getattr(module, "signatures", {}):
        specs = list(module.signatures[hub_signature].structured_input_signature[1].values())
    for spec in specs:
        if spec.shape.rank == 4 and (spec.shape[1] is not None or spec.shape[2] is not None):
            return spec.shape[1], spec.shape[2]
    return None


def mobilenet_v1_width(variables: dict[str, tf.Variable]) -> float:
    """The width multiplier of a MobileNet V1 from its variables; raises if it is not one."""
    blocks = {int(m.group(1)) for name in variables if (m := _BLOCK_VARIABLE.search(name))}
    if _FIRST_KERNEL not in variables or blocks != set(range(1, 14)):
        raise NotConvertibleError(
            "not a MobileNet V1 with tf_keras layer names (conv1, conv_dw_1..13, conv_pw_1..13)"
        )
    return variables[_FIRST_KERNEL].shape[-1] / _FILTERS_OF_WIDTH_1


def build_mobilenet_v1(width: float) -> tf_keras.Model:
    """MobileNet V1 features for images of any size, pixels in [0, 1] as TF Hub's take them."""
    images = tf_keras.Input((None, None, 3), name="images")
    # tf_keras's MobileNet expects [-1, 1]; the hub modules rescale [0, 1] themselves.
    scaled = tf_keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus_one_one")(images)
    backbone = tf_keras.applications.MobileNet(
        input_shape=(None, None, 3), alpha=width, include_top=False, weights=None,
        pooling="avg", input_tensor=scaled,
    )
    return tf_keras.Model(images, backbone.output, name="mobilenet_v1_any_size")


def copy_weights(source: dict[str, tf.Variable], model: tf_keras.Model) -> None:
    """Assigns every weight of `model` from the module variable of the same name."""
    missing = []
    for weight in model.weights:
        name = weight.name.split(":")[0]
        if name not in source or source[name].shape != weight.shape:
            missing.append(name)
            continue
        weight.assign(source[name])
    if missing:
        raise NotConvertibleError(f"the module has no matching weight for {missing[:3]}")


def max_feature_difference(module, model: tf_keras.Model, size: tuple[int, int]) -> float:
    """Largest |module - model| feature difference on random pixels at `size`."""
    pixels = tf.random.stateless_uniform([2, *size, 3], seed=[1, 2])
    expected = module(pixels)
    if isinstance(expected, dict):
        expected = next(iter(expected.values()))
    return float(np.max(np.abs(expected.numpy() - model(pixels, training=False).numpy())))


def save_hub_module(feature_extractor: tf_keras.Model, export_dir: str,
                    image_size: tuple[int | None, int | None] = (None, None),
                    output_key: str = "feature_vector",
                    batch_norm_follows_training: bool = False) -> None:
    """A feature extractor as a TF Hub reusable SavedModel, which hub.KerasLayer loads.

    The bare interface (`__call__`, variables, trainable_variables, regularization_losses) on
    a plain trackable, as TF Hub's own modules have. `image_size` (None: any) is the height and
    width the saved functions accept; `output_key` names the serving signature's output.
    Batch norm stays in inference mode, unless `batch_norm_follows_training`: then a
    training=True call uses batch statistics, as in TF Hub's published modules (the tests'
    stand-in for them, tests/support/hub_module.py).
    """
    spec = tf.TensorSpec([None, *image_size, 3], tf.float32, name="images")

    # autograph=False: MobileNet has no data-dependent Python control flow to convert.
    @tf.function(autograph=False)
    def call(images, training=False):
        return feature_extractor(images, training=training and batch_norm_follows_training)

    # One concrete function per Python value of `training`, as in TF Hub's modules.
    call.get_concrete_function(spec, True)
    call.get_concrete_function(spec, False)

    @tf.function(input_signature=[spec], autograph=False)
    def serving_default(images):
        return {output_key: call(images, training=False)}

    module = tf.train.Checkpoint()
    module.__call__ = call
    module.variables = list(feature_extractor.variables)
    module.trainable_variables = list(feature_extractor.trainable_variables)
    # MobileNet has no weight regularizers; TF Hub's MobileNet modules' list is empty too.
    module.regularization_losses = []
    # "serving_default": the SavedModel default signature TF Hub modules have, not this
    # project's serving contract (models/features.py).
    tf.saved_model.save(module, export_dir, signatures={"serving_default": serving_default})


def _rebuild(module, size: tuple[int | None, int | None], export_dir: str) -> float:
    """Saves an any-size MobileNet V1 with a loaded fixed-size module's weights; returns the
    feature difference measured at the module's size."""
    variables = _loaded_variables(module)
    model = build_mobilenet_v1(mobilenet_v1_width(variables))
    copy_weights(variables, model)
    difference = max_feature_difference(module, model, (size[0] or 224, size[1] or 224))
    if difference > FEATURE_TOLERANCE:
        raise NotConvertibleError(
            f"the rebuilt network's features differ from the module's by {difference:.2g} "
            f"(more than {FEATURE_TOLERANCE})"
        )
    save_hub_module(model, export_dir)
    return difference


def make_resolution_free(module_path: str, export_dir: str) -> float | None:
    """Writes an any-size copy of the module at `module_path` to `export_dir`.

    Returns the measured feature difference at the module's own size, or None when the module
    already takes any size (then nothing is written: use it as it is). Raises
    NotConvertibleError for a fixed-size module that is not a MobileNet V1.
    """
    module = tf.saved_model.load(module_path)
    size = fixed_input_size(module)
    return None if size is None else _rebuild(module, size, export_dir)


def any_size_module(module_path: str, cache_dir: str) -> str:
    """The module itself if it takes any size, else its any-size copy under `cache_dir`.

    The copy is made once per module (keyed by models/bottleneck_cache.module_key), into
    a temporary folder renamed when complete, so an interrupted run never leaves half a
    module; without `cache_dir` it goes to a temporary folder of this process. A fixed-size
    module that is not a MobileNet V1 is returned as it is: the pipeline then feeds it its
    own size (pipeline/cli.py checks that).
    """
    import tempfile
    import uuid

    from models import bottleneck_cache

    if not cache_dir:
        cache_dir = tempfile.mkdtemp(prefix="tfx_poets_backbones_")
    target = os.path.join(cache_dir, f"{bottleneck_cache.module_key(module_path)}-any-size")
    if tf.io.gfile.exists(os.path.join(target, "saved_model.pb")):
        return target
    module = tf.saved_model.load(module_path)
    size = fixed_input_size(module)
    if size is None:
        return module_path
    temporary = os.path.join(cache_dir, f".tmp-{uuid.uuid4().hex}")
    try:
        difference = _rebuild(module, size, temporary)
    except NotConvertibleError:
        return module_path
    tf.io.gfile.makedirs(cache_dir)
    try:
        tf.io.gfile.rename(temporary, target)
    except tf.errors.OpError:  # another run made it first: theirs is the same
        tf.io.gfile.rmtree(temporary)
    logging.getLogger(__name__).info(
        "Trainer: made an any-size copy of %s in %s (its features within %.1g of the "
        "module's at the module's size)",
        module_path, target, difference or 0.0,
    )
    return target
