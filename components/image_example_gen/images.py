"""Pure helpers for reading a folder of labelled images (one subfolder per class)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import warnings

# Pillow decodes all of these; the file's content, not its extension, decides how.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
# Formats (as Pillow names them) that are converted; MPO is a multi-picture JPEG.
READABLE_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF")
TRAIN, EVAL, TEST = "train", "eval", "test"
SPLITS = (TRAIN, EVAL, TEST)
# retrain.py's constant: hashes are taken modulo this, so splits stay stable as photos are added.
MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1
# Refuse images over this many pixels (decompression bombs); Pillow's default is 89M.
MAX_IMAGE_PIXELS = 40_000_000
# A photo smaller than this on either side carries nothing to learn from.
MIN_IMAGE_SIDE = 8
JPEG_QUALITY = 95
NOT_AN_IMAGE = "not a decodable JPEG/PNG/GIF/BMP/WebP/TIFF image"


class DataDirError(ValueError):
    """The image folder cannot be used; the message names the folder and the fix."""


class UnreadableImageError(ValueError):
    """One file is not a usable image; the message says why."""


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


@dataclasses.dataclass(frozen=True)
class ClassFiles:
    images: list[str]  # image files, relative to data_dir, sorted
    ignored: list[dict]  # {"file": relative path, "reason": why it is not read}, sorted


def scan_class_folder(data_dir: str, class_name: str) -> ClassFiles:
    """The image files of one class folder, recursively, and the files and folders passed over.

    Images in nested subfolders belong to the class of the top-level folder. Hidden files and
    folders, and files without an image extension, are listed as ignored. Symlinked folders are
    followed, once each, so a symlink loop is reported instead of walked forever.
    """
    found: list[str] = []
    ignored: list[dict] = []
    class_dir = os.path.join(data_dir, class_name)
    visited = {os.path.realpath(class_dir)}

    def relative(path: str) -> str:
        return os.path.relpath(path, data_dir)

    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        kept = []
        for name in sorted(dirnames):
            path = os.path.join(dirpath, name)
            real = os.path.realpath(path)
            if name.startswith("."):
                ignored.append({"file": relative(path), "reason": "hidden folder"})
            elif real in visited:
                ignored.append(
                    {"file": relative(path), "reason": "symlink loop (folder already read)"}
                )
            else:
                visited.add(real)
                kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            path = os.path.join(dirpath, name)
            if name.startswith("."):
                ignored.append({"file": relative(path), "reason": "hidden file"})
            elif not is_image_file(name):
                extension = os.path.splitext(name)[1] or "no extension"
                ignored.append(
                    {"file": relative(path), "reason": f"not an image file name ({extension})"}
                )
            else:
                found.append(relative(path))
    return ClassFiles(sorted(found), sorted(ignored, key=lambda item: item["file"]))


def list_class_images(data_dir: str, class_name: str) -> list[str]:
    """Image files of one class (nested subfolders included), relative to data_dir, sorted."""
    return scan_class_folder(data_dir, class_name).images


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
    data_real = os.path.realpath(data_dir)
    for name in class_names:
        real = os.path.realpath(os.path.join(data_dir, name))
        if data_real == real or data_real.startswith(real.rstrip(os.sep) + os.sep):
            raise DataDirError(
                f"class folder {os.path.join(data_dir, name)} is a symlink back to {real}, "
                "which holds the image folder itself; remove the link"
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


def read_image_file(path: str) -> bytes:
    """The bytes of one file; raises UnreadableImageError naming the OS error (permissions...)."""
    try:
        with open(path, "rb") as image_file:
            return image_file.read()
    except OSError as error:
        raise UnreadableImageError(f"cannot read file: {error.strerror or error}") from None


def content_hash(raw: bytes) -> str:
    """Identifies byte-identical files (the same photo saved twice)."""
    return hashlib.sha256(raw).hexdigest()


def _too_large(pixels: int) -> UnreadableImageError:
    return UnreadableImageError(
        f"too large: {pixels} pixels is over the {MAX_IMAGE_PIXELS}-pixel limit "
        "(a possible decompression bomb)"
    )


def _to_8_bit(image):
    """Scales 16/32-bit integer and float images (e.g. 16-bit PNG, mode I;16) to 8-bit L.

    Pillow's own conversion clips every value over 255 to white; this keeps the tones.
    """
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        low, high = float(pixels.min(initial=0.0)), float(pixels.max(initial=0.0))
        if high > 255 or low < 0:
            pixels = (pixels - low) * (255.0 / max(high - low, 1e-12))
    elif image.mode.startswith("I;16") or pixels.max(initial=0) > 255:
        pixels = pixels / 257.0  # 65535 -> 255
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="L")


def normalize_image(raw: bytes) -> NormalizedImage:
    """Decodes any JPEG/PNG/GIF/BMP/WebP/TIFF and returns an upright RGB JPEG.

    The content decides the format, not the file name. An upright RGB JPEG is kept byte for
    byte; anything else (grayscale, 16-bit, CMYK, alpha, palette, EXIF rotation, other
    formats; the first frame of an animation) is converted once here so later steps see one
    format. Raises UnreadableImageError with the reason.
    """
    from PIL import Image, ImageOps

    if not raw:
        raise UnreadableImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only the header is read here: the size checks below run before any pixel is.
            image = Image.open(io.BytesIO(raw))
            source_format = image.format or "unknown"
            if source_format not in READABLE_FORMATS:
                raise UnreadableImageError(f"unsupported format {source_format}")
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise _too_large(image.width * image.height)
            if min(image.width, image.height) < MIN_IMAGE_SIDE:
                raise UnreadableImageError(
                    f"too small ({image.width}x{image.height}); "
                    f"at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels needed"
                )
            image.load()  # decodes fully (the first frame of an animation): truncation fails here
            orientation = image.getexif().get(0x0112, 1)
            upright = ImageOps.exif_transpose(image)
    except UnreadableImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow's own guard, hit in Image.open for sizes far over its limit.
        match = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_large(int(match.group(1)) if match else 0) from None
    except Image.UnidentifiedImageError:
        raise UnreadableImageError(NOT_AN_IMAGE) from None
    except Exception as error:  # Pillow raises many types for truncated or corrupt data
        raise UnreadableImageError(f"corrupt or truncated image ({error})") from None
    if source_format == "JPEG" and image.mode == "RGB" and orientation == 1:
        return NormalizedImage(raw, image.height, image.width, source_format)
    if upright.mode in ("I", "F") or upright.mode.startswith("I;16"):
        upright = _to_8_bit(upright)
    if upright.mode in ("RGBA", "LA", "P", "PA", "RGBa", "La") or "transparency" in upright.info:
        # Alpha over white, as photos with transparency are meant to be seen.
        rgba = upright.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba.getchannel("A"))
    else:
        rgb = upright.convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return NormalizedImage(buffer.getvalue(), rgb.height, rgb.width, source_format)
