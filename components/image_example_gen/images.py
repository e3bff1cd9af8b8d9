"""Pure helpers for reading a folder of labelled images (one subfolder per class)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import re
import stat
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


def shown(path: str) -> str:
    """A path as text for the report: bytes that are not UTF-8 as \\xNN, so the JSON is valid."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def one_line(path: str) -> str:
    """A path for a one-line message or log line: line breaks and other controls escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown(path))


def _is_utf8(name: str) -> bool:
    # os.listdir gives undecodable bytes as lone surrogates, which str.encode refuses.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class Photo:
    """One file to convert and its stat when listed: what the folder fingerprint covers."""

    path: str  # relative to data_dir
    size: int
    mtime_ns: int
    mode: int  # permission bits too: a chmod that makes a skipped file readable is a change


@dataclasses.dataclass(frozen=True)
class ClassFiles:
    photos: list[Photo]  # image files, sorted by path
    skipped: list[dict]  # {"file", "reason"}: an image (or a folder of them) that cannot be read
    ignored: list[dict]  # {"file", "reason"}: not an image by design (hidden, other extension)

    @property
    def images(self) -> list[str]:
        return [photo.path for photo in self.photos]


# What a non-regular file is, for the skip reason; it is never opened (a FIFO would block).
_FILE_TYPES = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _not_regular(mode: int) -> str:
    kind = _FILE_TYPES.get(stat.S_IFMT(mode), "a special file")
    return f"{kind}, not a regular file; never opened"


def _stat_or_reason(path: str) -> tuple[os.stat_result | None, str]:
    """os.stat through links, or why it failed: a broken link names its target."""
    try:
        return os.stat(path), ""
    except OSError as error:
        if error.errno == errno.ENOENT and os.path.islink(path):
            return None, f"broken symbolic link to {shown(os.readlink(path))}"
        return None, f"cannot read file: {error.strerror or error}"


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _folder_link_reason(
    path: str, parent_real: str, real: str, visited: set[str], roots: list[str]
) -> str:
    """Why a symlinked folder is not read, or "" to read it (a link that leaves the folder).

    A link into the image folder is never followed: its photos are read under their own path
    (or deliberately not, when hidden), and reading them twice would make duplicates or, in
    another class, label conflicts that drop them.
    """
    if real in visited:
        return "symlink loop (folder already read)"
    if _inside(parent_real, real):  # e.g. a link to / or to the folder above the image folder
        return "symlink loop (to a folder that holds the link)"
    for root in roots:
        if _inside(real, root):
            return (
                f"symbolic link to {shown(os.readlink(path))}, inside the image folder; "
                "not followed, so no photo is read twice"
            )
    return ""


class _ClassWalk:
    """Lists one class folder; see scan_class_folder. Iterative: a folder tree deeper than
    Python's recursion limit is still a folder tree."""

    def __init__(self, data_dir: str, roots: list[str]):
        self.data_dir = data_dir
        self.roots = roots
        self.result = ClassFiles([], [], [])
        self.visited: set[str] = set()  # real paths of the folders read or about to be

    def run(self, class_dir: str) -> None:
        real = os.path.realpath(class_dir)
        self.visited.add(real)
        pending = [(class_dir, real)]
        while pending:
            subfolders = self.folder(*pending.pop())
            pending.extend(reversed(subfolders))  # depth first, in name order

    def note(self, kind: str, path: str, reason: str) -> None:
        item = {"file": shown(os.path.relpath(path, self.data_dir)), "reason": reason}
        getattr(self.result, kind).append(item)

    def folder(self, path: str, real: str) -> list[tuple[str, str]]:
        """Classifies the entries of one folder; returns its subfolders to read (path, real
        path: kept along, since os.path.realpath of each would cost the depth squared)."""
        try:
            with os.scandir(path) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as error:
            self.note("skipped", path, f"cannot read folder: {error.strerror or error}")
            return []
        subfolders = (self.entry(os.path.join(path, name), name, real) for name in names)
        return [subfolder for subfolder in subfolders if subfolder]

    def entry(self, path: str, name: str, parent_real: str) -> tuple[str, str] | None:
        """Notes one entry as a photo, skipped or ignored; returns it if it is a folder to read."""
        info, reason = _stat_or_reason(path)
        is_folder = info is not None and stat.S_ISDIR(info.st_mode)
        if name.startswith("."):
            self.note("ignored", path, "hidden folder" if is_folder else "hidden file")
        elif info is None:
            self.note("skipped", path, reason)
        elif is_folder:
            return self.subfolder(path, name, parent_real)
        elif not is_image_file(name):
            extension = os.path.splitext(name)[1] or "no extension"
            self.note("ignored", path, f"not an image file name ({shown(extension)})")
        elif not _is_utf8(name):
            self.note("skipped", path, "file name is not valid UTF-8; rename it")
        elif not stat.S_ISREG(info.st_mode):
            self.note("skipped", path, _not_regular(info.st_mode))
        else:
            relative = os.path.relpath(path, self.data_dir)
            photo = Photo(relative, info.st_size, info.st_mtime_ns, stat.S_IMODE(info.st_mode))
            self.result.photos.append(photo)
        return None

    def subfolder(self, path: str, name: str, parent_real: str) -> tuple[str, str] | None:
        if not _is_utf8(name):
            self.note("skipped", path, "folder name is not valid UTF-8; rename it")
            return None
        real = os.path.join(parent_real, name)
        if os.path.islink(path):
            real = os.path.realpath(path)
            reason = _folder_link_reason(path, parent_real, real, self.visited, self.roots)
            if reason:
                self.note("ignored", path, reason)
                return None
        self.visited.add(real)
        return path, real


