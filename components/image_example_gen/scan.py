"""Folder walking: the photos of each class folder, the entries passed over and why, the
folder fingerprint the driver and the executor compare, and the classes of an image folder."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import stat

from components.image_example_gen.images import (
    IMAGE_EXTENSIONS,
    DataDirError,
    class_of,
    is_image_file,
    is_utf8,
    not_regular,
    one_line,
    shown,
)


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
        elif not is_utf8(name):
            self.note("skipped", path, "file name is not valid UTF-8; rename it")
        elif not stat.S_ISREG(info.st_mode):
            self.note("skipped", path, not_regular(info.st_mode))
        else:
            relative = os.path.relpath(path, self.data_dir)
            photo = Photo(relative, info.st_size, info.st_mtime_ns, stat.S_IMODE(info.st_mode))
            self.result.photos.append(photo)
        return None

    def subfolder(self, path: str, name: str, parent_real: str) -> tuple[str, str] | None:
        if not is_utf8(name):
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
    if not is_utf8(name):
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

