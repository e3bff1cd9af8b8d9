"""Copies of one photo among the files to convert: byte-identical, or near (perceptual hash).

A group is every photo linked to another by equal bytes (SHA-256) or, with a threshold, by a
Hamming distance of their perceptual hashes (images.perceptual_hash) of at most that many bits;
linked photos chain (A near B near C is one group), so that no two of them end up in train and
test. A group in one class goes to one split, the split that retrain.py's hash gives its
oldest member (by modification time, then path), so adding a copy never moves an old photo. A
group in two classes is a label conflict: no member is kept. Pure: no Beam, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from components.image_example_gen import images

DROP = ""  # the split override of a label conflict's photos: left out


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What grouping needs of one photo: no pixels, about 150 bytes."""

    path: str
    class_name: str
    mtime_ns: int
    sha256: str
    phash: str = ""  # hex; "" when grouping is off or the file does not decode


def _bits(fingerprints: Sequence[Fingerprint]) -> np.ndarray:
    return np.stack([np.unpackbits(np.frombuffer(bytes.fromhex(item.phash), np.uint8))
                     for item in fingerprints])


# Rows of the distance matrix computed at once: 512 x N float32, 50 MB at 24,000 photos.
DISTANCE_CHUNK = 512


def _near_pairs(fingerprints: Sequence[Fingerprint], max_distance: int):
    """(rows, columns) of the pairs within `max_distance` bits (each photo with itself too).

    Hamming distances through one matrix product, |a| + |b| - 2 a.b over the 0/1 bits, exact
    in float32: BLAS makes it about 20x faster than scikit-learn's brute-force radius search
    (bench/near_duplicate_speed.py; BENCHMARKS.md, "Ten times the photos"). Chunked, so
    memory stays linear in the photos; the time is quadratic.
    """
    hashed = [index for index, item in enumerate(fingerprints) if item.phash]
    if len(hashed) < 2 or max_distance <= 0:
        return np.zeros(0, int), np.zeros(0, int)
    bits = _bits([fingerprints[index] for index in hashed]).astype(np.float32)
    ones = bits.sum(axis=1)
    rows, columns = [], []
    for start in range(0, len(bits), DISTANCE_CHUNK):
        chunk = bits[start:start + DISTANCE_CHUNK]
        distances = ones[start:start + len(chunk), None] + ones[None, :] - 2 * (chunk @ bits.T)
        near_rows, near_columns = np.nonzero(distances <= max_distance + 0.5)
        rows.append(near_rows + start)
        columns.append(near_columns)
    hashed = np.asarray(hashed)
    return hashed[np.concatenate(rows)], hashed[np.concatenate(columns)]


def _identical_pairs(fingerprints: Sequence[Fingerprint]):
    first_of: dict[str, int] = {}
    rows, columns = [], []
    for index, item in enumerate(fingerprints):
        first = first_of.setdefault(item.sha256, index)
        if first != index:
            rows.append(first)
            columns.append(index)
    return np.asarray(rows, int), np.asarray(columns, int)


def groups(fingerprints: Sequence[Fingerprint], max_distance: int) -> list[list[int]]:
    """The indices of each group of two or more photos (connected components of the links)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    count = len(fingerprints)
    if count < 2:
        return []
    near_rows, near_columns = _near_pairs(fingerprints, max_distance)
    same_rows, same_columns = _identical_pairs(fingerprints)
    rows = np.concatenate([near_rows, same_rows])
    columns = np.concatenate([near_columns, same_columns])
    links = coo_matrix((np.ones(len(rows)), (rows, columns)), shape=(count, count))
    _, component = connected_components(links, directed=False)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(component):
        members.setdefault(int(label), []).append(index)
    return sorted((group for group in members.values() if len(group) > 1),
                  key=lambda group: min(fingerprints[index].path for index in group))


def largest_distance(fingerprints: Sequence[Fingerprint]) -> int | None:
    """The largest pHash distance between two members of a group (None without hashes)."""
    hashed = [item for item in fingerprints if item.phash]
    if len(hashed) < 2:
        return None
    bits = _bits(hashed)
    return int((bits[:, None, :] != bits[None, :, :]).sum(axis=-1).max())


def resolve(fingerprints: Sequence[Fingerprint], max_distance: int, testing_percentage: int,
            validation_percentage: int) -> Iterator[tuple[str, object]]:
    """("override", (path, split or DROP)) for every grouped photo, and one report record per
    group: ("duplicate" | "near_duplicate", {"files", "class", "split", "oldest", ...}) or
    ("conflict", {"files", "classes", "identical"})."""
    fingerprints = sorted(fingerprints, key=lambda item: item.path)
    for group in groups(fingerprints, max_distance):
        members = [fingerprints[index] for index in group]
        files = [item.path for item in members]
        classes = sorted({item.class_name for item in members})
        identical = len({item.sha256 for item in members}) == 1
        if len(classes) > 1:
            for path in files:
                yield "override", (path, DROP)
            yield "conflict", {"files": files, "classes": classes, "identical": identical}
            continue
        oldest = min(members, key=lambda item: (item.mtime_ns, item.path)).path
        split = images.which_split(oldest, testing_percentage, validation_percentage)
        for path in files:
            yield "override", (path, split)
        record = {"files": files, "class": classes[0], "split": split, "oldest": oldest}
        if identical:
            yield "duplicate", record
        else:
            yield "near_duplicate", {**record, "distance": largest_distance(members)}
