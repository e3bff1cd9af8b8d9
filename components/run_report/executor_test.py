"""RunReport's executor on a small synthetic run (no pipeline, no MobileNet): solid-colour
photos, a SavedModel that classifies by mean colour, hand-made statistics and TensorBoard
events. Then the page is checked as a browser shows it, with headless Chromium."""

import io
import json
import os
import re
import shutil
import subprocess

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from tensorflow_metadata.proto.v0 import statistics_pb2  # noqa: E402
from tfx.dsl.components.base import base_executor  # noqa: E402
from tfx.types import artifact_utils, standard_artifacts  # noqa: E402

from components.image_example_gen import images  # noqa: E402
from components.image_example_gen.conversion import make_example, thumbnail_example  # noqa: E402
from components.image_example_gen.report import GROUPED_PHOTOS_FILE, REPORT_FILE  # noqa: E402
from components.run_report import component, executor  # noqa: E402
from models.features import LABEL_ISSUES_FILE  # noqa: E402

CLASSES = ["red", "green", "blue"]
COLORS = {"red": (230, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 230)}
SPLITS = ["train", "eval", "test"]
# (true class, colour drawn) of the test photos: three are drawn in another class's colour, so
# the model (which reads the colour) gets exactly those three wrong.
TEST_PHOTOS = [(name, name) for name in CLASSES for _ in range(3)] + [
    ("red", "green"), ("green", "blue"), ("blue", "red")]
SKIPPED = {"file": "red/broken.jpg", "reason": "not a readable image"}
# Groups of copies (by colour drawn), as ImageExampleGen reports them, with thumbnails.
NEAR = {"files": ["blue/a.jpg", "blue/b.jpg"], "class": "blue", "split": "train",
        "oldest": "blue/a.jpg", "distance": 12}
IDENTICAL = {"files": ["green/c.jpg", "green/d.jpg"], "class": "green", "split": "eval",
             "oldest": "green/c.jpg"}
CONFLICT = {"files": ["green/x.jpg", "red/x.jpg"], "classes": ["green", "red"],
            "identical": False}
GROUP_COLOURS = {"blue/a.jpg": "blue", "blue/b.jpg": "blue", "green/c.jpg": "green",
                 "green/d.jpg": "green", "green/x.jpg": "red", "red/x.jpg": "red"}
# The last train photo is red in the blue folder; the Trainer's label_issues.json names it
# first, then an eval photo it doubts less. The third suspect's photo is not in the examples.
PLANTED = "blue/train_12.jpg"
SUSPECTS = [
    {"file": PLANTED, "split": "train", "label": "blue", "label_probability": 0.02,
     "suggested": "red", "suggested_probability": 0.95},
    {"file": "green/eval_1.jpg", "split": "eval", "label": "green", "label_probability": 0.3,
     "suggested": "blue", "suggested_probability": 0.6},
    {"file": "red/gone.jpg", "split": "train", "label": "red", "label_probability": 0.4,
     "suggested": "green", "suggested_probability": 0.5},
]


