"""Tests of the pure image-folder helpers."""

import io

import pytest
from PIL import Image

from components.image_example_gen import images


def _encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _decode(encoded: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(encoded))
    image.load()
    return image


def _retrain_py_which_set(file_name, validation_percentage, testing_percentage):
    """which_set() as written in TensorFlow's image_retraining/retrain.py, as the oracle."""
    import hashlib
    import os
    import re

    base_name = os.path.basename(file_name)
    hash_name = re.sub(r"_nohash_.*$", "", base_name)
    hash_name_hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage_hash = (int(hash_name_hashed, 16) % (2**27 - 1 + 1)) * (100.0 / (2**27 - 1))
    if percentage_hash < validation_percentage:
        return "validation"
    elif percentage_hash < (testing_percentage + validation_percentage):
        return "testing"
    return "training"


def test_which_split_agrees_with_retrain_py():
    names = {"validation": images.EVAL, "testing": images.TEST, "training": images.TRAIN}
    for i in range(500):
        file_name = f"roses/{i * 7919}_photo.jpg"
        assert images.which_split(file_name, 15, 5) == names[
            _retrain_py_which_set(file_name, 5, 15)
        ]


def test_which_split_matches_retrain_py_and_ignores_nohash_suffix():
    # retrain.py hashes the base name up to "_nohash_", so variants of one photo stay together.
    for i in range(50):
        assert images.which_split(f"a/photo{i}_nohash_1.jpg", 10, 10) == images.which_split(
            f"b/photo{i}_nohash_2.jpg", 10, 10
        )
    splits = [images.which_split(f"c/img{i}.jpg", 10, 10) for i in range(2000)]
    assert 0.07 < splits.count(images.EVAL) / 2000 < 0.13
    assert 0.07 < splits.count(images.TEST) / 2000 < 0.13


def test_which_split_keeps_old_photos_in_place_when_photos_are_added():
    # The split depends on the file name alone, never on which other files exist.
    old = {f"img{i}.jpg": images.which_split(f"img{i}.jpg", 10, 10) for i in range(100)}
    assert images.which_split("img5.jpg", 10, 10) == old["img5.jpg"]
    assert len(set(old.values())) == 3


def test_which_split_sends_everything_to_train_with_zero_percentages():
    assert {images.which_split(f"x{i}.jpg", 0, 0) for i in range(50)} == {images.TRAIN}


def test_discover_classes_sorted_and_ignores_hidden(tmp_path):
    for name in ("tulips", "daisy", ".hidden"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jpg").write_bytes(b"x")
    assert images.discover_classes(str(tmp_path)) == ("daisy", "tulips")


def test_discover_classes_rejects_missing_empty_and_single(tmp_path):
    with pytest.raises(images.DataDirError, match="does not exist"):
        images.discover_classes(str(tmp_path / "nope"))
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.png").write_bytes(b"x")
    with pytest.raises(images.DataDirError, match="at least two"):
        images.discover_classes(str(tmp_path))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(images.DataDirError, match="empty has no images"):
        images.discover_classes(str(tmp_path))


def test_list_class_images_filters_extensions_case_insensitively(tmp_path):
    (tmp_path / "c").mkdir()
    for name in ("a.JPG", "b.jpeg", "c.png", "d.gif", "e.bmp", "f.txt", ".g.jpg", "Thumbs.db"):
        (tmp_path / "c" / name).write_bytes(b"x")
    assert images.list_class_images(str(tmp_path), "c") == [
        "c/a.JPG", "c/b.jpeg", "c/c.png", "c/d.gif", "c/e.bmp"
    ]


def test_normalize_keeps_rgb_jpeg_bytes():
    raw = _encode(Image.new("RGB", (40, 30), (200, 10, 10)), "JPEG")
    result = images.normalize_image(raw)
    assert result.encoded == raw
    assert (result.height, result.width) == (30, 40)


@pytest.mark.parametrize(
    "image,image_format",
    [
        (Image.new("L", (20, 10), 128), "JPEG"),
        (Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG"),
        (Image.new("RGBA", (20, 10), (255, 0, 0, 128)), "PNG"),
        (Image.new("P", (20, 10), 3), "GIF"),
        (Image.new("RGB", (20, 10), (0, 0, 255)), "BMP"),
    ],
)
def test_normalize_turns_other_modes_and_formats_into_rgb_jpeg(image, image_format):
    result = images.normalize_image(_encode(image, image_format))
    decoded = _decode(result.encoded)
    assert decoded.format == "JPEG" and decoded.mode == "RGB"
    assert decoded.size == (20, 10)
    assert result.source_format == image_format


def test_normalize_applies_exif_rotation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    raw = _encode(Image.new("RGB", (40, 20), (0, 200, 0)), "JPEG", exif=exif)
    decoded = _decode(images.normalize_image(raw).encoded)
    assert decoded.size == (20, 40)


@pytest.mark.parametrize(
    "raw,reason",
    [
        (b"", "empty file"),
        (b"\x00\x01garbage" * 20, "not a decodable JPEG/PNG/GIF/BMP image"),
    ],
)
def test_normalize_rejects_unreadable_bytes(raw, reason):
    with pytest.raises(images.UnreadableImageError, match=reason):
        images.normalize_image(raw)


def test_normalize_rejects_truncated_jpeg():
    raw = _encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(images.UnreadableImageError, match="corrupt or truncated"):
        images.normalize_image(raw[: len(raw) // 2])
