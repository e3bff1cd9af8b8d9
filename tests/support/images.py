"""Synthetic labelled photo folders for tests: one sub-folder per class."""

from __future__ import annotations

import colorsys
import os
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

EXTENSION_BY_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp"}

_SHAPES = ("ellipse", "rectangle", "triangle", "cross")


def make_image_folder(
    root: str | os.PathLike,
    class_counts: Mapping[str, int],
    size: tuple[int, int] = (64, 48),
    image_format: str = "JPEG",
    seed: int = 0,
) -> Path:
    """Writes ``root/<class>/<class>_<i>.<ext>`` images and returns ``root``.

    ``size`` is Pillow's ``(width, height)``. Each class (in sorted-name order) gets its own
    hue and shape, so classes are easy to tell apart; every image gets its own
    position/scale jitter and pixel noise so no two are identical. Same seed, same bytes.
    """
    image_format = image_format.upper()
    if image_format not in EXTENSION_BY_FORMAT:
        raise ValueError(
            f"image_format must be one of {sorted(EXTENSION_BY_FORMAT)}, got {image_format!r}"
        )
    extension = EXTENSION_BY_FORMAT[image_format]
    root = Path(root)
    class_names = sorted(class_counts)
    for class_index, class_name in enumerate(class_names):
        class_dir = root / class_name
        class_dir.mkdir(parents=True, exist_ok=True)
        for image_index in range(class_counts[class_name]):
            # Seeded per image (not one shared stream) so adding a class or image leaves the
            # other files unchanged.
            rng = np.random.default_rng([seed, _stable_hash(class_name), image_index])
            image = _draw_class_image(class_index, len(class_names), size, rng)
            image.save(class_dir / f"{class_name}_{image_index}{extension}", format=image_format)
    return root


def make_corrupt_file(path: str | os.PathLike, num_bytes: int = 512, seed: int = 0) -> Path:
    """Writes random bytes to ``path`` (e.g. ``.../broken.jpg``): named like an image, not one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = np.random.default_rng(seed).integers(0, 256, size=num_bytes, dtype=np.uint8)
    # A zero first byte matches no image magic number (JPEG/PNG/GIF/BMP/WebP), so no decoder
    # can mistake the file for a truncated-but-valid image.
    payload[0] = 0
    path.write_bytes(payload.tobytes())
    return path


def _stable_hash(text: str) -> int:
    # Python's hash() is salted per process; crc32 keeps the per-image seeds reproducible.
    return zlib.crc32(text.encode("utf-8"))


def _class_colours(class_index: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Foreground/background RGB for a class: evenly spaced hues, fg bright, bg dark.

    Both share the class hue so the whole image, not just the shape, carries the class colour.
    """
    hue = class_index / max(num_classes, 1)
    foreground = np.array(colorsys.hsv_to_rgb(hue, 0.9, 0.95)) * 255
    background = np.array(colorsys.hsv_to_rgb(hue, 0.7, 0.4)) * 255
    return foreground, background


def _draw_class_image(
    class_index: int, num_classes: int, size: tuple[int, int], rng: np.random.Generator
) -> Image.Image:
    width, height = size
    foreground, background = _class_colours(class_index, num_classes)
    # Mild colour jitter keeps the hue class-specific while making every image distinct.
    foreground = np.clip(foreground + rng.normal(0, 8, 3), 0, 255)
    background = np.clip(background + rng.normal(0, 8, 3), 0, 255)

    image = Image.new("RGB", size, tuple(int(c) for c in background))
    draw = ImageDraw.Draw(image)
    centre_x = width * rng.uniform(0.4, 0.6)
    centre_y = height * rng.uniform(0.4, 0.6)
    half = min(width, height) * rng.uniform(0.25, 0.35)
    box = [centre_x - half, centre_y - half, centre_x + half, centre_y + half]
    fill = tuple(int(c) for c in foreground)
    shape = _SHAPES[class_index % len(_SHAPES)]
    if shape == "ellipse":
        draw.ellipse(box, fill=fill)
    elif shape == "rectangle":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon(
            [(centre_x, centre_y - half), (centre_x - half, centre_y + half),
             (centre_x + half, centre_y + half)],
            fill=fill,
        )
    else:
        bar = max(half / 3, 1)
        draw.rectangle([box[0], centre_y - bar, box[2], centre_y + bar], fill=fill)
        draw.rectangle([centre_x - bar, box[1], centre_x + bar, box[3]], fill=fill)

    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# --- bad input: one file per way a photo folder goes wrong --------------------------------


