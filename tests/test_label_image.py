"""Tests for the label_image command, against a tiny fake pushed model."""

import os

# Before TensorFlow's first import: the pipeline's Keras flavour, and quiet C++ logs.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from models import features  # noqa: E402
from models.training_config import TrainingConfig  # noqa: E402
from tools import classifiers, label_image, tflite_classifier  # noqa: E402
from tools import photos as photo_files  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
CLASS_NAMES = ["red", "green", "blue"]
COLOURS = {"red": (230, 10, 10), "green": (10, 230, 10), "blue": (10, 10, 230)}


class MeanColourModel(tf.Module):
    """Follows the pusher's serving contract; scores each class by the image's mean colour."""

    def __init__(self, class_names):
        super().__init__()
        self.class_names = tf.constant(class_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images):
        def mean_colour(encoded):
            pixels = tf.io.decode_image(encoded, channels=3, expand_animations=False)
            return tf.reduce_mean(tf.cast(pixels, tf.float32), axis=[0, 1]) / 255.0

        means = tf.map_fn(mean_colour, images, fn_output_signature=tf.TensorSpec([3], tf.float32))
        # Sharpened so the dominant channel clearly wins.
        scores = tf.nn.softmax(means * 10.0)
        classes = tf.tile(self.class_names[tf.newaxis, :], [tf.shape(images)[0], 1])
        return {"scores": scores, "classes": classes}


class WrongInputModel(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x}


def save_model(module, directory):
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    """A Pusher-style base dir; only version 2 has the right class names."""
    base = tmp_path_factory.mktemp("serving_model")
    save_model(MeanColourModel([f"stale-{name}" for name in CLASS_NAMES]), base / "1")
    save_model(MeanColourModel(CLASS_NAMES), base / "2")
    (base / "3").mkdir()  # An interrupted push: no saved_model.pb, must be passed over.
    return base


def write_image(path, colour, image_format):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), COLOURS[colour]).save(path, format=image_format)


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    write_image(root / "red.png", "red", "PNG")
    write_image(root / "nested" / "green.jpg", "green", "JPEG")
    write_image(root / "nested" / "deeper" / "blue.PNG", "blue", "PNG")
    write_image(root / "nested" / "blue2.jpeg", "blue", "JPEG")
    write_image(root / ".hidden.png", "red", "PNG")
    write_image(root / ".cache" / "red.png", "red", "PNG")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def photos_with_bad_file(photos):
    (photos / "nested" / "broken.jpg").write_bytes(b"this is not really a jpeg")
    return photos


def expected_label(path):
    return next(name for name in CLASS_NAMES if name in Path(path).name.lower())


# --- pure functions -----------------------------------------------------------------


def test_resolve_model_dir_picks_highest_complete_numeric_version(tmp_path):
    for version in ["1", "9", "10", "latest"]:
        (tmp_path / version).mkdir()
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    (tmp_path / "11").mkdir()  # No saved_model.pb yet.
    assert classifiers.resolve_model_dir(tmp_path) == tmp_path / "10"
    assert classifiers.resolve_model_dir(tmp_path / "9") == tmp_path / "9"


def test_resolve_model_dir_rejects_missing_and_empty(tmp_path):
    with pytest.raises(classifiers.UsageError, match="does not exist"):
        classifiers.resolve_model_dir(tmp_path / "nope")
    with pytest.raises(classifiers.UsageError, match="no SavedModel"):
        classifiers.resolve_model_dir(tmp_path)


def test_collect_image_paths_recurses_sorted_and_skips_non_images(photos):
    collected = photo_files.collect_image_paths([photos])
    assert collected == [
        photos / "nested" / "blue2.jpeg",
        photos / "nested" / "deeper" / "blue.PNG",
        photos / "nested" / "green.jpg",
        photos / "red.png",
    ]
    # An explicitly named file is taken whatever its name; duplicates are dropped.
    notes = photos / "notes.txt"
    assert photo_files.collect_image_paths([notes, photos / "red.png", photos]) == [
        notes,
        photos / "red.png",
        *collected[:3],
    ]


def test_collect_image_paths_rejects_missing_path(tmp_path):
    with pytest.raises(classifiers.UsageError, match="does not exist"):
        photo_files.collect_image_paths([tmp_path / "missing.jpg"])


