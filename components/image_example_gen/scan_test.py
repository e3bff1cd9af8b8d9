"""Tests of the folder walking: which entries of a class folder are photos, and the classes."""

import os
import re

import pytest

from components.image_example_gen import images, scan
from tests.support import images as support_images

_STOP_MESSAGES = {
    "empty_class": r"class folder .*/wasp has no images \(\.jpg, .*\); add photos to it or remove "
    r"it$",
    "unreadable_class": r"class folder .*/wasp has no images .* \(1 skipped, e\.g\. "
    r"wasp/only\.jpg: broken symbolic link to gone\.jpg\)$",
    "broken_class_link": r".*/wasp is a broken symbolic link to .*/photos_outside/unmounted_share; "
    r"mount or fix its target, or remove the link$",
    "class_link_back": r"class folder .*/loop is a symlink back to .*; remove the link$",
    "non_utf8_class": r"class folder .*/dossier\\xff has a name that is not valid UTF-8; rename "
    r"it$",
    "line_break_class": r"class folder .*/two\\nlines has a line break in its name; rename it$",
}


def test_discover_classes_sorted_and_ignores_hidden(tmp_path):
    for name in ("tulips", "daisy", ".hidden"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jpg").write_bytes(b"x")
    assert scan.discover_classes(str(tmp_path)) == ("daisy", "tulips")


def test_discover_classes_rejects_missing_empty_and_single(tmp_path):
    with pytest.raises(images.DataDirError, match="does not exist"):
        scan.discover_classes(str(tmp_path / "nope"))
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.png").write_bytes(b"x")
    with pytest.raises(images.DataDirError, match="at least two"):
        scan.discover_classes(str(tmp_path))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(images.DataDirError, match="empty has no images"):
        scan.discover_classes(str(tmp_path))


def test_list_class_images_filters_extensions_case_insensitively(tmp_path):
    (tmp_path / "c").mkdir()
    for name in ("a.JPG", "b.jpeg", "c.png", "d.gif", "e.bmp", "f.txt", ".g.jpg", "Thumbs.db"):
        (tmp_path / "c" / name).write_bytes(b"x")
    assert scan.list_class_images(str(tmp_path), "c") == [
        "c/a.JPG", "c/b.jpeg", "c/c.png", "c/d.gif", "c/e.bmp"
    ]


def test_list_class_images_accepts_webp_and_tiff(tmp_path):
    (tmp_path / "c").mkdir()
    for name in ("a.webp", "b.tif", "c.TIFF", "d.WebP"):
        (tmp_path / "c" / name).write_bytes(b"x")
    assert scan.list_class_images(str(tmp_path), "c") == [
        "c/a.webp", "c/b.tif", "c/c.TIFF", "c/d.WebP"
    ]


def test_scan_class_folder_recurses_and_lists_what_it_ignores(tmp_path):
    root = support_images.make_bad_input_corpus(tmp_path / "photos")
    listing = scan.scan_class_folder(str(root), "ant")
    assert "ant/nested/deeper/inner.jpg" in listing.images
    assert "ant/sous dossier é/fleur d'été ü.jpg" in listing.images
    assert {"ant/UPPER.JPG", "ant/UPPER2.JPEG", "ant/photo.webp", "ant/scan.TIFF"} <= set(
        listing.images
    )
    assert listing.images == sorted(listing.images)
    assert {"ant/outside/far.jpg", "ant/linked.jpg", "ant/album.jpg/inside.jpg"} <= set(
        listing.images
    )
    assert listing.ignored == [
        {"file": "ant/.DS_Store", "reason": "hidden file"},
        {"file": "ant/.hidden.jpg", "reason": "hidden file"},
        {"file": "ant/Thumbs.db", "reason": "not an image file name (.db)"},
        {"file": "ant/bee_link",
         "reason": "symbolic link to ../bee, inside the image folder; not followed, so no photo "
                   "is read twice"},
        {"file": "ant/fifo_notes", "reason": "not an image file name (no extension)"},
        {"file": "ant/nested/loop", "reason": "symlink loop (folder already read)"},
        {"file": "ant/nested/up", "reason": "symlink loop (to a folder that holds the link)"},
        {"file": "ant/notes.txt", "reason": "not an image file name (.txt)"},
    ]
    assert [item["file"] for item in listing.skipped] == [
        "ant/broken.jpg", "ant/caf\\xe9.jpg", "ant/dossier\\xff", "ant/pipe.jpg",
        "ant/selfloop.jpg", "ant/socket.png", "ant/zeros.jpg",
    ]


def test_discover_classes_counts_nested_images_and_rejects_a_class_linking_back(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "a" / "sub" / "x.jpg").write_bytes(b"x")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "y.png").write_bytes(b"x")
    assert scan.discover_classes(str(tmp_path)) == ("a", "b")
    os.symlink(str(tmp_path), tmp_path / "loop")
    with pytest.raises(images.DataDirError, match=r"loop is a symlink back to .*; remove the link"):
        scan.discover_classes(str(tmp_path))


@pytest.mark.parametrize("stop", support_images.STOP_CASES)
def test_discover_classes_stops_on_a_bad_class_folder_with_one_line(tmp_path, stop):
    root = support_images.make_bad_input_corpus(tmp_path / "photos", stop=stop)
    with pytest.raises(images.DataDirError) as stopped:
        scan.discover_classes(str(root))
    assert re.match(_STOP_MESSAGES[stop], str(stopped.value)), str(stopped.value)
    assert "\n" not in str(stopped.value)


def test_discover_classes_takes_the_bad_input_corpus_and_a_class_folder_link(tmp_path):
    root = support_images.make_bad_input_corpus(tmp_path / "photos")
    assert scan.discover_classes(str(root)) == ("ant", "bee", "cat")
    assert scan.list_class_images(str(root), "cat") == [f"cat/cat_{i}.jpg" for i in range(4)]


def test_a_folder_that_cannot_be_read_is_skipped_with_its_reason(tmp_path, monkeypatch):
    (tmp_path / "ant" / "private").mkdir(parents=True)
    (tmp_path / "ant" / "private" / "a.jpg").write_bytes(b"x")
    (tmp_path / "ant" / "b.jpg").write_bytes(b"x")
    real_scandir = os.scandir

    def denied(path="."):
        # chmod 000 does not stop root: refuse the listing as the kernel would for a user.
        if os.fspath(path).endswith("private"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    listing = scan.scan_class_folder(str(tmp_path), "ant")
    assert listing.images == ["ant/b.jpg"]
    assert listing.skipped == [
        {"file": "ant/private", "reason": "cannot read folder: Permission denied"}
    ]


def test_a_folder_tree_deeper_than_the_recursion_limit_is_listed(tmp_path):
    import inspect
    import sys

    nested = os.path.join(*["d"] * 200)
    (tmp_path / "ant" / nested).mkdir(parents=True)
    (tmp_path / "ant" / nested / "bottom.jpg").write_bytes(b"x")
    (tmp_path / "ant" / "top.jpg").write_bytes(b"x")
    # A limit the tree is deeper than, rather than a tree deeper than the real limit: rmtree,
    # which recurses, could not remove that from the temporary folder pytest shares.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 100)
    try:
        found = scan.list_class_images(str(tmp_path), "ant")
    finally:
        sys.setrecursionlimit(limit)
    assert found == [f"ant/{nested}/bottom.jpg", "ant/top.jpg"]
