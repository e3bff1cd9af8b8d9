"""The --replicate mode's data: a copy of a data dir with every photo present N times as
distinct photos (mirrored, center crops, re-encoded JPEGs), each in its photo's split."""

from __future__ import annotations

import dataclasses
import os
import shutil

from components.atomic_pusher.links import link_or_copy
from components.image_example_gen import images

# Replica variants k >= 2 crop the center by these fractions in turn (k=1 is the mirror alone);
# each further cycle through them saves the JPEG at the next lower quality, so bytes differ.
CROP_FRACTIONS = (0.90, 0.85, 0.80, 0.75, 0.70)
JPEG_QUALITIES = (95, 90, 85, 80)
MAX_REPLICATE = 2 + 2 * len(CROP_FRACTIONS) * len(JPEG_QUALITIES)  # all variants distinct


@dataclasses.dataclass(frozen=True)
class Variant:
    mirror: bool
    crop: float  # fraction of each side kept, centered; 1.0 keeps the whole photo
    quality: int  # JPEG quality; 0 for the original file (k=0), not re-encoded


def variant_for(k: int) -> Variant:
    """The k-th copy of a photo: 0 the original, 1 mirrored, 2 cropped 90 %, 3 mirrored and
    cropped 90 %, 4 and 5 the same at 85 %, ... ; each cycle through CROP_FRACTIONS lowers the
    JPEG quality one step, so the first MAX_REPLICATE copies all differ."""
    if not 0 <= k < MAX_REPLICATE:
        raise ValueError(f"copy {k} is out of range [0, {MAX_REPLICATE})")
    if k == 0:
        return Variant(mirror=False, crop=1.0, quality=0)
    if k == 1:
        return Variant(mirror=True, crop=1.0, quality=JPEG_QUALITIES[0])
    step = k // 2 - 1  # k = 2, 3 -> 0; 4, 5 -> 1; ...
    cycle, index = divmod(step, len(CROP_FRACTIONS))
    return Variant(mirror=k % 2 == 1, crop=CROP_FRACTIONS[index], quality=JPEG_QUALITIES[cycle])


def replica_name(stem: str, k: int) -> str:
    return f"{stem}_nohash_x{k}.jpg"


def center_crop_box(width: int, height: int, fraction: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centered box keeping `fraction` of each side."""
    new_width = max(1, round(width * fraction))
    new_height = max(1, round(height * fraction))
    left, top = (width - new_width) // 2, (height - new_height) // 2
    return left, top, left + new_width, top + new_height


def render_variant(image, variant: Variant) -> bytes:
    """JPEG bytes of `variant` of an upright RGB PIL image."""
    import io

    from PIL import ImageOps

    if variant.crop < 1.0:
        image = image.crop(center_crop_box(image.width, image.height, variant.crop))
    if variant.mirror:
        image = ImageOps.mirror(image)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=variant.quality)
    return buffer.getvalue()


def _load_upright_rgb(path: str):
    """The photo at `path` as an upright RGB PIL image, or None if Pillow cannot read it."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as opened:
            opened.load()
            return ImageOps.exif_transpose(opened).convert("RGB")
    except Exception:  # Pillow raises many types for unreadable files
        return None


@dataclasses.dataclass
class ReplicaStats:
    photos: int = 0  # source photos replicated N times
    written: int = 0  # files written for them (photos * N)
    copied_as_is: int = 0  # unreadable images, other files: copied once, under their own name


def _replica_stems(filenames: list[str]) -> dict[str, str]:
    """{file name: stem for its copies}; the extension joins the stem where two files of one
    folder share a stem (a.jpg and a.png), so their copies do not collide."""
    stems = [os.path.splitext(name)[0] for name in filenames]
    return {
        name: stem if stems.count(stem) == 1 else f"{stem}_{os.path.splitext(name)[1][1:]}"
        for name, stem in zip(filenames, stems, strict=True)
    }


def build_replica(data_dir: str, out_dir: str, copies: int, progress: bool = True) -> ReplicaStats:
    """Copies `data_dir` to `out_dir` with each photo of each class folder present `copies`
    times as <stem>_nohash_x<k>.jpg (k as in `variant_for`). Files Pillow cannot read, files without
    an image name and files outside the class folders are copied once, unchanged, so the
    pipeline's own checks still report them."""
    from tqdm import tqdm

    if not 1 <= copies <= MAX_REPLICATE:
        raise ValueError(f"copies must be in [1, {MAX_REPLICATE}], got {copies}")
    jobs = []  # (source, target folder, stem or None for as-is)
    for dirpath, dirnames, filenames in os.walk(data_dir):
        dirnames.sort()
        relative = os.path.relpath(dirpath, data_dir)
        target_dir = os.path.normpath(os.path.join(out_dir, relative))
        in_class_folder = relative != os.curdir
        photo_names = sorted(
            name for name in filenames if in_class_folder and images.is_image_file(name)
        )
        stems = _replica_stems(photo_names)
        for name in sorted(filenames):
            jobs.append((os.path.join(dirpath, name), target_dir, stems.get(name)))
    os.makedirs(out_dir, exist_ok=True)
    stats = ReplicaStats()
    for source, target_dir, stem in tqdm(
        jobs, desc=f"replicating x{copies}", unit="file", disable=not progress
    ):
        os.makedirs(target_dir, exist_ok=True)
        image = _load_upright_rgb(source) if stem is not None else None
        if image is None:
            shutil.copy2(source, os.path.join(target_dir, os.path.basename(source)))
            stats.copied_as_is += 1
            continue
        link_or_copy(source, os.path.join(target_dir, replica_name(stem, 0)))
        for k in range(1, copies):
            with open(os.path.join(target_dir, replica_name(stem, k)), "wb") as copy:
                copy.write(render_variant(image, variant_for(k)))
        stats.photos += 1
        stats.written += copies
    return stats
