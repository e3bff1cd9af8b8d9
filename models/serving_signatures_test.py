"""The exported model as serving sees it: saved_model_cli, the loaded signatures, TFLite, TFMA.

One small model for the module: the Trainer's own run_fn (head only) on 45 photos of three
colours, with a real Transform graph and a random MobileNet 0.25/128. Nothing here calls the
training code's Python objects after export; everything reads the exported folder.
"""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from tfx.components.trainer.fn_args_utils import FnArgs  # noqa: E402

from models import features, tflite_export, trainer_module  # noqa: E402
from models.training_config import TrainingConfig  # noqa: E402
from tests.support import make_random_hub_mobilenet  # noqa: E402
from tests.support.transformed import make_transformed_data, raw_row  # noqa: E402
from tools import classifiers, tflite_classifier  # noqa: E402

IMAGE_SIZE = 128
CLASSES = ("red", "green", "blue")  # label i is the photo's dominant channel i
FORMATS = ("JPEG", "PNG", "GIF", "BMP")
SAVED_MODEL_CLI = Path(sys.executable).with_name("saved_model_cli")


def _photo_pixels(label: int, seed: int) -> Image.Image:
    """A 48x40 photo dominated by channel ``label``, with smooth (not per-pixel) variation,
    so that JPEG's loss does not change what a random MobileNet sees."""
    pixels = np.random.default_rng(seed).integers(0, 60, (5, 6, 3)).astype(np.uint8)
    pixels[..., label] += 190
    return Image.fromarray(pixels).resize((48, 40), Image.BILINEAR)


def _encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def _raw_example(encoded: bytes, label: int) -> tf.train.Example:
    """A tf.Example as ImageExampleGen writes it (the feature_map serving_examples reads)."""
    example = tf.train.Example()
    feature_map = example.features.feature
    feature_map[features.IMAGE_KEY].bytes_list.value.append(encoded)
    feature_map[features.LABEL_KEY].int64_list.value.append(label)
    feature_map[features.LABEL_NAME_KEY].bytes_list.value.append(CLASSES[label].encode())
    return example


@pytest.fixture(scope="module")
def serving_dir(tmp_path_factory):
    """The Trainer's serving_model_dir after run_fn: the SavedModel and its tflite/ folder."""
    root = tmp_path_factory.mktemp("serving_signatures")
    raw = [raw_row(_encode(_photo_pixels(i % 3, i), "JPEG"), i % 3) for i in range(45)]
    # The defaults' shape: the aspect ratio kept, a second, smaller scale as a view.
    make_transformed_data(root, raw, IMAGE_SIZE, num_train=36, resize="short-side")
    hub_module = make_random_hub_mobilenet(root / "hub", alpha=0.25, resolution=IMAGE_SIZE)
    settings = TrainingConfig(
        model_handle=str(hub_module), image_size=IMAGE_SIZE, class_names=CLASSES,
        resize="short-side", views=("plain", "squash96"), backbone_dir=str(root / "backbones"),
    )
    trainer_module.run_fn(FnArgs(
        train_files=[str(root / "train.gz")],
        eval_files=[str(root / "eval.gz")],
        transform_output=str(root / "transform_graph"),
        serving_model_dir=str(root / "serving"),
        model_run_dir=str(root / "logs"),
        custom_config=settings.to_custom_config(),
    ))
    return root / "serving"


@pytest.fixture(scope="module")
def loaded(serving_dir):
    return tf.saved_model.load(str(serving_dir))


def parse_signature_defs(cli_output: str) -> dict:
    """`saved_model_cli show --all` text to {signature: {"inputs"/"outputs": {key: (dtype,
    shape)}, "method": name}}."""
    signatures = {}
    for block in re.split(r"\n(?=signature_def\[)", cli_output):
        name = re.match(r"signature_def\['([^']+)'\]", block)
        if not name:
            continue
        tensors = {"inputs": {}, "outputs": {}}
        for kind, key, dtype, shape in re.findall(
            r"(inputs|outputs)\['([^']+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (.+)", block
        ):
            tensors[kind][key] = (dtype, shape)
        method = re.search(r"Method name is: (\S*)", block)
        signatures[name.group(1)] = {**tensors, "method": method.group(1) if method else ""}
    return signatures


