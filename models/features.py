"""Every name that two parts of the project must agree on, defined once: the features of the
tf.Examples, the views of a photo, the serving signatures and their tensors, and the files the
Trainer writes beside the model. The converter, the Transform, the Trainer, the Evaluators'
config, the run report and label_image all read them from here."""

from __future__ import annotations

import os
import re

# Feature names of the tf.Examples written by ImageExampleGen.
IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
LABEL_NAME_KEY = "image/class/text"
FILENAME_KEY = "image/filename"
HEIGHT_KEY = "image/height"
WIDTH_KEY = "image/width"
# Feature names after Transform.
TRANSFORMED_IMAGE_KEY = "image_jpeg"
TRANSFORMED_LABEL_KEY = "label"

# The Transform's resize modes (models/transform_module.py): the short side to the chosen size
# (aspect ratio kept), or a square as retrain.py did.
RESIZE_MODES = ("short-side", "squash")
# The views of a photo (models/views.py): as resized, mirrored, or squashed to N x N.
PLAIN_VIEW, MIRROR_VIEW = "plain", "mirror"
SQUASH_VIEW_PATTERN = r"squash(\d+)"

# The exported SavedModel's signatures: encoded photos, and serialized raw tf.Examples (TFMA's).
SERVING_IMAGES_SIGNATURE = "serving_default"
SERVING_EXAMPLES_SIGNATURE = "serving_examples"
# Their tensors: encoded photos in; scores [N, classes] and class names [N, classes] out.
SERVING_INPUT_KEY = "images"
SERVING_EXAMPLES_INPUT_KEY = "examples"
SCORES_KEY = "scores"
CLASSES_KEY = "classes"

# Beside the SavedModel (and the TFLite models), the class names, one a line, in score order.
LABELS_FILE = "labels.txt"
# The TFLite models and how their pixels are prepared, in this folder of the serving model.
TFLITE_DIR = "tflite"
FLOAT_MODEL_FILE = "model_float.tflite"
INT8_MODEL_FILE = "model_int8.tflite"
PREPROCESSING_FILE = "preprocessing.json"
# The Trainer's report of its head's cross-validation, in its ModelRun folder.
HEAD_REPORT_FILE = "head.json"
# The Trainer's suspected label errors, in the Model artifact's folder (beside Format-Serving).
LABEL_ISSUES_FILE = "label_issues.json"

# retrain.py's rule for photos of one subject: a file name's part from "_nohash_" on is ignored,
# so that its photos share a split (ImageExampleGen) and a cross-validation fold (the head).
_NO_HASH_SUFFIX = re.compile(r"_nohash_.*$")


def subject_of(file_name: str) -> str:
    """The subject of a photo: its base name without any "_nohash_..." suffix."""
    return _NO_HASH_SUFFIX.sub("", os.path.basename(file_name))