def _jpeg(color, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _write_examples(root, photos_by_split):
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = artifact_utils.encode_split_names(SPLITS)
    for split, photos in photos_by_split.items():
        folder = root / "examples" / f"Split-{split}"
        folder.mkdir(parents=True)
        path = str(folder / "data_tfrecord-00000-of-00001.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for index, (label_name, color_name) in enumerate(photos):
                image = images.NormalizedImage(_jpeg(COLORS[color_name]), 30, 40, "JPEG")
                example = make_example(image, CLASSES.index(label_name), label_name,
                                       f"{label_name}/{split}_{index}.jpg")
                writer.write(example.SerializeToString())
    counts = {name: {} for name in CLASSES}
    for split, photos in photos_by_split.items():
        for label_name, _ in photos:
            counts[label_name][split] = counts[label_name].get(split, 0) + 1
    report = {
        "class_names": CLASSES, "counts": counts, "skipped": [SKIPPED],
        "num_images": sum(len(photos) for photos in photos_by_split.values()),
        "ignored": [{"file": "red/notes.txt", "reason": "not an image file name (.txt)"}],
        "near_duplicate_distance": 64, "near_duplicates": [NEAR], "duplicates": [IDENTICAL],
        "label_conflicts": [CONFLICT],
    }
    (root / "examples" / REPORT_FILE).write_text(json.dumps(report))
    with tf.io.TFRecordWriter(str(root / "examples" / GROUPED_PHOTOS_FILE), "GZIP") as writer:
        for name, colour in GROUP_COLOURS.items():
            image = images.NormalizedImage(_jpeg(COLORS[colour]), 30, 40, "JPEG")
            writer.write(thumbnail_example(image, name))
    return examples


def _write_statistics(root, photos_by_split):
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(root / "statistics")
    statistics.split_names = artifact_utils.encode_split_names(SPLITS)
    for split, photos in photos_by_split.items():
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        dataset = stats.datasets.add(num_examples=len(photos))
        for name, value in (("image/height", 30.0), ("image/width", 40.0)):
            feature = dataset.features.add()
            feature.path.step.append(name)
            feature.num_stats.common_stats.num_non_missing = len(photos)
            feature.num_stats.min = feature.num_stats.max = value
            feature.num_stats.mean = feature.num_stats.median = value
            feature.num_stats.histograms.add().buckets.add(
                low_value=value, high_value=value, sample_count=len(photos))
        folder = root / "statistics" / f"Split-{split}"
        folder.mkdir(parents=True)
        (folder / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    return statistics


class _ColourModel(tf.Module):
    """Scores each class by how much of its colour channel a photo has."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        parsed = tf.io.parse_example(
            examples, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})
        means = tf.map_fn(
            lambda jpeg: tf.reduce_mean(tf.cast(tf.io.decode_jpeg(jpeg, channels=3), tf.float32),
                                        axis=[0, 1]),
            parsed["image/encoded"], fn_output_signature=tf.TensorSpec([3], tf.float32))
        return {"scores": tf.nn.softmax(means / 20.0)}


def _write_model(root):
    model = standard_artifacts.Model()
    model.uri = str(root / "model")
    module = _ColourModel()
    tf.saved_model.save(module, str(root / "model" / "Format-Serving"),
                        signatures={"serving_examples": module.serve_examples})
    (root / "model" / LABEL_ISSUES_FILE).write_text(json.dumps(
        {"checked": {"eval": 3, "train": 13}, "count": len(SUSPECTS), "suspects": SUSPECTS,
         "excluded_from_training": 0}))
    return model


def _write_model_run(root, name="model_run", phases=((0, 5), (5, 7))):
    """By default the FineTuner's: head phase epochs 0-4, then a second event file
    (fine-tuning) for epochs 5-6."""
    model_run = standard_artifacts.ModelRun()
    model_run.uri = str(root / name)
    for run, offset in (("train", 0.0), ("validation", 0.1)):
        for epochs in (range(*phase) for phase in phases):
            writer = tf.summary.create_file_writer(str(root / name / run))
            with writer.as_default():
                for epoch in epochs:
                    tf.summary.scalar("epoch_loss", 1.0 / (epoch + 1) + offset, step=epoch)
                    tf.summary.scalar("epoch_accuracy", 0.5 + epoch / 20 - offset, step=epoch)
            writer.close()
    return model_run


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    """The report.html the executor writes for the synthetic run, and its folder."""
    root = tmp_path_factory.mktemp("run_report")
    photos_by_split = {
        "train": [(name, name) for name in CLASSES for _ in range(4)] + [("blue", "red")],
        "eval": [(name, name) for name in CLASSES],
        "test": TEST_PHOTOS,
    }
    inputs = {
        executor.EXAMPLES_KEY: [_write_examples(root, photos_by_split)],
        executor.STATISTICS_KEY: [_write_statistics(root, photos_by_split)],
        executor.MODEL_KEY: [_write_model(root)],
        # The Trainer's final head: one phase; the report shows the FineTuner's two.
        executor.MODEL_RUN_KEY: [_write_model_run(root, "trainer_run", phases=((0, 3),))],
        executor.FINE_TUNE_RUN_KEY: [_write_model_run(root)],
    }
    report = component.RunReportArtifact()
    report.uri = str(root / "report")
    (root / "report").mkdir()
    context = base_executor.BaseExecutor.Context(pipeline_run_id="run-under-test")
    executor.Executor(context).Do(
        inputs, {executor.REPORT_KEY: [report]},
        {executor.SPLIT_KEY: "test", executor.MAX_MISCLASSIFIED_KEY: 2},
    )
    path = root / "report" / executor.REPORT_HTML
    assert report.get_string_custom_property("report_html") == str(path)
    return path


def _img_sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


def test_report_shows_the_data_training_and_test_results(report_html):
    page = report_html.read_text()
    assert "tfx-poets run report: run-under-test" in page
    for heading in ("Data", "Training", "Results on the test split", "Misclassified test photos"):
        assert f"<h2>{heading}</h2>" in page
    assert SKIPPED["file"] in page and "red/notes.txt" in page and "blue/a.jpg" in page
    assert "<h2>Your data</h2>" in page and "Copies of one photo: 3 groups" in page
    assert "Suspected label errors: 3 of 16 photos" in page
    # Conflicts first (left out), then near copies, then identical files; suspects in rank.
    rows = [page.index(name) for name in ("green/x.jpg, red/x.jpg", "blue/a.jpg, blue/b.jpg",
                                          "green/c.jpg, green/d.jpg")]
    assert rows == sorted(rows) and "left out (label conflict)" in page
    assert "near-duplicates, all in train" in page
    ranks = [page.index(f"<td>{suspect['file']}</td>") for suspect in SUSPECTS]
    assert ranks == sorted(ranks)
    # 9 of 12 right; the three miscoloured photos are the mistakes, two of them shown.
    assert "Accuracy 75.0% on 12 test photos" in page
    assert "3 of 12 photos are misclassified; the 2 the model was surest of" in page
    assert "A dashed line marks where fine-tuning" in page
    assert "The training curves are the FineTuner&#x27;s" in page or (
        "The training curves are the FineTuner's" in page)


def test_report_is_self_contained_and_every_image_is_a_png(report_html):
    page = report_html.read_text()
    sources = _img_sources(page)
    # Class counts, copies, suspects, image sizes, curves, precision/recall, confusion matrix,
    # mistakes.
    assert len(sources) == 8
    assert page.count("<img ") == len(sources)
    assert not re.search(r'(src|href)="(?!data:)', page), "the page loads an external file"
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(_base64(source)))
        assert image.format == "PNG" and image.width > 200 and image.height > 100
        image.verify()


def test_the_suspects_contact_sheet_shows_their_own_photos(report_html):
    page = report_html.read_text()
    (source,) = re.findall(r'<img src="([^"]*)" alt="contact sheet of suspected label', page)
    sheet = np.asarray(Image.open(io.BytesIO(_base64(source))).convert("RGB"))
    # The planted photo is red, the eval suspect green; the third has no photo to show.
    photo_pixels = {name: _pixels_near(sheet, np.array(colour), tolerance=12)
                    for name, colour in COLORS.items()}
    assert photo_pixels["red"] > 2000 and photo_pixels["green"] > 2000, photo_pixels
    assert photo_pixels["blue"] < 50, photo_pixels


def _base64(data_uri: str) -> bytes:
    import base64

    return base64.b64decode(data_uri.split(",", 1)[1], validate=True)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("headless Chromium is needed to check the run report renders: run "
                "`bash scripts/setup.sh --with-chromium` (installs Debian's chromium)",
                pytrace=False)


def _dominant_colour(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """The most common saturated colour of an RGB image (a bar, a line, a cell, a photo) and
    how many pixels have it; white, black and greys (axes, text) do not count."""
    flat = pixels.reshape(-1, 3).astype(int)
    saturated = flat[flat.max(axis=1) - flat.min(axis=1) > 40]
    colours, counts = np.unique(saturated, axis=0, return_counts=True)
    return colours[counts.argmax()], int(counts.max())


def _pixels_near(pixels: np.ndarray, colour: np.ndarray, tolerance: int = 4) -> int:
    return int((np.abs(pixels.astype(int) - colour).max(axis=-1) <= tolerance).sum())


def test_chromium_renders_every_plot(report_html, tmp_path):
    screenshot = tmp_path / "report.png"
    completed = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}",
         "--window-size=1200,6000", report_html.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert completed.returncode == 0 and screenshot.exists(), completed.stderr[-2000:]
    shown = np.asarray(Image.open(screenshot).convert("RGB"))
    # A broken image shows as an icon and its alt text. Each embedded plot's own main colour
    # (a bar, a cell, a photo) must cover, on screen, most of the pixels it covers in the PNG
    # (the page shows plots at their size; plots that share a colour add up).
    expected: dict[tuple, int] = {}
    for source in _img_sources(report_html.read_text()):
        plot = np.asarray(Image.open(io.BytesIO(_base64(source))).convert("RGB"))
        colour, count = _dominant_colour(plot)
        expected[tuple(colour)] = expected.get(tuple(colour), 0) + count
    assert len(expected) >= 3
    for colour, count in expected.items():
        assert _pixels_near(shown, np.array(colour)) >= 0.8 * count, (colour, count)
    # The page is not blank: plots, photos and text cover a good part of it.
    assert (shown.min(axis=-1) < 200).mean() > 0.02