def test_top_k_and_formatting():
    predictions = photo_files.top_k_predictions([0.1, 0.7, 0.2], ["a", "b", "c"], k=5)
    assert [p.label for p in predictions] == ["b", "c", "a"]
    assert label_image.format_text("x.jpg", predictions[:2]) == (
        "x.jpg\n  b (score=0.70000)\n  c (score=0.20000)"
    )
    assert json.loads(label_image.format_json("x.jpg", predictions[:1])) == {
        "path": "x.jpg",
        "label": "b",
        "score": pytest.approx(0.7),
        "top_k": [{"label": "b", "score": pytest.approx(0.7)}],
    }


# --- the command, in-process ----------------------------------------------------------


def test_main_text_output_classifies_every_image(model_base, photos, capsys):
    assert label_image.main(["--model", str(model_base), "--top-k", "2", str(photos)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    blocks = [block.splitlines() for block in out.strip().split("\n" + str(photos))]
    assert len(blocks) == 4
    for lines in blocks:
        assert len(lines) == 1 + 2  # Path, then top-2.
        assert lines[1].startswith(f"  {expected_label(lines[0])} (score=0.")


def test_main_json_lines_schema_and_top_k_cap(model_base, photos, capsys):
    argv = ["--model", str(model_base), "--json", "--top-k", "10", "--batch-size", "3"]
    assert label_image.main([*argv, str(photos)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in records] == [
        str(p) for p in photo_files.collect_image_paths([photos])
    ]
    for record in records:
        assert set(record) == {"path", "label", "score", "top_k"}
        assert record["label"] == expected_label(record["path"])
        assert len(record["top_k"]) == len(CLASS_NAMES)  # 10 capped at 3 classes.
        assert record["top_k"][0] == {"label": record["label"], "score": record["score"]}
        assert sum(item["score"] for item in record["top_k"]) == pytest.approx(1.0, abs=1e-5)


def test_main_skips_only_the_undecodable_file(model_base, photos_with_bad_file, capsys):
    broken = photos_with_bad_file / "nested" / "broken.jpg"
    argv = ["--model", str(model_base), "--json", str(photos_with_bad_file)]
    assert label_image.main(argv) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"label_image: skipped {broken}: not a decodable JPEG/PNG/GIF/BMP/WebP/TIFF image"
    ]
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 4
    assert all(r["label"] == expected_label(r["path"]) for r in records)


@pytest.mark.parametrize("problem", ["missing model", "not a model", "wrong signature", "image"])
def test_main_usage_errors_give_one_line_and_exit_2(problem, model_base, photos, tmp_path, capsys):
    model, image = model_base, photos / "red.png"
    if problem == "missing model":
        model = tmp_path / "no_such_model"
    elif problem == "not a model":
        model = tmp_path / "garbage"
        model.mkdir()
        (model / "saved_model.pb").write_bytes(b"not a protobuf")
    elif problem == "wrong signature":
        model = tmp_path / "wrong"
        save_model(WrongInputModel(), model)
    else:
        image = photos / "missing.jpg"
    assert label_image.main(["--model", str(model), str(image)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("label_image: ")
    assert "Traceback" not in err


# --- the command, as a script --------------------------------------------------------


def test_script_runs_as_subprocess(model_base, photos_with_bad_file):
    # Without the variable, so the script's own log-silencing default is what is tested.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "label_image.py", "--model", str(model_base), "--json"]
        + [str(photos_with_bad_file)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in records] == ["blue", "blue", "green", "red"]
    # Exactly one line: no TensorFlow log noise, no warnings, no traceback.
    assert result.stderr.splitlines() == [
        f"label_image: skipped {photos_with_bad_file / 'nested' / 'broken.jpg'}: "
        "not a decodable JPEG/PNG/GIF/BMP/WebP/TIFF image"
    ]


def test_photos_reach_the_model_upright_and_rgb(tmp_path):
    """As in training (ImageExampleGen), EXIF rotation is applied and CMYK becomes RGB."""
    import io

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees
    rotated = tmp_path / "rotated.jpg"
    Image.new("RGB", (40, 20), (200, 0, 0)).save(rotated, exif=exif)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(cmyk)
    seen = []

    def fake_classify(encoded_images):
        seen.extend(Image.open(io.BytesIO(data)) for data in encoded_images)
        return [[1.0] for _ in encoded_images], ["only"]

    results = list(photo_files.classify_paths(fake_classify, [rotated, cmyk], top_k=1))
    assert len(results) == 2
    assert seen[0].size == (20, 40)
    assert [image.mode for image in seen] == ["RGB", "RGB"]


# --- TFLite models ---------------------------------------------------------------------

TFLITE_SIZE = 32


def mean_colour_keras_model(side=TFLITE_SIZE):
    """MeanColourModel's scores as a Keras model of pixels, for TFLite conversion."""
    import tf_keras

    pixels = tf_keras.Input((side, side, 3))
    means = tf_keras.layers.GlobalAveragePooling2D()(pixels)
    return tf_keras.Model(pixels, tf_keras.layers.Softmax()(tf_keras.layers.Rescaling(10.0)(means)))


@pytest.fixture(scope="module")
def tflite_dir(tmp_path_factory):
    """model_float.tflite, model_int8.tflite and labels.txt, as the Trainer writes them."""
    import numpy as np

    from models import tflite_export

    rng = np.random.default_rng(0)
    calibration = [rng.uniform(0, 1, (1, TFLITE_SIZE, TFLITE_SIZE, 3)).astype(np.float32)
                   for _ in range(30)]
    export_dir = tmp_path_factory.mktemp("serving_version")
    settings = TrainingConfig("m", image_size=TFLITE_SIZE, resize="squash", views=("plain",),
                              class_names=tuple(CLASS_NAMES))
    tflite_export.write_tflite_models(
        mean_colour_keras_model(), settings, calibration, str(export_dir)
    )
    return export_dir / features.TFLITE_DIR


@pytest.fixture(scope="module")
def any_shape_tflite_dir(tmp_path_factory):
    """The same model for photos that keep their aspect ratio, with a mirror view."""
    import numpy as np

    from models import tflite_export

    rng = np.random.default_rng(0)
    calibration = [rng.uniform(0, 1, (1, TFLITE_SIZE, TFLITE_SIZE + 16 * (i % 2), 3))
                   .astype(np.float32) for i in range(30)]
    export_dir = tmp_path_factory.mktemp("any_shape_version")
    settings = TrainingConfig("m", image_size=TFLITE_SIZE, resize="short-side",
                              views=("plain", "mirror"), class_names=tuple(CLASS_NAMES))
    tflite_export.write_tflite_models(
        mean_colour_keras_model(side=None), settings, calibration, str(export_dir)
    )
    return export_dir / features.TFLITE_DIR


@pytest.mark.parametrize("model_file", ["model_float.tflite", "model_int8.tflite"])
def test_tflite_of_any_shape_classifies_photos_of_every_shape(model_file, any_shape_tflite_dir,
                                                               tmp_path, capsys):
    root = tmp_path / "shapes"
    write_image(root / "red.png", "red", "PNG")  # 16x12
    root.mkdir(exist_ok=True)
    Image.new("RGB", (12, 40), COLOURS["green"]).save(root / "green.png")
    Image.new("RGB", (50, 20), COLOURS["blue"]).save(root / "blue.jpg", format="JPEG")
    argv = ["--json", "--model", str(any_shape_tflite_dir / model_file), str(root)]
    assert label_image.main(argv) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(results) == 3
    assert all(result["label"] == expected_label(result["path"]) for result in results)


TFLITE_FILES = ["model_float.tflite", "model_int8.tflite"]


@pytest.mark.parametrize("model_file", TFLITE_FILES)
def test_tflite_json_matches_the_saved_model(model_file, tflite_dir, model_base, photos, capsys):
    argv = ["--json", "--batch-size", "3", str(photos)]
    assert label_image.main(["--model", str(model_base), *argv]) == 0
    from_saved_model = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert label_image.main(["--model", str(tflite_dir / model_file), *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["path"], r["label"]) for r in records] == [
        (r["path"], r["label"]) for r in from_saved_model
    ]
    for record, reference in zip(records, from_saved_model, strict=True):
        assert record["label"] == expected_label(record["path"])
        assert len(record["top_k"]) == len(CLASS_NAMES)
        # Quantized scores are multiples of 1/256; the float model's are the SavedModel's,
        # up to the JPEG re-encoding of the Transform.
        assert sum(item["score"] for item in record["top_k"]) == pytest.approx(1.0, abs=0.02)
        assert record["score"] == pytest.approx(reference["score"], abs=0.03)


@pytest.mark.parametrize("model_file", TFLITE_FILES)
def test_tflite_text_output(model_file, tflite_dir, photos, capsys):
    argv = ["--model", str(tflite_dir / model_file), "--top-k", "2", "--num-threads", "1"]
    assert label_image.main([*argv, str(photos)]) == 0
    blocks = [block.splitlines() for block in capsys.readouterr().out.strip().split(
        "\n" + str(photos))]
    assert len(blocks) == 4
    for lines in blocks:
        assert len(lines) == 1 + 2
        assert lines[1].startswith(f"  {expected_label(lines[0])} (score=0.")


def test_tflite_skips_only_the_undecodable_file(tflite_dir, photos_with_bad_file, capsys):
    model = tflite_dir / "model_int8.tflite"
    assert label_image.main(["--model", str(model), "--json", str(photos_with_bad_file)]) == 1
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and "broken.jpg" in err
    assert len(out.splitlines()) == 4


@pytest.mark.parametrize("problem", ["no labels", "corrupt", "truncated", "label count"])
def test_tflite_problems_give_one_line_and_exit_2(problem, tflite_dir, photos, tmp_path, capsys):
    model = tmp_path / "model.tflite"
    content = (tflite_dir / "model_float.tflite").read_bytes()
    labels = "red\ngreen\nblue\n"
    if problem == "corrupt":
        content = b"not a flatbuffer at all" * 10
    elif problem == "truncated":
        content = content[: len(content) // 2]
    elif problem == "label count":
        labels = "red\ngreen\n"
    model.write_bytes(content)
    if problem != "no labels":
        (tmp_path / "labels.txt").write_text(labels)
    assert label_image.main(["--model", str(model), str(photos / "red.png")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    expected = {
        "no labels": f"label_image: no labels.txt beside {model}",
        "corrupt": f"label_image: cannot load TFLite model from {model}",
        "truncated": f"label_image: cannot load TFLite model from {model}",
        "label count": f"label_image: model {model} returns [1, 3] scores but",
    }[problem]
    assert line.startswith(expected), line


def test_quantize_and_dequantize_use_scale_and_zero_point():
    import numpy as np

    values = np.array([0.0, 0.2, 1.0, 2.0], np.float32)
    quantized = tflite_classifier.quantize(values, 1 / 255, -128, np.int8)
    assert quantized.dtype == np.int8
    assert quantized.tolist() == [-128, -77, 127, 127]  # 2.0 saturates
    np.testing.assert_allclose(tflite_classifier.dequantize(quantized, 1 / 255, -128),
                               [0.0, 0.2, 1.0, 1.0], atol=1e-6)
    assert tflite_classifier.quantize(values, 1 / 255, 0, np.uint8).tolist() == [0, 51, 255, 255]


def test_tflite_pixels_are_the_training_pixels(photos):
    """The Transform's resize + JPEG re-encoding, then the Trainer's decoding."""
    import numpy as np

    from models import transform_module

    encoded = [(photos / "red.png").read_bytes(), (photos / "nested" / "green.jpg").read_bytes()]
    pixels = tflite_classifier.training_pixels_function(TFLITE_SIZE)(tf.constant(encoded)).numpy()
    assert pixels.shape == (2, TFLITE_SIZE, TFLITE_SIZE, 3) and pixels.dtype == np.float32
    for image, data in zip(pixels, encoded, strict=True):
        jpeg = transform_module.resize_to_jpeg(tf.constant([data]), TFLITE_SIZE)[0]
        expected = transform_module.decode_transformed_image(jpeg, TFLITE_SIZE)
        np.testing.assert_array_equal(image, expected.numpy())


def test_tflite_scorer_resizes_for_batches(tflite_dir, any_shape_tflite_dir):
    import numpy as np

    scorer = tflite_classifier.TfliteScorer(
        tf.lite.Interpreter(model_path=str(tflite_dir / "model_int8.tflite"))
    )
    assert (scorer.image_size, scorer.num_classes) == (TFLITE_SIZE, 3)
    any_shape = tflite_classifier.TfliteScorer(
        tf.lite.Interpreter(model_path=str(any_shape_tflite_dir / "model_float.tflite")))
    assert any_shape.image_size == 0  # any height and width
    pixels = np.random.default_rng(0).uniform(0, 1, (5, TFLITE_SIZE, TFLITE_SIZE, 3))
    pixels = pixels.astype(np.float32)
    batch = scorer(pixels)
    assert batch.shape == (5, 3) and batch.dtype == np.float32
    one_by_one = np.concatenate([scorer(pixels[i : i + 1]) for i in range(5)])
    np.testing.assert_array_equal(batch, one_by_one)


def test_script_with_tflite_prints_no_runtime_noise(tflite_dir, photos):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "label_image.py", "--model", str(tflite_dir / "model_int8.tflite"),
         "--json", str(photos)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # Not even TFLite's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." line.
    assert result.stderr == ""
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == [
        "blue", "blue", "green", "red"
    ]
