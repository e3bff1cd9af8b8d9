"""Tests of the one-photo helpers: its split, reading and decoding it."""

import io
import os
import time

import numpy as np
import pytest
from PIL import Image

from components.image_example_gen import images, scan
from tests.support import images as support_images


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
        (b"\x00\x01garbage" * 20, "not a decodable JPEG/PNG/GIF/BMP/WebP/TIFF image"),
    ],
)
def test_normalize_rejects_unreadable_bytes(raw, reason):
    with pytest.raises(images.UnreadableImageError, match=reason):
        images.normalize_image(raw)


def test_normalize_rejects_truncated_jpeg():
    raw = _encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(images.UnreadableImageError, match="corrupt or truncated"):
        images.normalize_image(raw[: len(raw) // 2])


# --- bad input (docs/bad_input.md) -----------------------------------------------------------


@pytest.mark.parametrize("image_format", ["WEBP", "TIFF"])
def test_normalize_converts_webp_and_tiff(image_format):
    raw = _encode(Image.new("RGB", (20, 10), (0, 0, 255)), image_format)
    result = images.normalize_image(raw)
    decoded = _decode(result.encoded)
    assert decoded.format == "JPEG" and decoded.size == (20, 10)
    assert result.source_format == image_format


def test_normalize_decides_by_content_not_extension():
    # normalize_image never sees the name: a PNG saved as photo.jpg converts like any PNG.
    result = images.normalize_image(_encode(Image.new("RGB", (20, 10), (9, 90, 9)), "PNG"))
    assert result.source_format == "PNG" and result.encoded[:2] == b"\xff\xd8"


def test_normalize_scales_16_bit_png_to_8_bit_instead_of_clipping_to_white():
    raw = support_images.sixteen_bit_png(100 * 257)
    assert Image.open(io.BytesIO(raw)).mode == "I;16"
    pixels = np.asarray(_decode(images.normalize_image(raw).encoded))
    assert pixels.shape == (16, 32, 3)
    assert np.abs(pixels.astype(int) - 100).max() <= 2
    # The full 16-bit range maps to the full 8-bit range.
    for value, expected in ((0, 0), (65535, 255)):
        raw = support_images.sixteen_bit_png(value)
        pixels = np.asarray(_decode(images.normalize_image(raw).encoded))
        assert np.abs(pixels.astype(int) - expected).max() <= 2


def test_normalize_keeps_the_first_frame_of_an_animated_gif():
    raw = support_images.animated_gif(((255, 0, 0), (0, 0, 255)))
    pixels = np.asarray(_decode(images.normalize_image(raw).encoded)).astype(int)
    assert np.abs(pixels - [255, 0, 0]).max() <= 8


def test_normalize_puts_alpha_over_white_and_grayscale_to_rgb():
    raw = _encode(Image.new("RGBA", (20, 10), (255, 0, 0, 0)), "PNG")  # fully transparent
    assert np.asarray(_decode(images.normalize_image(raw).encoded)).min() >= 250
    raw = _encode(Image.new("L", (20, 10), 90), "JPEG")
    gray = np.asarray(_decode(images.normalize_image(raw).encoded))
    assert gray.shape == (10, 20, 3) and np.abs(gray.astype(int) - 90).max() <= 2


@pytest.mark.parametrize("size", [(20000, 20000), (7000, 7000)])
def test_normalize_rejects_decompression_bombs_quickly_without_decoding(size):
    raw = support_images.png_header_only(*size)
    assert len(raw) < 100
    started = time.perf_counter()
    with pytest.raises(images.UnreadableImageError, match=r"too large: \d+ pixels is over the"):
        images.normalize_image(raw)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("size", [(1, 1), (7, 200)])
def test_normalize_rejects_images_too_small_to_learn_from(size):
    raw = _encode(Image.new("RGB", size, (1, 2, 3)), "PNG")
    with pytest.raises(images.UnreadableImageError, match=rf"too small \({size[0]}x{size[1]}\)"):
        images.normalize_image(raw)
    images.normalize_image(_encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG"))  # 8x8 is fine


def test_read_image_file_reports_unreadable_files(tmp_path, monkeypatch):
    path = tmp_path / "locked.jpg"
    path.write_bytes(b"x")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("builtins.open", denied)  # chmod 000 does not stop root
    with pytest.raises(images.UnreadableImageError, match="cannot read file: Permission denied"):
        images.read_image_file(str(path))


def test_read_image_file_reports_a_symlink_to_itself(tmp_path):
    os.symlink("self.jpg", tmp_path / "self.jpg")
    with pytest.raises(images.UnreadableImageError, match="cannot read file: Too many levels"):
        images.read_image_file(str(tmp_path / "self.jpg"))


def test_which_split_uses_the_file_name_only_for_nested_files():
    nested = images.which_split("ant/a/b/photo.jpg", 10, 10)
    assert nested == images.which_split("photo.jpg", 10, 10)


# --- entries that are not plain files (docs/bad_input.md) -------------------------------------


def _returns_within(seconds, function, *args):
    """function(*args)'s exception, failing the test if it blocks (a FIFO opened for reading)."""
    import threading

    outcome = []

    def call():
        try:
            function(*args)
        except Exception as error:  # noqa: BLE001 - handed to the test to check
            outcome.append(error)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function.__name__} blocked"
    return outcome[0] if outcome else None


def test_read_image_file_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    error = _returns_within(5, images.read_image_file, str(tmp_path / "pipe.jpg"))
    assert isinstance(error, images.UnreadableImageError)
    assert str(error) == "a named pipe (FIFO), not a regular file; never opened"


def test_read_image_file_refuses_a_file_changed_or_gone_since_it_was_listed(tmp_path):
    path = tmp_path / "ant" / "a.jpg"
    path.parent.mkdir()
    path.write_bytes(b"x" * 10)
    (listed,) = scan.scan_class_folder(str(tmp_path), "ant").photos
    assert images.read_image_file(str(path), listed) == b"x" * 10
    os.utime(path, ns=(listed.mtime_ns, listed.mtime_ns + 1))  # same size, edited
    with pytest.raises(images.UnreadableImageError, match="changed after the folder was listed"):
        images.read_image_file(str(path), listed)
    path.unlink()
    with pytest.raises(images.UnreadableImageError, match="disappeared after the folder was"):
        images.read_image_file(str(path), listed)


