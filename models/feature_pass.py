"""Reading the Transform's resized photos, and one forward pass per view through the cache.

Photos resized with their aspect ratio kept come in a few shapes (transform_module rounds the
long side), and a batch needs one shape. The feature pass streams a split once: each photo
missing from the cache waits, as its JPEG bytes, in a pending batch of its shape, which runs
when full (the last of each shape at the end), so memory stays flat however many photos there
are. Streamed datasets (fine-tuning) group photos with tf.data's `group_by_window` in
`by_shape`.
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
import os
from collections.abc import Iterable, Iterator

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
from PIL import Image  # noqa: E402

from models import bottleneck_cache, features, transform_module, views  # noqa: E402

logger = logging.getLogger(__name__)
# Half of 32: the Trainer's peak fell by 740 MB with this, malloc's arenas capped at two by
# runner_local.py and the heap trimmed after the pass (BENCHMARKS.md, issue 15), no slower.
FEATURE_BATCH = 16


def _expand_patterns(file_patterns: list[str]) -> list[str]:
    files = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no transformed examples match {file_patterns}")
    return files


def records(file_patterns: list[str]) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(_expand_patterns(file_patterns), compression_type="GZIP")


def parser(tf_transform_output: tft.TFTransformOutput):
    """A record -> (resized JPEG, label) function."""
    feature_spec = tf_transform_output.transformed_feature_spec()

    def parse(record):
        feature_map = tf.io.parse_single_example(record, feature_spec)
        return (feature_map[features.TRANSFORMED_IMAGE_KEY],
                feature_map[features.TRANSFORMED_LABEL_KEY])

    return parse


def _shape_key(image: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(image)
    return transform_module.shape_key(shape[0], shape[1])


def by_shape(dataset: tf.data.Dataset, batch_size: int, image_of) -> tf.data.Dataset:
    """Batches of elements whose image (`image_of(*element)`) has one shape."""
    return dataset.group_by_window(
        key_func=lambda *element: _shape_key(image_of(*element)),
        reduce_func=lambda _, window: window.batch(batch_size),
        window_size=batch_size,
    )


class SplitReader:
    """A split's resized JPEGs in file order, streamed (never all held at once); iterating
    fills `labels` and `files` (a file name is "" when the Transform had none to pass on, as
    from other ExampleGens). Iterate once."""

    def __init__(self, file_patterns: list[str], tf_transform_output):
        spec = tf_transform_output.transformed_feature_spec()
        keys = [features.TRANSFORMED_IMAGE_KEY, features.TRANSFORMED_LABEL_KEY]
        if features.FILENAME_KEY in spec:
            keys.append(features.FILENAME_KEY)
        self._wanted = {key: spec[key] for key in keys}
        self._file_patterns = file_patterns
        self._labels: list[int] = []
        self.files: list[str] = []

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self._labels, np.int64)

    def __iter__(self) -> Iterator[bytes]:
        for example in records(self._file_patterns).map(
                lambda record: tf.io.parse_single_example(record, self._wanted)):
            self._labels.append(int(example[features.TRANSFORMED_LABEL_KEY].numpy()))
            name = example.get(features.FILENAME_KEY)
            self.files.append(name.numpy().decode("utf-8", "replace") if name is not None else "")
            yield example[features.TRANSFORMED_IMAGE_KEY].numpy()


def jpeg_shape(jpeg: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG's header, without decoding it."""
    with Image.open(io.BytesIO(jpeg)) as image:
        width, height = image.size
    return height, width


def pending_batches(photos: Iterable[tuple[int, bytes]], batch_size: int
                    ) -> Iterator[list[tuple[int, bytes]]]:
    """(position, JPEG) pairs regrouped into batches of at most `batch_size` of one shape:
    each batch as soon as it is full, the partial ones at the end. Holds at most a partial
    batch of JPEG bytes per shape."""
    pending: dict[tuple[int, int], list[tuple[int, bytes]]] = {}
    for position, jpeg in photos:
        shape = jpeg_shape(jpeg)
        batch = pending.setdefault(shape, [])
        batch.append((position, jpeg))
        if len(batch) == batch_size:
            yield pending.pop(shape)
    yield from pending.values()


def cached_features(extract, jpegs: Iterable[bytes], settings, cache, view_names):
    """([features [N, D] per view], photos computed): the cache first, else one pass.

    `extract(images) -> features`; `jpegs` is read once, in order (a list or a SplitReader). A
    photo missing from the cache is decoded once, and each view of a batch of photos runs as
    one batch, never a batch of one (oneDNN's single-image path is ~10x slower, BENCHMARKS.md).
    The next batch is decoded while the network runs on this one.
    """
    keys: list[str] = []

    def missing():
        for position, jpeg in enumerate(jpegs):
            key = bottleneck_cache.photo_key(jpeg)
            keys.append(key)
            if any(bottleneck_cache.view_key(key, view) not in cache for view in view_names):
                yield position, jpeg

    def decode(batch):
        images = transform_module.decode_transformed_images(
            tf.constant([jpeg for _, jpeg in batch]), settings.image_size, settings.resize)
        return [position for position, _ in batch], images

    def run(positions, images):
        outputs = views.per_view(extract, images, view_names, pad_single=True)
        for view, view_features in zip(view_names, outputs, strict=True):
            for row, position in enumerate(positions):
                cache.put(bottleneck_cache.view_key(keys[position], view),
                          view_features[row].numpy())

    computed = 0
    with concurrent.futures.ThreadPoolExecutor(1) as decoder:
        ahead = None
        for batch in pending_batches(missing(), FEATURE_BATCH):
            decoding = decoder.submit(decode, batch)
            if ahead is not None:
                run(*ahead.result())
            ahead, computed = decoding, computed + len(batch)
        if ahead is not None:
            run(*ahead.result())
    by_view = [np.stack([cache.get(bottleneck_cache.view_key(key, view)) for key in keys])
               for view in view_names]
    return by_view, computed


def image_dataset(file_patterns, tf_transform_output, settings, batch_size: int,
                  shuffle: bool = False, distort=None) -> tf.data.Dataset:
    """(images [B, h, w, 3] float32 in [0, 1], labels [B]) batches of one shape each, streamed.

    `distort(image) -> image` of the same shape, applied per image after decoding.
    """
    parse = parser(tf_transform_output)

    def decode(record):
        jpeg, label = parse(record)
        image = transform_module.decode_transformed_image(jpeg, settings.image_size,
                                                          settings.resize)
        return (distort(image) if distort else image), label

    dataset = records(file_patterns)
    if shuffle:
        # Shuffles the small serialized JPEGs, not decoded pixels, to keep memory flat.
        dataset = dataset.shuffle(2048, seed=settings.seed, reshuffle_each_iteration=True)
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if settings.resize == transform_module.SQUASH:
        dataset = dataset.batch(batch_size)
    else:
        dataset = by_shape(dataset, batch_size, lambda image, _: image)
    return dataset.prefetch(tf.data.AUTOTUNE)
