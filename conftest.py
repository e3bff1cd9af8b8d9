"""Shared pytest fixtures. TF_USE_LEGACY_KERAS must be set before any test imports TensorFlow."""

import os
import pathlib

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# The slowest test files, slowest first (from `--durations` of a CI run). With `--dist loadfile`
# a file runs on one worker; xdist by default starts the files with the most tests first, so
# test_faults.py (3 tests, about 10 minutes) started last and ran alone for its last minutes.
# Started first (and `--no-loadscope-reorder`), the two workers finish together.
SLOW_FILES_FIRST = (
    "tests/test_faults.py",
    "tests/test_runner_airflow.py",
    "tests/test_beam_runners.py",
    "tests/test_end_to_end.py",
    "models/trainer_module_test.py",
    "tests/test_bad_input.py",
)

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


def pytest_collection_modifyitems(session, config, items):
    """The files of SLOW_FILES_FIRST first, in its order; the rest, and each file's tests, as
    collected (the sort is stable)."""
    rank = {name: index for index, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
