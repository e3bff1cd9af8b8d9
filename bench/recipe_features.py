"""Features of every photo under several views, for choosing the recipe by cross-validation.

For each view (size, resize mode, mirrored or not) it runs the resolution-free MobileNet
(models/resolution_free.py) once over every photo of the folder, prepared as the pipeline
does (ImageExampleGen's normalisation, the Transform's resize and JPEG), and keeps
four poolings of the network: the average (the module's own feature vector), a generalised mean
(p=3) and the maximum of the last block's map, and the average of block 11's map. Each view is
one .npz under --out, reused if present. bench.recipe_cv reads them.

    .venv/bin/python -m bench.recipe_features --data-dir ../shared/assets/flower_photos \\
        --module ../shared/assets/mobilenet_v1_100_224_feature_vector --out /tmp/recipe \\
        --views squash224 squash288 short288 short288m
"""

from __future__ import annotations

import argparse
import os
import time

from bench import common

common.tensorflow_defaults(log_level="3", onednn=True)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from bench import photos, recipe_data  # noqa: E402
from models import resolution_free, transform_module  # noqa: E402

BATCH = 32


def parse_view(view: str) -> tuple[str, int, bool]:
    """'short288m' -> ('short-side', 288, True)."""
    mirrored = view.endswith("m")
    body = view[:-1] if mirrored else view
    for prefix, mode in (("squash", "squash"), ("short", "short-side")):
        if body.startswith(prefix):
            return mode, int(body[len(prefix):]), mirrored
    raise ValueError(f"view {view!r}: squashNNN or shortNNN, 'm' at the end for the mirror")


def pooled_extractor(module_path: str) -> tf_keras.Model:
    variables = {v.name.split(":")[0]: v for v in tf.saved_model.load(module_path).variables}
    model = resolution_free.build_mobilenet_v1(resolution_free.mobilenet_v1_width(variables))
    resolution_free.copy_weights(variables, model)
    last = model.get_layer("conv_pw_13_relu").output
    block11 = model.get_layer("conv_pw_11_relu").output
    pooled = [
        tf.reduce_mean(last, axis=[1, 2]),
        tf.reduce_mean(tf.maximum(last, 1e-6) ** 3, axis=[1, 2]) ** (1 / 3),
        tf.reduce_max(last, axis=[1, 2]),
        tf.reduce_mean(block11, axis=[1, 2]),
    ]
    return tf_keras.Model(model.input, pooled)


def prepared(encoded: bytes, mode: str, size: int, mirrored: bool) -> np.ndarray:
    """Pixels as the Trainer sees them: the Transform's JPEG, decoded to [0, 1]."""
    jpeg = transform_module.resize_to_jpeg(tf.constant([encoded]), size, mode)[0]
    image = tf.image.convert_image_dtype(tf.io.decode_jpeg(jpeg, channels=3), tf.float32)
    return (tf.image.flip_left_right(image) if mirrored else image).numpy()


def extract_view(extractor, encoded_photos: list[bytes], view: str) -> np.ndarray:
    mode, size, mirrored = parse_view(view)
    pixels = [prepared(encoded, mode, size, mirrored) for encoded in encoded_photos]
    by_shape: dict[tuple, list[int]] = {}
    for index, image in enumerate(pixels):
        by_shape.setdefault(image.shape, []).append(index)
    call = tf.function(lambda x: extractor(x, training=False), reduce_retracing=True)
    out = np.zeros((len(pixels), recipe_data.FEATURES_WIDTH), np.float32)
    for indices in by_shape.values():
        for start in range(0, len(indices), BATCH):
            chunk = indices[start:start + BATCH]
            pooled = call(np.stack([pixels[i] for i in chunk]))
            out[chunk] = np.concatenate([p.numpy() for p in pooled], axis=1)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--views", nargs="+", required=True)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    class_names, rows = photos.list_photos(args.data_dir)
    labels = np.array([row[1] for row in rows])
    splits = np.array([row[2] for row in rows])
    np.savez(os.path.join(args.out, recipe_data.PHOTOS_FILE), labels=labels, splits=splits,
             paths=np.array([row[0] for row in rows]), class_names=np.array(class_names))
    encoded = [photos.read_encoded(os.path.join(args.data_dir, row[0])) for row in rows]
    extractor = pooled_extractor(args.module)
    for view in args.views:
        path = recipe_data.view_path(args.out, view)
        if os.path.exists(path):
            continue
        started = time.time()
        features = extract_view(extractor, encoded, view)
        seconds = time.time() - started
        np.savez(path, features=features.astype(np.float16), seconds=seconds)
        print(f"{view}: {len(encoded)} photos in {seconds:.0f} s "
              f"({len(encoded) / seconds:.1f} img/s)", flush=True)


if __name__ == "__main__":
    main()
