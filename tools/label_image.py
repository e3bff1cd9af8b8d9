"""Classify images with a model pushed by the tfx-poets pipeline.

The command-line counterpart of the "TensorFlow for Poets" codelab's
``label_image.py``: point it at a pushed model and some photos and it prints
the most likely labels for each photo.

The model is a SavedModel (its ``serving_default`` signature takes encoded photos) or one of
the TFLite files the Trainer writes beside it (``tflite/model_float.tflite`` or
``model_int8.tflite``, class names in the ``labels.txt`` beside them). A TFLite model takes
pixels, so for it the photos are preprocessed here with the Transform's and the Trainer's own
functions, exactly as in training.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from components.image_example_gen.images import NOT_AN_IMAGE, is_image_file

# Both must be set before TensorFlow is first imported: the pipeline's models are
# tf_keras models, and TensorFlow's C++ logging would bury the output. Level 3, not 2:
# TF 2.16 logs harmless "Unable to register cuDNN/cuFFT/cuBLAS factory" lines at ERROR
# level on import wherever the CUDA wheels are installed; real failures still surface
# as Python exceptions, which this command reports.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PROG = "label_image"
SIGNATURE_KEY = "serving_default"
INPUT_KEY = "images"
SCORES_KEY = "scores"
CLASSES_KEY = "classes"
UNDECODABLE_REASON = NOT_AN_IMAGE

EXIT_OK = 0
EXIT_SKIPPED = 1
EXIT_USAGE = 2

TFLITE_SUFFIX = ".tflite"
TFLITE_LABELS_FILE = "labels.txt"  # beside the .tflite file, as the Trainer writes it
TFLITE_INPUT_DTYPES = ("float32", "int8", "uint8")
# One interpreter thread unless asked: with more, every op waits for all of its threads, and on
# a machine where another process holds a core one photo took up to 9x longer than with one
# thread (BENCHMARKS.md); a batch with one thread was as fast as with two there.
DEFAULT_TFLITE_THREADS = 1

# Takes a batch of encoded image bytes; returns (scores [N, C], class names [C]).
Classifier = Callable[[list[bytes]], tuple[list[list[float]], list[str]]]


class UsageError(Exception):
    """A problem with the command line (bad path, unusable model); exit code 2."""


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


# --- pure helpers -------------------------------------------------------------------


def find_images_in_folder(folder: Path) -> list[Path]:
    """All image files below ``folder``, recursively, sorted, hidden files and folders skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        # Pruning in place stops os.walk descending into hidden folders (.git, checkpoints).
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, name) for name in filenames if is_image_file(name))
    return sorted(found)


def collect_image_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into the list of images to classify.

    A file named explicitly is taken whatever its extension; folders contribute only
    files with an image extension. Order follows the arguments, duplicates are dropped.
    Raises UsageError for a path that does not exist.
    """
    collected: dict[Path, None] = {}
    for raw_path in paths:
        path = Path(raw_path)
        if path.is_dir():
            collected.update(dict.fromkeys(find_images_in_folder(path)))
        elif path.is_file():
            collected[path] = None
        else:
            raise UsageError(f"image path does not exist: {raw_path}")
    return list(collected)


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
    labels_path = model_path.parent / TFLITE_LABELS_FILE
    if not labels_path.is_file():
        raise UsageError(
            f"no {TFLITE_LABELS_FILE} beside {model_path}: a TFLite model needs its class "
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


def top_k_predictions(scores: Sequence[float], classes: Sequence[str], k: int) -> list[Prediction]:
    """The ``k`` best (label, score) pairs, best first; ``k`` is capped at the class count."""
    ranked = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    return [Prediction(classes[i], float(scores[i])) for i in ranked[:k]]


def format_text(path: Path | str, predictions: Sequence[Prediction]) -> str:
    """The codelab's layout: the image path, then one ``label (score=0.12345)`` per line."""
    lines = [str(path)]
    lines.extend(f"  {p.label} (score={p.score:.5f})" for p in predictions)
    return "\n".join(lines)


def format_json(path: Path | str, predictions: Sequence[Prediction]) -> str:
    """One JSON object on one line: path, top-1 label and score, and the full top-k."""
    best = predictions[0]
    record = {
        "path": str(path),
        "label": best.label,
        "score": best.score,
        "top_k": [{"label": p.label, "score": p.score} for p in predictions],
    }
    return json.dumps(record)


def skipped_message(skipped: Skipped) -> str:
    return f"{PROG}: skipped {skipped.path}: {skipped.reason}"


def batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- TensorFlow ---------------------------------------------------------------------


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

    signature = loaded.signatures.get(SIGNATURE_KEY)
    expected = (
        f"a '{SIGNATURE_KEY}' signature taking string '{INPUT_KEY}' "
        f"and returning '{SCORES_KEY}' and '{CLASSES_KEY}'"
    )
    if signature is None:
        raise UsageError(f"model {model_dir} has no {expected}")
    input_specs = signature.structured_input_signature[1]
    output_specs = signature.structured_outputs
    input_spec = input_specs.get(INPUT_KEY)
    if (
        input_spec is None
        or input_spec.dtype != tf.string
        or SCORES_KEY not in output_specs
        or CLASSES_KEY not in output_specs
    ):
        raise UsageError(f"model {model_dir} does not have {expected}")

    def classify(encoded_images: list[bytes]) -> tuple[list[list[float]], list[str]]:
        outputs = signature(**{INPUT_KEY: tf.constant(encoded_images, dtype=tf.string)})
        scores = outputs[SCORES_KEY].numpy().tolist()
        # Every row of `classes` is the same list of names, so the first row suffices.
        classes = [name.decode("utf-8") for name in outputs[CLASSES_KEY].numpy()[0]]
        return scores, classes

    return classify


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

    The Transform's resize_to_jpeg (decode, resize, re-encode as a quality-95 JPEG), then the
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
    import json

    path = model_path.parent / "preprocessing.json"
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
            f"{model_path.parent / TFLITE_LABELS_FILE} lists {num_labels} class names"
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


def classify_paths(
    classify: Classifier, paths: Sequence[Path], top_k: int
) -> Iterator[tuple[Path, list[Prediction]] | Skipped]:
    """Yield (path, predictions) for each classified path and a Skipped for each other.

    Runs the whole batch at once for speed; if it fails, retries one file at a time so
    that only the bad file is skipped.
    """
    import tensorflow as tf

    from components.image_example_gen.images import (
        UnreadableImageError,
        normalize_image,
        read_image_file,
    )

    readable: list[tuple[Path, bytes]] = []
    for path in paths:
        try:
            # The same reading and decoding as the pipeline's ImageExampleGen: EXIF rotation
            # applied, CMYK, grayscale and alpha made RGB, which TensorFlow's decoders do not do.
            readable.append((path, normalize_image(read_image_file(str(path))).encoded))
        except UnreadableImageError as error:
            yield Skipped(path, str(error))
    if not readable:
        return

    def run(group: list[tuple[Path, bytes]]) -> list[tuple[Path, list[Prediction]]]:
        scores, classes = classify([data for _, data in group])
        return [
            (path, top_k_predictions(row, classes, top_k))
            for (path, _), row in zip(group, scores, strict=True)
        ]

    if len(readable) > 1:
        try:
            results = run(readable)
        except tf.errors.OpError:
            pass  # Some file in the batch is bad; the per-file pass below finds which.
        else:
            yield from results
            return

    for single in readable:
        try:
            yield from run([single])
        except tf.errors.InvalidArgumentError:
            yield Skipped(single[0], UNDECODABLE_REASON)
        except tf.errors.OpError as error:
            first_line = (error.message.strip().splitlines() or ["unknown error"])[0]
            yield Skipped(single[0], f"model failed: {first_line}")


# --- command line -------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Classify images with a model pushed by the tfx-poets pipeline and print "
            "the most likely labels for each image."
        ),
        epilog=(
            "Exit status: 0 if every image was classified, 1 if any image was skipped "
            "(unreadable or not a decodable image), 2 for usage errors (bad flag, "
            "missing path, unusable model, no images found)."
        ),
    )
    parser.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help=(
            "image file or folder; folders are searched recursively for "
            ".jpg/.jpeg/.png/.gif/.bmp/.webp/.tif/.tiff files (any case), skipping hidden files"
        ),
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="PATH",
        help=(
            "pushed model base directory (the highest numbered version subdirectory "
            "holding a saved_model.pb is used), a SavedModel directory itself, or a .tflite "
            "file with its class names in the labels.txt beside it (as in a pushed version's "
            "tflite/ folder); required"
        ),
    )
    parser.add_argument(
        "--top-k",
        type=positive_int,
        default=5,
        metavar="N",
        help=(
            "number of labels to show per image, capped at the number of classes "
            "(default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        metavar="N",
        help="images sent to the model per call (default: %(default)s)",
    )
    parser.add_argument(
        "--num-threads",
        type=positive_int,
        metavar="N",
        help=(
            "threads of the TFLite interpreter (.tflite models only; default: "
            f"{DEFAULT_TFLITE_THREADS}: more are faster on an idle machine, much slower when "
            "other processes keep the CPUs busy)"
        ),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help=(
            "print one JSON object per line per image: "
            '{"path", "label", "score", "top_k": [{"label", "score"}, ...]} '
            "instead of the default text lines"
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # Exits with status 2 on a bad command line.
    try:
        image_paths = collect_image_paths(args.images)
        if not image_paths:
            raise UsageError("no images found in: " + ", ".join(args.images))
        if is_tflite_path(args.model):
            classify = load_tflite_classifier(resolve_tflite_model(args.model), args.num_threads)
        else:
            classify = load_classifier(resolve_model_dir(args.model))
    except UsageError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE

    formatter = format_json if args.json else format_text
    any_skipped = False
    try:
        for batch in batches(image_paths, args.batch_size):
            for result in classify_paths(classify, batch, args.top_k):
                if isinstance(result, Skipped):
                    any_skipped = True
                    print(skipped_message(result), file=sys.stderr)
                else:
                    print(formatter(*result))
            sys.stdout.flush()  # Stream results batch by batch on a long run.
    except BrokenPipeError:
        # Output piped into e.g. `head`, which has stopped reading: end quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_SKIPPED if any_skipped else EXIT_OK
