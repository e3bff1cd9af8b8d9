"""One photo: its name, reading and decoding it, and the stable split its file name picks.

Folder walking (which files of a class folder are photos) is scan.py's.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import re
import stat
import warnings
from typing import TYPE_CHECKING

from models import features

if TYPE_CHECKING:
    from components.image_example_gen.scan import Photo

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


def shown(path: str) -> str:
    """A path as text for the report: bytes that are not UTF-8 as \\xNN, so the JSON is valid."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def one_line(path: str) -> str:
    """A path for a one-line message or log line: line breaks and other controls escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown(path))


def is_utf8(name: str) -> bool:
    # os.listdir gives undecodable bytes as lone surrogates, which str.encode refuses.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# What a non-regular file is, for the skip reason; it is never opened (a FIFO would block).
_FILE_TYPES = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def not_regular(mode: int) -> str:
    kind = _FILE_TYPES.get(stat.S_IFMT(mode), "a special file")
    return f"{kind}, not a regular file; never opened"


def class_of(relative_path: str) -> str:
    """The class of a photo: its top-level folder, however deep the photo is."""
    return relative_path.split(os.sep, 1)[0]


def which_split(file_name: str, testing_percentage: int, validation_percentage: int) -> str:
    """retrain.py's stable split: a hash of the file name (ignoring any '_nohash_' suffix).

    Adding photos never moves an existing photo to another split.
    """
    hashed = hashlib.sha1(features.subject_of(file_name).encode("utf-8")).hexdigest()
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


CHANGED = "changed after the folder was listed (size or modification time); run again to convert it"
VANISHED = "disappeared after the folder was listed"


def _open_without_blocking(path: str, flags: int) -> int:
    # A FIFO that appeared since the listing opens at once instead of waiting for a writer.
    return os.open(path, flags | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))


def read_image_file(path: str, listed: Photo | None = None) -> bytes:
    """The bytes of one regular file; raises UnreadableImageError with the reason.

    A FIFO, socket or device is never read (a FIFO would block, /dev/zero never ends). With
    `listed`, the file must still be the one the folder listing (and so the fingerprint) saw:
    a file that vanished or changed since is refused rather than converted as another file.
    """
    try:
        with open(path, "rb", opener=_open_without_blocking) as image_file:
            info = os.fstat(image_file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UnreadableImageError(not_regular(info.st_mode))
            if listed and (info.st_size, info.st_mtime_ns) != (listed.size, listed.mtime_ns):
                raise UnreadableImageError(CHANGED)
            raw = image_file.read()
    except OSError as error:
        if listed and error.errno == errno.ENOENT:
            raise UnreadableImageError(VANISHED) from None
        raise UnreadableImageError(f"cannot read file: {error.strerror or error}") from None
    if listed and len(raw) != listed.size:  # written to while it was read
        raise UnreadableImageError(CHANGED)
    return raw


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


def _decode(raw: bytes):
    """(image as stored, its format, its EXIF orientation, the image upright) of any
    JPEG/PNG/GIF/BMP/WebP/TIFF; raises UnreadableImageError with the reason."""
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
    return image, source_format, orientation, upright


# The perceptual hash: imagehash's pHash of a 16x16 DCT (256 bits). Its 8x8 default (64 bits)
# put a near copy of the shared photos (cropped and re-toned) further apart than two photos of
# one bouquet; 16x16 orders them right (BENCHMARKS.md, "Near-duplicates").
PERCEPTUAL_HASH_SIZE = 16
PERCEPTUAL_HASH_BITS = PERCEPTUAL_HASH_SIZE**2


# Grey levels (0-255): a photo whose 64x64 greyscale reduction varies less than this is one
# flat tone, whose pHash is that of every other flat photo, whatever its colour.
FLAT_PHOTO_STD = 2.0


def perceptual_hash(raw: bytes) -> str:
    """The hex pHash of the upright photo: equal or close for a resized, recompressed,
    re-toned or slightly cropped copy; "" for a flat photo, which has no pattern to compare.
    Raises UnreadableImageError as normalize_image does."""
    import imagehash
    import numpy as np
    from PIL import Image

    _, _, _, upright = _decode(raw)
    side = PERCEPTUAL_HASH_SIZE * 4  # the reduction pHash takes its DCT of
    reduced = upright.convert("L").resize((side, side), Image.Resampling.LANCZOS)
    if float(np.asarray(reduced, np.float32).std()) < FLAT_PHOTO_STD:
        return ""
    return str(imagehash.phash(upright, hash_size=PERCEPTUAL_HASH_SIZE))


def thumbnail_jpeg(encoded: bytes, pixels: int = 160) -> bytes:
    """A small JPEG of an encoded photo (the long side at most `pixels`), for the run report."""
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        small = image.convert("RGB")
        small.thumbnail((pixels, pixels))
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()


def normalize_image(raw: bytes) -> NormalizedImage:
    """Decodes any JPEG/PNG/GIF/BMP/WebP/TIFF and returns an upright RGB JPEG.

    The content decides the format, not the file name. An upright RGB JPEG is kept byte for
    byte; anything else (grayscale, 16-bit, CMYK, alpha, palette, EXIF rotation, other
    formats; the first frame of an animation) is converted once here so later steps see one
    format. Raises UnreadableImageError with the reason.
    """
    from PIL import Image

    image, source_format, orientation, upright = _decode(raw)
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