def encode_image(image: Image.Image, image_format: str, **options) -> bytes:
    """``image`` saved as ``image_format`` (Pillow's name), as bytes."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb).

    Only the header and an empty IDAT are written: a reader that checks the size before
    decoding rejects it at once; one that decodes first would allocate the pixels.
    """
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def sixteen_bit_png(value: int, size: tuple[int, int] = (32, 16)) -> bytes:
    """A 16-bit grayscale PNG (Pillow mode I;16), every pixel ``value`` (0-65535)."""
    pixels = np.full((size[1], size[0]), value, dtype=np.uint16)
    return encode_image(Image.fromarray(pixels), "PNG")


def animated_gif(colours=((255, 0, 0), (0, 0, 255)), size=(32, 16)) -> bytes:
    """A GIF with one frame per colour."""
    frames = [Image.new("RGB", size, colour) for colour in colours]
    return encode_image(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def exif_rotated_jpeg(size=(40, 20), orientation: int = 6) -> bytes:
    """A JPEG stored ``size`` wide/high with an EXIF orientation tag (6: turn 90 degrees)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode_image(Image.new("RGB", size, (0, 200, 0)), "JPEG", exif=exif)


def truncated_jpeg(size=(64, 64)) -> bytes:
    raw = encode_image(Image.effect_noise(size, 50).convert("RGB"), "JPEG")
    return raw[: len(raw) // 2]


def names_in_different_splits(testing: int = 10, validation: int = 10) -> tuple[str, str]:
    """Two file names that retrain.py's hash sends to different splits (for duplicate tests)."""
    from components.image_example_gen.images import which_split

    first = "dup_a.jpg"
    for index in range(1000):
        other = f"dup_b{index}.jpg"
        if which_split(other, testing, validation) != which_split(first, testing, validation):
            return first, other
    raise AssertionError("no name pair in different splits")


# A non-UTF-8 name (Latin-1 "café"), as old backups and NAS shares hold them.
NON_UTF8_FILE = b"caf\xe9.jpg"
NON_UTF8_FOLDER = b"dossier\xff"
# Valid photos that the corpus test removes or rewrites after the folder is listed.
VANISHING, CHANGING = "vanishing.jpg", "changing.jpg"
# One folder each that must stop the run; make_bad_input_corpus(root, stop=...) adds one.
STOP_CASES = (
    "empty_class", "unreadable_class", "broken_class_link", "class_link_back",
    "non_utf8_class", "line_break_class",
)


def outside_folder(root: str | os.PathLike) -> Path:
    """Beside the corpus: where its links that leave the image folder point."""
    root = Path(root)
    return root.parent / f"{root.name}_outside"


def make_bad_input_corpus(root: str | os.PathLike, stop: str | None = None) -> Path:
    """A folder of classes ``ant``, ``bee`` (4 good photos each) and ``cat`` (a class folder
    that is a link, 4 photos) plus every bad-input case; with ``stop``, also one case of
    STOP_CASES, which stops the run. Links that leave the folder point into outside_folder(root).

    See docs/bad_input.md for the case list and what the converter does with each.
    """
    root = make_image_folder(root, {"ant": 4, "bee": 4})
    _add_bad_files(root / "ant", root / "bee")
    _add_odd_entries(root, outside_folder(root))
    if stop:
        _STOPS[stop](root, outside_folder(root))
    return root


def _add_bad_files(ant: Path, bee: Path) -> None:
    """Regular files with odd content or names, one per case."""
    photo = Image.effect_noise((48, 32), 40).convert("RGB")
    files = {
        "empty.jpg": b"",
        "truncated.jpg": truncated_jpeg(),
        "png_named.jpg": encode_image(photo, "PNG"),
        "animated.gif": animated_gif(),
        "bitmap.bmp": encode_image(photo, "BMP"),
        "photo.webp": encode_image(photo, "WEBP"),
        "photo.tif": encode_image(photo, "TIFF"),
        "scan.TIFF": encode_image(photo.transpose(Image.FLIP_TOP_BOTTOM), "TIFF"),
        "cmyk.jpg": encode_image(Image.new("CMYK", (24, 16), (0, 255, 255, 0)), "JPEG"),
        "gray.jpg": encode_image(Image.new("L", (24, 16), 90), "JPEG"),
        "deep16.png": sixteen_bit_png(100 * 257),
        "rgba.png": encode_image(Image.new("RGBA", (24, 16), (255, 0, 0, 255)), "PNG"),
        "rotated.jpg": exif_rotated_jpeg(),
        "bomb.png": png_header_only(20000, 20000),
        "tiny.png": encode_image(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
        "UPPER.JPG": encode_image(photo, "JPEG"),
        "UPPER2.JPEG": encode_image(photo.rotate(90, expand=True), "JPEG"),
        "notes.txt": b"no photo here",
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "Thumbs.db": b"\xd0\xcf\x11\xe0",
        ".hidden.jpg": encode_image(photo, "JPEG"),
        "locked.jpg": encode_image(photo, "JPEG"),
        "line\nbreak.jpg": encode_image(photo.rotate(45), "JPEG"),
        VANISHING: encode_image(photo.rotate(30), "JPEG"),
        CHANGING: encode_image(photo.rotate(60), "JPEG"),
    }
    for name, raw in files.items():
        (ant / name).write_bytes(raw)
    make_corrupt_file(ant / "random.jpg")
    (ant / "locked.jpg").chmod(0)  # unreadable for a normal user; tests as root patch open
    nested = ant / "nested" / "deeper"
    nested.mkdir(parents=True)
    (nested / "inner.jpg").write_bytes(encode_image(photo.transpose(Image.FLIP_LEFT_RIGHT), "JPEG"))
    unicode_dir = ant / "sous dossier é"
    unicode_dir.mkdir()
    (unicode_dir / "fleur d'été ü.jpg").write_bytes(encode_image(photo.rotate(180), "JPEG"))
    album = ant / "album.jpg"  # a folder, whatever its name says
    album.mkdir()
    (album / "inside.jpg").write_bytes(encode_image(photo.rotate(120), "JPEG"))
    with open(os.fsencode(ant) + b"/" + NON_UTF8_FILE, "wb") as non_utf8:
        non_utf8.write(encode_image(photo.rotate(150), "JPEG"))
    os.mkdir(os.fsencode(ant) + b"/" + NON_UTF8_FOLDER)
    with open(os.fsencode(ant) + b"/" + NON_UTF8_FOLDER + b"/in.jpg", "wb") as inside:
        inside.write(encode_image(photo.rotate(170), "JPEG"))
    duplicate = encode_image(Image.effect_noise((40, 30), 60).convert("RGB"), "JPEG")
    for name in names_in_different_splits():
        (ant / name).write_bytes(duplicate)
    conflict = encode_image(Image.effect_noise((36, 28), 70).convert("RGB"), "JPEG")
    (ant / "conflict.jpg").write_bytes(conflict)
    (bee / "conflict_copy.jpg").write_bytes(conflict)


def _add_odd_entries(root: Path, outside: Path) -> None:
    """Links, FIFOs, sockets and devices, and photos outside the folder that links lead to."""
    import stat

    ant = root / "ant"
    make_image_folder(outside, {"cat": 4}, seed=1)
    far = Image.effect_noise((40, 40), 30).convert("RGB")
    (outside / "album").mkdir()
    (outside / "album" / "far.jpg").write_bytes(encode_image(far, "JPEG"))
    (outside / "single.jpg").write_bytes(encode_image(far.rotate(90), "JPEG"))
    os.symlink(outside / "cat", root / "cat")  # a class folder that is a link
    os.symlink(outside / "album", ant / "outside")  # a folder link that leaves the folder
    os.symlink(outside / "single.jpg", ant / "linked.jpg")  # a file link that leaves it
    os.symlink("../bee", ant / "bee_link")  # a folder link into the image folder
    os.symlink("..", ant / "nested" / "loop")  # ant/nested/loop -> ant: a folder loop
    os.symlink("../../..", ant / "nested" / "up")  # the folder above the image folder
    os.symlink("selfloop.jpg", ant / "selfloop.jpg")  # a file link to itself
    os.symlink("missing.jpg", ant / "broken.jpg")  # a broken link
    os.symlink("/dev/zero", ant / "zeros.jpg")  # a device: reading it would never end
    os.mkfifo(ant / "pipe.jpg")  # opening it for reading would block
    os.mkfifo(ant / "fifo_notes")
    os.mknod(ant / "socket.png", stat.S_IFSOCK | 0o600)


def _empty_class(root: Path, outside: Path) -> None:
    (root / "wasp").mkdir()


def _unreadable_class(root: Path, outside: Path) -> None:
    (root / "wasp").mkdir()
    os.symlink("gone.jpg", root / "wasp" / "only.jpg")


def _broken_class_link(root: Path, outside: Path) -> None:
    os.symlink(outside / "unmounted_share", root / "wasp")


def _class_link_back(root: Path, outside: Path) -> None:
    os.symlink(root, root / "loop")


def _non_utf8_class(root: Path, outside: Path) -> None:
    folder = os.fsencode(root) + b"/" + NON_UTF8_FOLDER
    os.mkdir(folder)
    with open(folder + b"/a.jpg", "wb") as photo:
        photo.write((root / "bee" / "bee_0.jpg").read_bytes())


def _line_break_class(root: Path, outside: Path) -> None:
    make_image_folder(root, {"two\nlines": 2}, seed=2)


_STOPS = {
    "empty_class": _empty_class,
    "unreadable_class": _unreadable_class,
    "broken_class_link": _broken_class_link,
    "class_link_back": _class_link_back,
    "non_utf8_class": _non_utf8_class,
    "line_break_class": _line_break_class,
}


def edit_in_place(path: Path) -> None:
    """New bytes of the same length and a later mtime, as a photo editor's save."""
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    info = path.stat()
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))