def _roots(data_dir: str, class_names) -> list[str]:
    """The real folders whose photos are read under their own path."""
    return [os.path.realpath(data_dir)] + [
        os.path.realpath(os.path.join(data_dir, name)) for name in class_names
    ]


def scan_class_folder(data_dir: str, class_name: str, roots: list[str] | None = None) -> ClassFiles:
    """The image files of one class folder, recursively, and the entries passed over.

    Every entry a folder can hold is classified without opening it: a folder is read (a
    symlinked one once, and only when it leads out of the image folder); a regular file with an
    image extension is a photo; a hidden entry or another extension is ignored; a broken link
    (any name), an image name that is not a regular file (FIFO, socket, device) or not UTF-8,
    and a folder that cannot be read, are skipped with their reason. Images in nested
    subfolders belong to the class of the top-level folder.
    """
    walk = _ClassWalk(data_dir, roots or _roots(data_dir, [class_name]))
    class_dir = os.path.join(data_dir, class_name)
    if not os.path.isdir(class_dir):
        raise DataDirError(
            f"class folder {one_line(class_dir)} does not exist (any more); "
            "pass --data-dir with one subfolder per class"
        )
    walk.run(class_dir)
    by_file = lambda item: item["file"]  # noqa: E731
    return ClassFiles(
        sorted(walk.result.photos, key=lambda photo: photo.path),
        sorted(walk.result.skipped, key=by_file),
        sorted(walk.result.ignored, key=by_file),
    )


def list_photos(data_dir: str, class_names) -> ClassFiles:
    """Every class's photos and passed-over entries: the one listing that both the driver's
    fingerprint and the conversion use, so the fingerprint covers exactly what is converted."""
    roots = _roots(data_dir, class_names)
    scans = [scan_class_folder(data_dir, name, roots) for name in class_names]
    return ClassFiles(
        [photo for scan in scans for photo in scan.photos],
        [item for scan in scans for item in scan.skipped],
        [item for scan in scans for item in scan.ignored],
    )


FINGERPRINT_MARK = "listing_sha256:"


