"""The SavedModel classifier of `label_image`: finding the pushed model's newest complete
version and loading its `serving_default` signature (encoded photos in; scores and class names
out, as models/features.py names them), checked against that contract."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

from models import features

# Both must be set before TensorFlow is first imported: the pipeline's models are
# tf_keras models, and TensorFlow's C++ logging would bury the output. Level 3, not 2:
# TF 2.16 logs harmless "Unable to register cuDNN/cuFFT/cuBLAS factory" lines at ERROR
# level on import wherever the CUDA wheels are installed; real failures still surface
# as Python exceptions, which this command reports.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Takes a batch of encoded image bytes; returns (scores [N, C], class names [C]).
Classifier = Callable[[list[bytes]], tuple[list[list[float]], list[str]]]


class UsageError(Exception):
    """A problem with the command line (bad path, unusable model); exit code 2."""


def has_saved_model(directory: Path) -> bool:
    return (directory / "saved_model.pb").is_file()


def resolve_model_dir(model_path: str | os.PathLike) -> Path:
    """The SavedModel directory to load from ``--model``.

    ``model_path`` is either a SavedModel directory or a Pusher base directory whose
    numbered subdirectories are model versions; the highest version holding a
    ``saved_model.pb`` wins (a half-written newer push is passed over).
    """
    path = Path(model_path)
    if not path.exists():
        raise UsageError(f"model path does not exist: {model_path}")
    if not path.is_dir():
        raise UsageError(f"model path is not a directory: {model_path}")
    if has_saved_model(path):
        return path
    versions = [
        child
        for child in path.iterdir()
        if child.is_dir() and child.name.isdigit() and has_saved_model(child)
    ]
    if not versions:
        raise UsageError(
            f"no SavedModel in {model_path}: expected saved_model.pb there "
            "or in a numbered version subdirectory"
        )
    return max(versions, key=lambda child: int(child.name))


def load_classifier(model_dir: Path) -> Classifier:
    """Load the SavedModel's serving signature and check it matches the pusher's contract."""
    # google.api_core, imported by TensorFlow, warns on every start about Python 3.10.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core")
    import tensorflow as tf  # Deferred so that `-h` and path errors answer instantly.

    tf.get_logger().setLevel("ERROR")
    try:
        loaded = tf.saved_model.load(str(model_dir))
    except Exception as error:  # TF raises many types here (OSError, ValueError, proto errors).
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UsageError(f"cannot load SavedModel from {model_dir}: {first_line}") from None

    signature = loaded.signatures.get(features.SERVING_IMAGES_SIGNATURE)
    expected = (
        f"a '{features.SERVING_IMAGES_SIGNATURE}' signature taking string "
        f"'{features.SERVING_INPUT_KEY}' "
        f"and returning '{features.SCORES_KEY}' and '{features.CLASSES_KEY}'"
    )
    if signature is None:
        raise UsageError(f"model {model_dir} has no {expected}")
    input_specs = signature.structured_input_signature[1]
    output_specs = signature.structured_outputs
    input_spec = input_specs.get(features.SERVING_INPUT_KEY)
    if (
        input_spec is None
        or input_spec.dtype != tf.string
        or features.SCORES_KEY not in output_specs
        or features.CLASSES_KEY not in output_specs
    ):
        raise UsageError(f"model {model_dir} does not have {expected}")

    def classify(encoded_images: list[bytes]) -> tuple[list[list[float]], list[str]]:
        images = tf.constant(encoded_images, dtype=tf.string)
        outputs = signature(**{features.SERVING_INPUT_KEY: images})
        scores = outputs[features.SCORES_KEY].numpy().tolist()
        # Every row of `classes` is the same list of names, so the first row suffices.
        classes = [name.decode("utf-8") for name in outputs[features.CLASSES_KEY].numpy()[0]]
        return scores, classes

    return classify
