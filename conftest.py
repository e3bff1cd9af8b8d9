"""Shared pytest fixtures. TF_USE_LEGACY_KERAS must be set before any test imports TensorFlow."""

import os
import pathlib

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

SHARED_ASSETS = pathlib.Path(__file__).resolve().parent.parent / "shared" / "assets"


def shared_asset(name: str) -> str:
    """A path under ../shared/assets; fails (never skips) when the folder is missing."""
    path = SHARED_ASSETS / name
    if not path.exists():
        pytest.fail(
            f"this test needs the shared asset {path}: check out the project beside shared/ "
            "(see ../shared/assets/README.md)",
            pytrace=False,
        )
    return str(path)


@pytest.fixture(scope="session")
def flower_photos() -> str:
    return shared_asset("flower_photos")


@pytest.fixture(scope="session")
def shared_mobilenet() -> str:
    return shared_asset("mobilenet_v1_100_224_feature_vector")
