"""The TFLite classifier of `label_image`: a .tflite file the Trainer wrote beside the
SavedModel (tflite/model_float.tflite or model_int8.tflite, class names in the labels.txt and
preprocessing settings in the preprocessing.json beside it). A TFLite model takes pixels, so
the photos are preprocessed here with the Transform's and the Trainer's own functions, exactly
as in training; quantized inputs and outputs are converted with their scale and zero point."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

from models import features
from tools.classifiers import Classifier, UsageError

TFLITE_SUFFIX = ".tflite"
TFLITE_INPUT_DTYPES = ("float32", "int8", "uint8")
# One interpreter thread unless asked: with more, every op waits for all of its threads, and on
# a machine where another process holds a core one photo took up to 9x longer than with one
# thread (BENCHMARKS.md); a batch with one thread was as fast as with two there.
DEFAULT_TFLITE_THREADS = 1


def is_tflite_path(model_path: str | os.PathLike) -> bool:
    return Path(model_path).suffix.lower() == TFLITE_SUFFIX


def resolve_tflite_model(model_path: str | os.PathLike) -> Path:
    path = Path(model_path)
    if not path.exists():
        raise UsageError(f"model path does not exist: {model_path}")
    if not path.is_file():
        raise UsageError(f"TFLite model is not a file: {model_path}")
    return path


def read_tflite_labels(model_path: Path) -> list[str]:
    """The class names in the labels.txt beside a .tflite file, one a line, in score order."""
    labels_path = model_path.parent / features.LABELS_FILE
    if not labels_path.is_file():
        raise UsageError(
            f"no {features.LABELS_FILE} beside {model_path}: a TFLite model needs its class "
            f"names, one a line, in {labels_path}"
        )
    try:
        names = [line.strip() for line in labels_path.read_text("utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {labels_path}: {error}") from None
    names = [name for name in names if name]
    if not names:
        raise UsageError(f"{labels_path} lists no class names")
    return names


def quantize(values, scale: float, zero_point: int, dtype):
    """Floats to a quantized tensor's integers, as TFLite defines them: value / scale + zero
    point, rounded and saturated to the integer type."""
    import numpy as np

    limits = np.iinfo(dtype)
    return np.clip(np.round(values / scale) + zero_point, limits.min, limits.max).astype(dtype)


def dequantize(values, scale: float, zero_point: int):
    import numpy as np

    return (np.asarray(values, dtype=np.float32) - zero_point) * np.float32(scale)


@contextlib.contextmanager
def native_stderr_silenced():
    """Discards what C++ code writes straight to file descriptor 2 meanwhile.

    TFLite's runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." there on
    the first allocation, which no logging setting reaches; its real errors still arrive as
    Python exceptions.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def training_pixels_function(image_size: int, resize: str = "squash"):
    """Encoded photos [N] -> float32 pixels [N, h, w, 3] in [0, 1], as in training.

    The Transform's resize_to_jpeg (decode, resize, re-encode as the Transform's JPEG), then the
    Trainer's decode_transformed_image: the same functions, so a TFLite model sees exactly the
    pixels the SavedModel's signature (which runs the Transform graph) gives its network.
    One tf.function with a fixed signature: traced once, not on every call. With `resize`
    short-side, photos keep their own shapes: pass one photo at a time.
    """
    import tensorflow as tf

    from models import transform_module

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def pixels(encoded_images):
        resized = transform_module.resize_to_jpeg(encoded_images, image_size, resize)
        return transform_module.decode_transformed_images(resized, image_size, resize)

    return pixels


def read_tflite_preprocessing(model_path: Path, input_size: int) -> tuple[int, str]:
    """(image size, resize mode) from the preprocessing.json beside a .tflite; a model without
    one (older exports) takes squashed photos at its input size."""
    path = model_path.parent / features.PREPROCESSING_FILE
    if not path.is_file():
        return input_size, "squash"
    try:
        settings = json.loads(path.read_text())
        return int(settings["image_size"]), str(settings["resize"])
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{path} is not a tfx-poets preprocessing file ({error})") from None