# --- copies of one photo: near-duplicates ----------------------------------------------------


def scene_photo(seed: int, size: tuple[int, int] = (192, 144),
                offset: tuple[float, float] = (0.0, 0.0)) -> Image.Image:
    """A photo-like picture: shapes of many colours and sizes over a gradient, seen through a
    window of ``size``. ``offset`` (a share of the size) moves the window: another photo of
    the same scene, not a copy."""
    from PIL import ImageFilter

    rng = np.random.default_rng([seed, 7])
    width, height = size
    canvas = Image.new("RGB", (2 * width, 2 * height))
    ramp = np.linspace(0, 1, 2 * width)[None, :, None] * rng.uniform(0, 255, 3)
    canvas.paste(Image.fromarray(np.broadcast_to(ramp, (2 * height, 2 * width, 3))
                                 .astype(np.uint8)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(40):
        x, y = rng.uniform(0, 2 * width), rng.uniform(0, 2 * height)
        radius = rng.uniform(0.05, 0.3) * height
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = [x - radius, y - radius * rng.uniform(0.5, 1.5), x + radius, y + radius]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    left = int(width / 2 + offset[0] * width)
    top = int(height / 2 + offset[1] * height)
    window = canvas.crop((left, top, left + width, top + height))
    return window.filter(ImageFilter.GaussianBlur(1))


def near_copies(photo: Image.Image) -> dict[str, bytes]:
    """JPEG copies of ``photo`` that a person would call the same photo: resized to half and
    recompressed, cropped by 2 % a side, and re-toned (brighter, less contrast)."""
    from PIL import ImageEnhance

    width, height = photo.size
    dx, dy = round(width * 0.02), round(height * 0.02)
    retoned = ImageEnhance.Contrast(ImageEnhance.Brightness(photo).enhance(1.2)).enhance(0.85)
    return {
        "resized": encode_image(photo.resize((width // 2, height // 2)), "JPEG", quality=60),
        "cropped": encode_image(photo.crop((dx, dy, width - dx, height - dy)), "JPEG",
                                quality=90),
        "retoned": encode_image(retoned, "JPEG", quality=90),
    }
