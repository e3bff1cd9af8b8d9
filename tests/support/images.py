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
