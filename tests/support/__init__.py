"""Test fixtures that need no network: synthetic photo folders and a random TF Hub module."""

import os

# Set before anything here (or a test importing us first) pulls in TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tests.support.hub_module import make_random_hub_mobilenet  # noqa: E402
from tests.support.images import make_corrupt_file, make_image_folder  # noqa: E402

__all__ = ["make_corrupt_file", "make_image_folder", "make_random_hub_mobilenet"]