def folder_fingerprint(photos: list[Photo]) -> str:
    """TFX's fingerprint fields, plus a hash of every photo's path, size, mtime and mode.

    Renames, edits at any depth and permission fixes all change it; a file that is not a photo
    (notes, .DS_Store) does not, so it never costs a reconversion.
    """
    digest = hashlib.sha256()
    for photo in photos:
        digest.update(os.fsencode(photo.path) + b"\0")  # NUL cannot occur in a file name
        digest.update(f"{photo.size} {photo.mtime_ns} {photo.mode:o}\0".encode())
    total_bytes = sum(photo.size for photo in photos)
    return (
        f"split:images,num_files:{len(photos)},total_bytes:{total_bytes},"
        f"{FINGERPRINT_MARK}{digest.hexdigest()}"
    )


def list_class_images(data_dir: str, class_name: str) -> list[str]:
    """Image files of one class (nested subfolders included), relative to data_dir, sorted."""
    return scan_class_folder(data_dir, class_name).images


def _check_class_name(data_dir: str, name: str) -> None:
    """A class name becomes a label, a line of labels.txt and a UTF-8 feature: no line breaks,
    valid UTF-8."""
    path = one_line(os.path.join(data_dir, name))
    if not _is_utf8(name):
        raise DataDirError(f"class folder {path} has a name that is not valid UTF-8; rename it")
    if "\n" in name or "\r" in name:
        raise DataDirError(f"class folder {path} has a line break in its name; rename it")


def _check_no_broken_class_link(entry: os.DirEntry) -> None:
    """A broken link beside the class folders is most likely a class on an unmounted share."""
    if entry.is_symlink() and not os.path.exists(entry.path):
        raise DataDirError(
            f"{one_line(entry.path)} is a broken symbolic link to "
            f"{one_line(os.readlink(entry.path))}; mount or fix its target, or remove the link"
        )


def class_of(relative_path: str) -> str:
    """The class of a photo: its top-level folder, however deep the photo is."""
    return relative_path.split(os.sep, 1)[0]


def _empty_class_message(data_dir: str, name: str, skipped: list[dict]) -> str:
    message = (
        f"class folder {one_line(os.path.join(data_dir, name))} has no images "
        f"({', '.join(IMAGE_EXTENSIONS)}); add photos to it or remove it"
    )
    skipped = [item for item in skipped if class_of(item["file"]) == name]
    if skipped:  # e.g. only broken links: name one, since "no images" alone would puzzle
        message += (
            f" ({len(skipped)} skipped, e.g. {one_line(skipped[0]['file'])}: "
            f"{skipped[0]['reason']})"
        )
    return message


def discover_classes(data_dir: str) -> tuple[str, ...]:
    """The sorted class names of data_dir, checking that there are two or more, none empty."""
    if not os.path.isdir(data_dir):
        raise DataDirError(
            f"image folder {data_dir} does not exist; pass --data-dir with one subfolder per class"
        )
    class_names = []
    with os.scandir(data_dir) as entries:
        for entry in sorted(entries, key=lambda entry: entry.name):
            if entry.name.startswith("."):
                continue
            _check_no_broken_class_link(entry)
            if entry.is_dir():
                _check_class_name(data_dir, entry.name)
                class_names.append(entry.name)
    data_real = os.path.realpath(data_dir)
    for name in class_names:
        real = os.path.realpath(os.path.join(data_dir, name))
        if data_real == real or data_real.startswith(real.rstrip(os.sep) + os.sep):
            raise DataDirError(
                f"class folder {os.path.join(data_dir, name)} is a symlink back to {real}, "
                "which holds the image folder itself; remove the link"
            )
    listing = list_photos(data_dir, class_names)
    with_photos = {class_of(photo.path) for photo in listing.photos}
    empty = [name for name in class_names if name not in with_photos]
    if empty:
        raise DataDirError(_empty_class_message(data_dir, empty[0], listing.skipped))
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
                raise UnreadableImageError(_not_regular(info.st_mode))
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