class TfliteScorer:
    """Runs a TFLite classifier on float pixels, whatever its input and output types.

    A quantized (int8/uint8) input or output is converted with its own scale and zero point.
    The input tensor is resized only when the input's shape changes, since every resize means
    allocating the tensors again.
    """

    def __init__(self, interpreter):
        self.interpreter = interpreter
        (self.input,) = interpreter.get_input_details()
        (self.output,) = interpreter.get_output_details()
        self.shape = None

    @property
    def image_size(self) -> int:
        """The input's height, or 0 when the model takes any height and width."""
        signature = self.input.get("shape_signature", self.input["shape"])
        return 0 if signature[1] < 0 else int(self.input["shape"][1])

    @property
    def num_classes(self) -> int:
        return int(self.output["shape"][-1])

    def __call__(self, pixels):
        """Scores [N, classes] float32 of pixels [N, h, w, 3] float32 in [0, 1]."""
        if pixels.shape != self.shape:
            self.interpreter.resize_tensor_input(self.input["index"], list(pixels.shape))
            with native_stderr_silenced():
                self.interpreter.allocate_tensors()
            self.shape = pixels.shape
        values = pixels
        if self.input["dtype"].__name__ != "float32":
            scale, zero_point = self.input["quantization"]
            values = quantize(pixels, scale, zero_point, self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], values)
        self.interpreter.invoke()
        scores = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"].__name__ != "float32":
            scores = dequantize(scores, *self.output["quantization"])
        return scores


def check_tflite_signature(scorer: TfliteScorer, model_path: Path, num_labels: int) -> None:
    """One image input [1, size, size, 3] (or [1, any, any, 3]) and one scores output
    [1, classes], as exported."""
    source, target = scorer.input, scorer.output
    shape, dtype = list(source.get("shape_signature", source["shape"])), source["dtype"].__name__
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3 or dtype not in TFLITE_INPUT_DTYPES:
        raise UsageError(
            f"model {model_path} does not take images [batch, size, size, 3] of "
            f"{'/'.join(TFLITE_INPUT_DTYPES)}: its input is {dtype} {shape}"
        )
    if dtype != "float32" and source["quantization"][0] == 0:
        raise UsageError(f"model {model_path} has a {dtype} input without a quantization scale")
    if len(target["shape"]) != 2 or scorer.num_classes != num_labels:
        raise UsageError(
            f"model {model_path} returns {list(target['shape'])} scores but "
            f"{model_path.parent / features.LABELS_FILE} lists {num_labels} class names"
        )


def load_tflite_classifier(model_path: Path, num_threads: int | None = None) -> Classifier:
    """A classifier of encoded photos from a .tflite file and the labels.txt beside it.

    ``num_threads``: the interpreter's threads (see DEFAULT_TFLITE_THREADS).
    """
    class_names = read_tflite_labels(model_path)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core")
    import numpy as np
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    try:
        interpreter = tf.lite.Interpreter(
            model_path=str(model_path), num_threads=num_threads or DEFAULT_TFLITE_THREADS
        )
    except (ValueError, RuntimeError) as error:  # Not a flatbuffer, or a broken one.
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UsageError(f"cannot load TFLite model from {model_path}: {first_line}") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise UsageError(
            f"model {model_path} has {len(inputs)} inputs and {len(outputs)} outputs, "
            "not one image input and one scores output"
        )
    scorer = TfliteScorer(interpreter)
    check_tflite_signature(scorer, model_path, len(class_names))
    image_size, resize = read_tflite_preprocessing(model_path, scorer.image_size)
    try:
        scorer(np.zeros([1, image_size, image_size, 3], np.float32))
    except (ValueError, RuntimeError) as error:  # Parses, but cannot be allocated or run.
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UsageError(f"cannot run TFLite model {model_path}: {first_line}") from None
    pixels = training_pixels_function(image_size, resize)
    # Photos with their aspect ratio kept have shapes of their own: one at a time.
    per_call = len if scorer.image_size else (lambda _: 1)

    def classify(encoded_images: list[bytes]) -> tuple[list[list[float]], list[str]]:
        scores = []
        step = per_call(encoded_images)
        for start in range(0, len(encoded_images), step):
            chunk = encoded_images[start:start + step]
            batch = pixels(tf.constant(chunk, dtype=tf.string)).numpy()
            try:
                scores.extend(scorer(batch).tolist())
            except RuntimeError as error:
                # As a TensorFlow error, so classify_paths reports it like a SavedModel's.
                raise tf.errors.InternalError(None, None, f"TFLite: {error}") from None
        return scores, class_names

    return classify
