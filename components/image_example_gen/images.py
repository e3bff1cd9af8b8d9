"""Pure helpers for reading a folder of labelled images (one subfolder per class)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import warnings

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
TRAIN, EVAL, TEST = "train", "eval", "test"
# retrain.py's constant: hashes are taken modulo this, so splits stay stable as photos are added.
MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1
# Refuse images over this many pixels (decompression bombs); Pillow's default is 89M.
MAX_IMAGE_PIXELS = 40_000_000
JPEG_QUALITY = 95
NOT_AN_IMAGE = "not a decodable JPEG/PNG/GIF/BMP image"


class DataDirError(ValueError):
    """The image folder cannot be used; the message names the folder and the fix."""


class UnreadableImageError(ValueError):
    """One file is not a usable image; the message says why."""


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_class_images(data_dir: str, class_name: str) -> list[str]:
    """Image files of one class, relative to data_dir, sorted."""
    class_dir = os.path.join(data_dir, class_name)
    return sorted(
        os.path.join(class_name, entry.name)
        for entry in os.scandir(class_dir)
        if entry.is_file() and is_image_file(entry.name)
    )


def discover_classes(data_dir: str) -> tuple[str, ...]:
    """The sorted class names of data_dir, checking that there are two or more, none empty."""
    if not os.path.isdir(data_dir):
        raise DataDirError(
            f"image folder {data_dir} does not exist; pass --data-dir with one subfolder per class"
        )
    class_names = sorted(
        entry.name
        for entry in os.scandir(data_dir)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    empty = [name for name in class_names if not list_class_images(data_dir, name)]
    if empty:
        raise DataDirError(
            f"class folder {os.path.join(data_dir, empty[0])} has no images "
            f"({', '.join(IMAGE_EXTENSIONS)}); add photos to it or remove it"
        )
    if len(class_names) < 2:
        raise DataDirError(
            f"image folder {data_dir} has {len(class_names)} class subfolder(s) "
            f"{list(class_names)}; a classifier needs at least two, one subfolder per class"
        )
    return tuple(class_names)


def which_split(file_name: str, testing_percentage: int, validation_percentage: int) -> str:
    """retrain.py's stable split: a hash of the file name (ignoring any '_nohash_' suffix).

    Adding photos never moves an existing photo to another split.
    """
    base_name = os.path.basename(file_name)
    hash_name = re.sub(r"_nohash_.*$", "", base_name)
    hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage_hash = (int(hashed, 16) % (MAX_NUM_IMAGES_PER_CLASS + 1)) * (
        100.0 / MAX_NUM_IMAGES_PER_CLASS
    )
    if percentage_hash < validation_percentage:
        return EVAL
    if percentage_hash < testing_percentage + validation_percentage:
        return TEST
    return TRAIN


@dataclasses.dataclass(frozen=True)
class NormalizedImage:
    encoded: bytes  # JPEG bytes of an upright RGB image
    height: int
    width: int
    source_format: str


def normalize_image(raw: bytes) -> NormalizedImage:
    """Decodes any JPEG/PNG/GIF/BMP and returns an upright RGB JPEG.

    An upright RGB JPEG is kept byte for byte; anything else (grayscale, CMYK, alpha, palette,
    EXIF rotation, other formats) is converted once here so later steps see one format.
    Raises UnreadableImageError with the reason.
    """
    from PIL import Image, ImageOps

    if not raw:
        raise UnreadableImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            source_format = image.format or "unknown"
            if source_format not in ("JPEG", "PNG", "GIF", "BMP", "MPO"):
                raise UnreadableImageError(f"unsupported format {source_format}")
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise UnreadableImageError(
                    f"{image.width}x{image.height} pixels is over the {MAX_IMAGE_PIXELS} limit"
                )
            image.load()  # decodes fully, so truncated files fail here
            orientation = image.getexif().get(0x0112, 1)
            upright = ImageOps.exif_transpose(image)
    except UnreadableImageError:
        raise
    except Image.UnidentifiedImageError:
        raise UnreadableImageError(NOT_AN_IMAGE) from None
    except Exception as error:  # Pillow raises many types for truncated or corrupt data
        raise UnreadableImageError(f"corrupt or truncated image ({error})") from None
    if source_format == "JPEG" and image.mode == "RGB" and orientation == 1:
        return NormalizedImage(raw, image.height, image.width, source_format)
    if upright.mode in ("RGBA", "LA", "P", "PA") or "transparency" in upright.info:
        # Alpha over white, as photos with transparency are meant to be seen.
        rgba = upright.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba.getchannel("A"))
    else:
        rgb = upright.convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return NormalizedImage(buffer.getvalue(), rgb.height, rgb.width, source_format)
