"""The exported classifier's serving signatures, built on the Transform's own graph.

`serving_default` takes encoded image bytes and `serving_examples` serialized raw tf.Examples
(what TFMA feeds); both return class names and scores. A photo is scored as at training: the
Transform's resize, the Trainer's decoding, then the mean of the scores of its views
(models/views.py) when the head was trained on views and `average_views` is on.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

from models import features, transform_module, views  # noqa: E402


def serving_views(settings) -> tuple[str, ...]:
    return tuple(settings.views) if settings.average_views else (views.PLAIN,)


def score_pixels(model, pixels: tf.Tensor, view_names, pad_single: bool = False) -> tf.Tensor:
    """[B, h, w, 3] pixels of one shape -> [B, classes] scores, the mean over the views."""
    scores = views.per_view(lambda batch: model(batch, training=False), pixels, view_names,
                            pad_single)
    # Pairwise adds and one multiply: TFLite has int8 kernels for these, not for AddN.
    total = scores[0]
    for more in scores[1:]:
        total = total + more
    return total if len(scores) == 1 else total * (1.0 / len(scores))


def score_jpegs(model, jpegs: tf.Tensor, settings, pad_single: bool = False) -> tf.Tensor:
    """[B] resized JPEGs of the Transform -> [B, classes] scores, in the order given.

    Squashed photos share one shape and run as one batch. Photos with their aspect ratio kept
    come in a few shapes (transform_module rounds the long side): each shape runs as one batch
    (the JPEG headers give the shapes before any decoding), and the scores go back to the
    photos' places.
    """
    view_names = serving_views(settings)

    def decode_all(batch):
        return transform_module.decode_transformed_images(batch, settings.image_size,
                                                          settings.resize)

    if settings.resize == transform_module.SQUASH:
        return score_pixels(model, decode_all(jpegs), view_names, pad_single)
    shapes = tf.map_fn(tf.image.extract_jpeg_shape, jpegs,
                       fn_output_signature=tf.TensorSpec([3], tf.int32))
    distinct, shape_of = tf.unique(transform_module.shape_key(shapes[:, 0], shapes[:, 1]))
    num_shapes = tf.size(distinct)
    scores = tf.zeros([tf.shape(jpegs)[0], len(settings.class_names)], tf.float32)

    def score_one_shape(index, scores):
        members = tf.where(tf.equal(shape_of, index))
        pixels = decode_all(tf.gather_nd(jpegs, members))
        scored = score_pixels(model, pixels, view_names, pad_single)
        return index + 1, tf.tensor_scatter_nd_update(scores, members, scored)

    _, scores = tf.while_loop(lambda index, _: index < num_shapes, score_one_shape,
                              [tf.constant(0), scores])
    return scores


def signatures(model, tf_transform_output, settings) -> dict:
    """The two serving functions; both reuse Transform's graph, so serving matches training."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    class_names = tf.constant(list(settings.class_names))
    image_spec = tf_transform_output.raw_feature_spec()[features.IMAGE_KEY]

    def classify(encoded_images, pad_single: bool = False):
        transformed = model.tft_layer({features.IMAGE_KEY: tf.reshape(encoded_images, [-1, 1])})
        scores = score_jpegs(model, transformed[features.TRANSFORMED_IMAGE_KEY], settings,
                             pad_single)
        classes = tf.tile(class_names[tf.newaxis, :], [tf.shape(scores)[0], 1])
        return {features.SCORES_KEY: scores, features.CLASSES_KEY: classes}

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=features.SERVING_INPUT_KEY)]
    )
    def serve_images(images):
        return classify(images)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=features.SERVING_EXAMPLES_INPUT_KEY)
    ])
    def serve_examples(examples):
        parsed = tf.io.parse_example(examples, {features.IMAGE_KEY: image_spec})
        # TFMA's batches: see views.pad_single_image. serving_default is not padded, since one
        # photo without oneDNN takes 19 ms alone and 31 ms padded (BENCHMARKS.md).
        return classify(tf.reshape(parsed[features.IMAGE_KEY], [-1]), pad_single=True)

    return {
        features.SERVING_IMAGES_SIGNATURE: serve_images.get_concrete_function(),
        features.SERVING_EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
    }


def export_model(model, tf_transform_output, settings, export_dir: str) -> None:
    model.save(export_dir, save_format="tf",
               signatures=signatures(model, tf_transform_output, settings))
    with tf.io.gfile.GFile(os.path.join(export_dir, "assets", features.LABELS_FILE), "w") as labels:
        labels.write("".join(f"{name}\n" for name in settings.class_names))