def test_saved_model_cli_shows_both_signatures(serving_dir):
    shown = subprocess.run(
        [str(SAVED_MODEL_CLI), "show", "--dir", str(serving_dir), "--all"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    signatures = parse_signature_defs(shown.stdout)
    outputs = {"classes": ("DT_STRING", "(-1, 3)"), "scores": ("DT_FLOAT", "(-1, 3)")}
    assert signatures["serving_default"] == {
        "inputs": {"images": ("DT_STRING", "(-1)")},
        "outputs": outputs,
        "method": "tensorflow/serving/predict",
    }
    assert signatures["serving_examples"] == {
        "inputs": {"examples": ("DT_STRING", "(-1)")},
        "outputs": outputs,
        "method": "tensorflow/serving/predict",
    }


def test_serving_default_takes_a_batch_mixing_jpeg_png_gif_bmp(loaded):
    photos = [_photo_pixels(label, seed=100 + label) for label in range(3)]
    batch = [_encode(photo, image_format) for photo in photos for image_format in FORMATS]
    outputs = loaded.signatures["serving_default"](images=tf.constant(batch))
    scores = outputs["scores"].numpy()
    assert scores.shape == (12, 3) and scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert outputs["classes"].numpy().tolist() == [[name.encode() for name in CLASSES]] * 12
    # Each photo gets its class whatever the format (JPEG's loss and GIF's 256-colour palette
    # move the scores of a random MobileNet, but not that far).
    assert scores.argmax(axis=1).tolist() == [label for label in range(3) for _ in FORMATS]
    png, bmp = scores[1::4], scores[3::4]
    np.testing.assert_allclose(bmp, png, atol=1e-6)  # Both lossless: the same pixels.


def test_serving_examples_agrees_with_serving_default(loaded):
    photos = [_encode(_photo_pixels(label, seed=200 + label), "PNG") for label in range(3)]
    examples = [_raw_example(photo, label).SerializeToString() for label, photo in
                enumerate(photos)]
    from_examples = loaded.signatures["serving_examples"](examples=tf.constant(examples))
    from_images = loaded.signatures["serving_default"](images=tf.constant(photos))
    assert from_examples["scores"].shape == (3, 3)
    np.testing.assert_allclose(from_examples["scores"], from_images["scores"], atol=1e-6)
    assert from_examples["classes"].numpy().tolist() == from_images["classes"].numpy().tolist()
    assert from_examples["scores"].numpy().argmax(axis=1).tolist() == [0, 1, 2]


def test_a_single_photo_gets_one_row_equal_to_its_row_in_a_batch(loaded):
    # serving_examples pads a batch of one to two inside the graph (oneDNN's slow batch-1 path).
    photos = [_encode(_photo_pixels(label, seed=300 + label), "PNG") for label in range(3)]
    batch = loaded.signatures["serving_default"](images=tf.constant(photos))["scores"].numpy()
    for index, photo in enumerate(photos):
        alone = loaded.signatures["serving_default"](images=tf.constant([photo]))
        assert alone["scores"].shape == (1, 3) and alone["classes"].shape == (1, 3)
        np.testing.assert_allclose(alone["scores"].numpy()[0], batch[index], atol=1e-5)
    example = _raw_example(photos[1], 1).SerializeToString()
    from_example = loaded.signatures["serving_examples"](examples=tf.constant([example]))
    assert from_example["scores"].shape == (1, 3)
    np.testing.assert_allclose(from_example["scores"].numpy()[0], batch[1], atol=1e-5)


def test_a_batch_of_mixed_shapes_scores_each_photo_as_it_scores_alone(loaded):
    # Landscape, portrait and square photos resize to three shapes: each shape runs as its
    # own batch inside the graph, and every row must come back to its photo's place.
    sizes = [(48, 40), (40, 48), (44, 44), (48, 40), (96, 40), (40, 48)]
    photos = [_encode(_photo_pixels(index % 3, seed=400 + index).resize(size), "PNG")
              for index, size in enumerate(sizes)]
    batch = loaded.signatures["serving_default"](images=tf.constant(photos))["scores"].numpy()
    assert batch.shape == (len(photos), 3)
    for index, photo in enumerate(photos):
        alone = loaded.signatures["serving_default"](images=tf.constant([photo]))["scores"]
        np.testing.assert_allclose(alone.numpy()[0], batch[index], atol=1e-5)
    assert batch.argmax(axis=1).tolist() == [index % 3 for index in range(len(photos))]


def test_run_fn_writes_tflite_models_and_labels_beside_the_saved_model(serving_dir):
    folder = serving_dir / features.TFLITE_DIR
    assert sorted(path.name for path in folder.iterdir()) == [
        "labels.txt", "model_float.tflite", "model_int8.tflite", "preprocessing.json"
    ]
    assert (folder / "labels.txt").read_text().split() == list(CLASSES)
    float_size = (folder / "model_float.tflite").stat().st_size
    int8_size = (folder / "model_int8.tflite").stat().st_size
    # About 4x for MobileNet 1.0 (BENCHMARKS.md); less for this tiny one, whose flatbuffer
    # overhead, int32 biases and the views' ops weigh more.
    assert int8_size * 2 < float_size
    int8_model = (folder / "model_int8.tflite").read_bytes()
    assert tflite_export.float_tensors(int8_model) == []


@pytest.mark.parametrize("model_file", ["model_float.tflite", "model_int8.tflite"])
def test_tflite_models_agree_with_the_saved_model(serving_dir, model_file):
    photos = [_encode(_photo_pixels(label, seed=300 + i), "JPEG")
              for i, label in enumerate([0, 1, 2, 2, 1, 0])]
    saved_model = classifiers.load_classifier(serving_dir)
    tflite = tflite_classifier.load_tflite_classifier(serving_dir / "tflite" / model_file)
    expected, classes = saved_model(photos)
    scores, tflite_classes = tflite(photos)
    assert tflite_classes == classes == list(CLASSES)
    assert np.argmax(scores, axis=1).tolist() == np.argmax(expected, axis=1).tolist()
    # The same preprocessing as the SavedModel's Transform graph: float TFLite differs only
    # by kernel rounding, int8 by quantization (of a random backbone, so a coarse bound).
    tolerance = 1e-4 if model_file == "model_float.tflite" else 0.1
    np.testing.assert_allclose(scores, expected, atol=tolerance)


def test_tfma_evaluates_the_folder_with_its_tflite_subfolder(serving_dir, tmp_path, monkeypatch):
    """The Evaluator's own model loading and metrics, on the folder the Trainer wrote, loaded
    as a plain SavedModel: a Keras load (TFMA's guess without `model_type`) is slower."""
    import tensorflow_model_analysis as tfma

    from pipeline.pipeline import make_eval_config

    examples = tmp_path / "examples.tfrecord"
    with tf.io.TFRecordWriter(str(examples)) as writer:
        for i, label in enumerate([0, 1, 2, 0, 1, 2]):
            photo = _encode(_photo_pixels(label, seed=400 + i), "JPEG")
            writer.write(_raw_example(photo, label).SerializeToString())
    keras_loads = []
    keras_load = tf.keras.models.load_model

    def counted_keras_load(*args, **kwargs):
        keras_loads.append(args)
        return keras_load(*args, **kwargs)

    monkeypatch.setattr(tf.keras.models, "load_model", counted_keras_load)
    eval_config = make_eval_config(features.LABEL_KEY, None, features.LABEL_NAME_KEY)
    result = tfma.run_model_analysis(
        eval_shared_model=tfma.default_eval_shared_model(
            eval_saved_model_path=str(serving_dir), eval_config=eval_config
        ),
        eval_config=eval_config,
        data_location=str(examples),
        output_path=str(tmp_path / "tfma"),
    )
    overall = dict(result.slicing_metrics)[()][""][""]
    assert overall["example_count"]["doubleValue"] == 6
    assert overall["sparse_categorical_accuracy"]["doubleValue"] == 1.0
    assert keras_loads == []
