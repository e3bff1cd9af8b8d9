"""Reading the Transform's resized photos, and one forward pass per view through the cache.

Photos resized with their aspect ratio kept come in a few shapes (transform_module rounds the
long side), and a batch needs one shape. The feature pass knows every photo up front, so
`shape_batches` sorts them by shape; streamed datasets (fine-tuning) group them with tf.data's
`group_by_window` in `by_shape`. Either way each batch is full except the last of each shape.
"""

from __future__ import annotations

import itertools
import logging
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402

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


def read_split(file_patterns: list[str], tf_transform_output
               ) -> tuple[list[bytes], np.ndarray, list[str]]:
    """(resized JPEGs, labels, file names) of a split, in file order; small (tens of KB a
    photo). A file name is "" when the Transform had none to pass on (other ExampleGens)."""
    spec = tf_transform_output.transformed_feature_spec()
    keys = [features.TRANSFORMED_IMAGE_KEY, features.TRANSFORMED_LABEL_KEY]
    if features.FILENAME_KEY in spec:
        keys.append(features.FILENAME_KEY)
    wanted = {key: spec[key] for key in keys}
    jpegs, labels, files = [], [], []
    for example in records(file_patterns).map(
            lambda record: tf.io.parse_single_example(record, wanted)):
        jpegs.append(example[features.TRANSFORMED_IMAGE_KEY].numpy())
        labels.append(int(example[features.TRANSFORMED_LABEL_KEY].numpy()))
        name = example.get(features.FILENAME_KEY)
        files.append(name.numpy().decode("utf-8", "replace") if name is not None else "")
    return jpegs, np.asarray(labels, np.int64), files


def jpeg_shape(jpeg: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG's header, without decoding it."""
    height, width, _ = tf.image.extract_jpeg_shape(jpeg).numpy()
    return int(height), int(width)


def shape_batches(shapes: list[tuple[int, int]], batch_size: int) -> list[np.ndarray]:
    """Positions into `shapes`, in batches of at most `batch_size` of one shape each.

    Sorted by shape first, so the pass decodes one batch at a time and holds no partial batch
    of every shape at once, as tf.data's group_by_window did (BENCHMARKS.md, "The Trainer's
    memory").
    """
    order = sorted(range(len(shapes)), key=lambda position: (shapes[position], position))
    batches = []
    for _, same_shape in itertools.groupby(order, key=shapes.__getitem__):
        same_shape = list(same_shape)
        batches += [np.asarray(same_shape[start:start + batch_size], np.int64)
                    for start in range(0, len(same_shape), batch_size)]
    return batches


def _decoded_batches(jpegs: list[bytes], batches: list[np.ndarray], settings):
    """(positions, images [B, h, w, 3] float32) for each of `batches`, decoded two ahead."""
    flat = tf.constant(np.concatenate(batches))
    starts = tf.constant(np.cumsum([0] + [len(batch) for batch in batches[:-1]]), tf.int64)
    sizes = tf.constant([len(batch) for batch in batches], tf.int64)
    encoded = tf.constant(jpegs)

    def decode(batch_index):
        positions = flat[starts[batch_index]:starts[batch_index] + sizes[batch_index]]
        images = transform_module.decode_transformed_images(
            tf.gather(encoded, positions), settings.image_size, settings.resize)
        return positions, images

    dataset = tf.data.Dataset.range(len(batches)).map(decode, num_parallel_calls=2)
    return dataset.prefetch(1)


def cached_features(extract, jpegs: list[bytes], settings, cache, view_names):
    """([features [N, D] per view], photos computed): the cache first, else one pass.

    `extract(images) -> features`; a photo missing from the cache is decoded once, and each
    view of a batch of photos runs as one batch, never a batch of one (oneDNN's single-image
    path is ~10x slower, BENCHMARKS.md).
    """
    keys = [bottleneck_cache.photo_key(jpeg) for jpeg in jpegs]
    missing = [i for i, key in enumerate(keys)
               if any(bottleneck_cache.view_key(key, view) not in cache for view in view_names)]
    if missing:
        missing_jpegs = [jpegs[i] for i in missing]
        batches = shape_batches([jpeg_shape(jpeg) for jpeg in missing_jpegs], FEATURE_BATCH)
        for positions, images in _decoded_batches(missing_jpegs, batches, settings):
            outputs = views.per_view(extract, images, view_names, pad_single=True)
            for view, features in zip(view_names, outputs, strict=True):
                for row, position in enumerate(positions.numpy()):
                    cache.put(bottleneck_cache.view_key(keys[missing[position]], view),
                              features[row].numpy())
    by_view = [np.stack([cache.get(bottleneck_cache.view_key(key, view)) for key in keys])
               for view in view_names]
    return by_view, len(missing)


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
