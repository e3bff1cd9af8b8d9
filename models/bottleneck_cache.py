"""MobileNet features ("bottlenecks") of each photo, computed once per (photo, module).

TF for Poets kept one bottleneck file per photo so that a second training run skipped the
forward passes. Here the key is the SHA-256 of the resized JPEG that Transform wrote (which
fixes the photo and the resolution) and the folder is one per module (`module_key`). New
features are appended as one shard file per run, written to a temporary name and renamed, so
an interrupted run never leaves a half-written shard and never loses earlier ones.
Any path tf.io.gfile can write (local, gs://) works, so the cache also serves remote runs.

Features are kept as float16, in memory and in the shards: half the disk of float32 (9 MB
less in a run over the shared photos) for the same head (BENCHMARKS.md, "The pipeline with
the RBF head"). Features beyond float16's range stay float32.
A run and its rerun then see exactly the same numbers. Shards of float32 still load.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import uuid

import numpy as np

from models.features import PLAIN_VIEW

logger = logging.getLogger(__name__)
SHARD_PREFIX = "features-"
STORED_DTYPE = np.float16
# Small files that identify a TF Hub SavedModel's graph and weights without reading them all.
_MODULE_ID_FILES = ("saved_model.pb", "variables/variables.index", "tfhub_module.pb")


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def module_key(model_handle: str) -> str:
    """A short key of a module: its identifying files' bytes if local, else its handle."""
    digest = hashlib.sha256(model_handle.encode())
    if os.path.isdir(model_handle):
        digest = hashlib.sha256()
        for name in _MODULE_ID_FILES:
            path = os.path.join(model_handle, name)
            if os.path.exists(path):
                with open(path, "rb") as file:
                    digest.update(name.encode() + file.read())
    return digest.hexdigest()[:16]


def photo_key(resized_jpeg: bytes) -> str:
    return hashlib.sha256(resized_jpeg).hexdigest()


def view_key(photo: str, view: str) -> str:
    """The key of one view of a photo (models/views.py); the plain view is the photo's."""
    return photo if view == PLAIN_VIEW else f"{photo}/{view}"


def _as_stored(features) -> np.ndarray:
    """float16, unless that overflows: features beyond float16's range (65,504), from another
    module than MobileNet's, stay float32."""
    features = np.asarray(features)
    stored = features.astype(STORED_DTYPE)
    if not np.isfinite(stored).all() and np.isfinite(features).all():
        return features.astype(np.float32)
    return stored


def shard_paths(folder: str) -> list[str]:
    """The shard files of a module's cache folder, in name order (none if it does not exist)."""
    if not _gfile().exists(folder):
        return []
    return [os.path.join(folder, name) for name in sorted(_gfile().listdir(folder))
            if name.startswith(SHARD_PREFIX) and name.endswith(".npz")]


def read_shard(path: str) -> tuple[list[str], np.ndarray]:
    """(keys, features [N, D] in the dtype they were saved in) of one shard file."""
    with _gfile().GFile(path, "rb") as file:
        shard = np.load(io.BytesIO(file.read()))
        keys, features = shard["keys"], shard["features"]
    if keys.dtype.kind == "S":  # ASCII bytes since float16; unicode strings before
        keys = np.char.decode(keys, "ascii")
    return keys.tolist(), features


class BottleneckCache:
    """A dict-like store of features by photo key, persisted under `directory/module_key`."""

    def __init__(self, directory: str, module: str):
        self.directory = os.path.join(directory, module) if directory else ""
        self._features: dict[str, np.ndarray] = {}
        self._new: dict[str, np.ndarray] = {}
        for path in shard_paths(self.directory) if self.directory else []:
            self._load_shard(path)

    def _load_shard(self, path: str) -> None:
        try:
            keys, features = read_shard(path)
        except Exception as error:  # noqa: BLE001 - a bad shard only costs recomputing it
            logger.warning("bottleneck cache: ignoring unreadable %s (%s)", path, error)
            return
        self._features.update(zip(keys, _as_stored(features), strict=True))

    def __len__(self) -> int:
        return len(self._features)

    def __contains__(self, key: str) -> bool:
        return key in self._features

    def get(self, key: str) -> np.ndarray | None:
        """The stored features as float32 (what the heads compute in), None if absent."""
        found = self._features.get(key)
        return None if found is None else found.astype(np.float32)

    def put(self, key: str, features: np.ndarray) -> None:
        stored = _as_stored(features)
        self._features[key] = stored
        self._new[key] = stored

    def flush(self) -> str | None:
        """Writes the features added since the last flush as one new shard; returns its path."""
        if not self.directory or not self._new:
            return None
        _gfile().makedirs(self.directory)
        name = f"{SHARD_PREFIX}{uuid.uuid4().hex}.npz"
        buffer = io.BytesIO()
        np.savez(
            # Keys as ASCII bytes: numpy's unicode strings take four bytes a character.
            buffer, keys=np.array(list(self._new), dtype=np.bytes_),
            features=np.stack(list(self._new.values())),
        )
        temporary = os.path.join(self.directory, f".tmp-{name}")
        with _gfile().GFile(temporary, "wb") as file:
            file.write(buffer.getvalue())
        final = os.path.join(self.directory, name)
        _gfile().rename(temporary, final, overwrite=False)
        self._new = {}
        return final
