"""Classify images with a model pushed by the tfx-poets pipeline.

The command-line counterpart of the "TensorFlow for Poets" codelab's
``label_image.py``: point it at a pushed model and some photos and it prints
the most likely labels for each photo.

The model is a SavedModel (its ``serving_default`` signature takes encoded photos) or one of
the TFLite files the Trainer writes beside it (``tflite/model_float.tflite`` or
``model_int8.tflite``, class names in the ``labels.txt`` beside them). A TFLite model takes
pixels, so for it the photos are preprocessed here with the Transform's and the Trainer's own
functions, exactly as in training.

The parts: tools/classifiers.py (the SavedModel), tools/tflite_classifier.py (the TFLite
models), tools/photos.py (gathering, reading and classifying the photos); here, the command
line and its output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.classifiers import UsageError, load_classifier, resolve_model_dir
from tools.photos import Prediction, Skipped, batches, classify_paths, collect_image_paths
from tools.tflite_classifier import (
    DEFAULT_TFLITE_THREADS,
    is_tflite_path,
    load_tflite_classifier,
    resolve_tflite_model,
)

# tools.classifiers, imported first, sets TF_USE_LEGACY_KERAS and TF_CPP_MIN_LOG_LEVEL before
# TensorFlow's first import.

PROG = "label_image"

EXIT_OK = 0
EXIT_SKIPPED = 1
EXIT_USAGE = 2


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
