"""Tests of ImageExampleGen's driver: the folder fingerprint that TFX's cache and lineage use."""

import os
import shutil

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402

from components.image_example_gen import driver, scan  # noqa: E402
from components.image_example_gen.component import ImageExampleGen  # noqa: E402
from tests.support import make_image_folder  # noqa: E402
from tests.support.example_gen import image_example_gen  # noqa: E402
from tests.support.images import edit_in_place, make_bad_input_corpus  # noqa: E402


def _fingerprint(photos, class_names=("ant", "bee")):
    component = image_example_gen(photos, class_names)
    properties = driver.Driver(None).resolve_exec_properties(
        dict(component.exec_properties), None, None
    )
    assert (properties["span"], properties["version"]) == (0, None)
    return properties["input_fingerprint"]


@pytest.fixture
def photos(tmp_path):
    root = make_image_folder(tmp_path / "photos", {"ant": 3, "bee": 3})
    (root / "ant" / "a" / "b").mkdir(parents=True)
    shutil.copy(root / "ant" / "ant_0.jpg", root / "ant" / "a" / "b" / "deep.jpg")
    return root


def test_the_fingerprint_counts_the_photos_at_every_depth(photos):
    fingerprint = _fingerprint(photos)
    assert fingerprint.startswith("split:images,num_files:7,total_bytes:")
    assert scan.FINGERPRINT_MARK in fingerprint
    assert _fingerprint(photos) == fingerprint  # stable


@pytest.mark.parametrize("change", [
    "edit two levels down", "rename", "add nested", "remove", "make readable", "new class file",
])
def test_the_fingerprint_changes_with_any_photo_it_converts(photos, change):
    before = _fingerprint(photos)
    deep = photos / "ant" / "a" / "b" / "deep.jpg"
    if change == "edit two levels down":
        edit_in_place(deep)
    elif change == "rename":
        deep.rename(deep.with_name("renamed.jpg"))
    elif change == "add nested":
        shutil.copy(deep, photos / "bee" / "late.jpg")
    elif change == "remove":
        deep.unlink()
    elif change == "make readable":
        deep.chmod(0o600)
        before = _fingerprint(photos)
        deep.chmod(0o644)  # chmod keeps size and mtime: only the mode tells
    else:
        shutil.copy(deep, photos / "bee" / "b.png")
    assert _fingerprint(photos) != before, change


def test_the_fingerprint_ignores_what_is_not_converted(photos):
    before = _fingerprint(photos)
    (photos / "ant" / "notes.txt").write_text("changed often")
    (photos / "ant" / ".DS_Store").write_bytes(b"\0")
    os.symlink("missing.jpg", photos / "ant" / "a" / "broken.jpg")
    make_image_folder(photos, {"other": 2})  # a class this component does not convert
    assert _fingerprint(photos) == before


def test_the_driver_fingerprints_the_bad_input_corpus_as_the_executor_lists_it(tmp_path):
    # TFX's FileBasedDriver raised NotFoundError here, at the broken link (issue 19).
    photos = make_bad_input_corpus(tmp_path / "photos")
    class_names = scan.discover_classes(photos)
    listing = scan.list_photos(str(photos), class_names)
    assert _fingerprint(photos, class_names) == scan.folder_fingerprint(listing.photos)
    assert f"num_files:{len(listing.photos)}," in _fingerprint(photos, class_names)


def test_the_component_uses_this_driver():
    assert ImageExampleGen.DRIVER_CLASS is driver.Driver
