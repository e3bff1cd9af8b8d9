"""Transformed examples as TFX's Transform writes them, for Trainer-level tests without a pipeline.

Runs the project's own preprocessing_fn through tf.Transform's Beam API on raw rows, writes the
transform graph (with the raw schema, which serving reads) and gzipped train/eval TFRecords.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

from models import features

RAW_SPEC = {
    features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
    features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
    features.FILENAME_KEY: tf.io.FixedLenFeature([1], tf.string),
}


def raw_row(encoded_image: bytes, label: int, file_name: str = "") -> dict:
    return {features.IMAGE_KEY: [encoded_image], features.LABEL_KEY: [label],
            features.FILENAME_KEY: [file_name.encode("utf-8")]}


def write_transformed_examples(path: str | os.PathLike, rows) -> None:
    """Transformed rows as tf.Examples in a GZIP TFRecord file, as Transform writes them."""
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for row in rows:
            example = tf.train.Example()
            feature_map = example.features.feature
            feature_map[features.TRANSFORMED_IMAGE_KEY].bytes_list.value.append(
                row[features.TRANSFORMED_IMAGE_KEY]
            )
            feature_map[features.TRANSFORMED_LABEL_KEY].int64_list.value.append(
                int(row[features.TRANSFORMED_LABEL_KEY])
            )
            if features.FILENAME_KEY in row:
                feature_map[features.FILENAME_KEY].bytes_list.value.append(
                    row[features.FILENAME_KEY])
            writer.write(example.SerializeToString())


def make_transformed_data(root: str | os.PathLike, raw_rows: list[dict], image_size: int,
                          num_train: int, resize: str = "squash") -> Path:
    """Writes root/transform_graph, root/train.gz (the first num_train rows) and root/eval.gz."""
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from models import transform_module

    root = Path(root)
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    with tft_beam.Context(temp_dir=str(root / "tmp")):
        (rows, _), transform_fn = (raw_rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: transform_module.preprocessing_fn(
                inputs, {"image_size": image_size, "resize": resize}),
            output_record_batches=False,
        )
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "transform_graph"))
    # TFX's Transform also records the raw schema; serving reads the image spec from it.
    metadata_io.write_metadata(metadata, str(root / "transform_graph" / "metadata"))
    write_transformed_examples(root / "train.gz", rows[:num_train])
    write_transformed_examples(root / "eval.gz", rows[num_train:])
    return root
