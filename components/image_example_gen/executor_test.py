"""Tests of ImageExampleGen's executor: the Beam conversion, split, report and bad files."""

import json
import logging
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import apache_beam as beam  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tfx.components.util import examples_utils  # noqa: E402
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402

from components.image_example_gen import driver, executor, images, scan  # noqa: E402
from components.image_example_gen.report import (  # noqa: E402
    GROUPED_PHOTOS_FILE,
    REPORT_FILE,
    class_balance,
)
from models import features  # noqa: E402
from pipeline import cli, tfx_package  # noqa: E402
from tests.support import make_corrupt_file, make_image_folder  # noqa: E402
from tests.support.example_gen import image_example_gen  # noqa: E402
from tests.support.images import (  # noqa: E402
    CHANGING,
    VANISHING,
    encode_image,
    make_bad_input_corpus,
    names_in_different_splits,
    near_copies,
    scene_photo,
)


def driven_exec_properties(component):
    """The component's exec properties as its driver hands them to the executor."""
    return driver.Driver(None).resolve_exec_properties(dict(component.exec_properties), None, None)


def run_executor(exec_properties, output_dir):
    examples = standard_artifacts.Examples()
    examples.uri = str(output_dir)
    # With TFX's package built once, as the runners hand it: else TFX builds one per call.
    beam_args = tfx_package.with_tfx_package(["--direct_num_workers=1"], cli.DEFAULT_CACHE_DIR)
    context = BaseBeamExecutor.Context(
        beam_pipeline_args=list(beam_args), tmp_dir=str(output_dir / "tmp")
    )
    executor.Executor(context).Do({}, {"examples": [examples]}, exec_properties)
    return examples


def convert(data_dir, class_names, output_dir, testing=10, validation=10):
    """Runs the driver and the executor as the pipeline would; returns (report dict, examples
    by split, the Examples artifact)."""
    component = image_example_gen(
        data_dir, class_names, testing_percentage=testing, validation_percentage=validation
    )
    examples = run_executor(driven_exec_properties(component), output_dir)
    report = json.loads((output_dir / REPORT_FILE).read_text())
    by_split = {}
    for split in (images.TRAIN, images.EVAL, images.TEST):
        files = tf.io.gfile.glob(str(output_dir / f"Split-{split}" / "*"))
        by_split[split] = [
            tf.train.Example.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(files, compression_type="GZIP")
        ]
    return report, by_split, examples


def _feature(example, key):
    feature = example.features.feature[key]
    return feature.int64_list.value[0] if feature.int64_list.value else feature.bytes_list.value[0]


def test_converts_every_image_into_the_retrain_split(tmp_path):
    photos = make_image_folder(tmp_path / "photos", {"ant": 10, "bee": 14}, image_format="PNG")
    report, by_split, artifact = convert(photos, ["ant", "bee"], tmp_path / "out")
    assert report["num_images"] == 24 and report["skipped"] == []
    assert sum(len(examples) for examples in by_split.values()) == 24
    for split, examples in by_split.items():
        for example in examples:
            file_name = _feature(example, features.FILENAME_KEY).decode()
            assert images.which_split(file_name, 10, 10) == split
            class_name = _feature(example, features.LABEL_NAME_KEY).decode()
            assert file_name.startswith(class_name + "/")
            assert _feature(example, features.LABEL_KEY) == ["ant", "bee"].index(class_name)
            # PNGs are stored as RGB JPEG, so later steps see one format.
            assert _feature(example, features.IMAGE_KEY)[:2] == b"\xff\xd8"
    assert artifact.get_int_custom_property("num_images") == 24
    assert artifact.split_names == '["train", "eval", "test"]'


def test_written_splits_mix_the_classes_and_carry_their_format(tmp_path):
    # Class by class, the first 10 train photos would all be ants; a reader's shuffle buffer
    # smaller than the data then could not mix them.
    photos = make_image_folder(tmp_path / "photos", {"ant": 20, "bee": 20})
    _, by_split, artifact = convert(photos, ["ant", "bee"], tmp_path / "out", testing=0)
    first_labels = {_feature(example, features.LABEL_KEY) for example in by_split["train"][:10]}
    assert first_labels == {0, 1}
    assert examples_utils.get_payload_format_string(artifact) == "FORMAT_TF_EXAMPLE"
    assert examples_utils.get_file_format(artifact) == "tfrecords_gzip"


def test_serialized_photos_are_never_grouped_before_they_are_written(tmp_path, monkeypatch):
    """A GroupByKey (a Reshuffle is one) holds all its input in memory on the DirectRunner."""
    grouped = []

    class GroupByKeyLabels(beam.pipeline.PipelineVisitor):
        def visit_transform(self, applied):
            if isinstance(applied.transform, beam.GroupByKey):
                grouped.append(applied.full_label)

    run = beam.Pipeline.run

    def visit_then_run(pipeline, *args, **kwargs):
        pipeline.visit(GroupByKeyLabels())
        return run(pipeline, *args, **kwargs)

    monkeypatch.setattr(beam.Pipeline, "run", visit_then_run)
    photos = make_image_folder(tmp_path / "photos", {"ant": 3, "bee": 3})
    convert(photos, ["ant", "bee"], tmp_path / "out", testing=0, validation=50)
    # Paths, fingerprints (hashes, no pixels), per-class counts and the written files' names.
    allowed = ("ListImages/", "Reshuffle/", "GroupCopies/AllFingerprints/", "Count/", "Write")
    assert grouped and all(label.startswith(allowed) for label in grouped), grouped
    assert not [label for label in grouped if "Shuffle" in label.split("/", 1)[-1]], grouped


def test_unreadable_files_are_skipped_and_reported(tmp_path):
    photos = make_image_folder(tmp_path / "photos", {"ant": 4, "bee": 4})
    make_corrupt_file(photos / "bee" / "broken.jpg")
    (photos / "ant" / "empty.jpg").write_bytes(b"")
    report, by_split, _ = convert(photos, ["ant", "bee"], tmp_path / "out", testing=0)
    assert "test" not in report["class_balance"]["missing_from_splits"]
    assert report["num_images"] == 8
    assert [item["file"] for item in report["skipped"]] == ["ant/empty.jpg", "bee/broken.jpg"]
    assert "empty file" in report["skipped"][0]["reason"]


def test_a_class_with_no_readable_image_stops_with_a_clear_error(tmp_path):
    photos = make_image_folder(tmp_path / "photos", {"ant": 3})
    make_corrupt_file(photos / "bee" / "broken.jpg")
    with pytest.raises(images.DataDirError, match="class 'bee' has no readable images"):
        convert(photos, ["ant", "bee"], tmp_path / "out")


def test_shared_flower_photos_convert_with_the_expected_class_counts(tmp_path, flower_photos):
    report, by_split, _ = convert(
        flower_photos, list(scan.discover_classes(flower_photos)), tmp_path / "out"
    )
    counts = {name: sum(splits.values()) for name, splits in report["counts"].items()}
    # 377 roses and 531 tulips on disk: one photo is in both folders, a label conflict.
    assert counts == {"daisy": 438, "dandelion": 631, "roses": 376, "sunflowers": 459,
                      "tulips": 530}
    assert report["skipped"] == []
    assert report["label_conflicts"] == [{
        "files": ["roses/15922772266_1167a06620.jpg", "tulips/15922772266_1167a06620.jpg"],
        "classes": ["roses", "tulips"], "identical": True,
    }]
    assert [item["files"] for item in report["duplicates"]] == [[
        "sunflowers/15069459615_7e0fd61914_n.jpg", "sunflowers/15072973261_73e2912ef2_n.jpg"
    ]]
    # Re-toned, cropped and resized copies (BENCHMARKS.md, "Near-duplicates"), e.g. one
    # sunflower three times; none across classes.
    near = report["near_duplicates"]
    assert len(near) == 11 and sum(len(item["files"]) for item in near) == 23
    assert ["sunflowers/14741866338_bdc8bfc8d5_n.jpg", "sunflowers/14925398301_55a180f919_n.jpg",
            "sunflowers/14925398441_107f3e0304_n.jpg"] in [item["files"] for item in near]
    assert report["ignored"] == []
    # retrain.py's 10/10 split, within sampling noise.
    assert 0.07 < len(by_split[images.TEST]) / 2434 < 0.13
    assert 0.07 < len(by_split[images.EVAL]) / 2434 < 0.13


def _planted_copies(photos):
    """Copies of two scene photos planted among generated ones, each newer than its original:
    a resized, a cropped and a re-toned copy of `ant/<original>`, another photo of the same
    scene, and a copy of `bee/flower.jpg` in ant (a label conflict). Returns the names."""
    original, resized = names_in_different_splits(20, 20)
    photo = scene_photo(1)
    files = {
        f"ant/{original}": encode_image(photo, "JPEG", quality=95),
        f"ant/{resized}": near_copies(photo)["resized"],
        "ant/cropped.jpg": near_copies(photo)["cropped"],
        "ant/retoned.jpg": near_copies(photo)["retoned"],
        "ant/reframed.jpg": encode_image(scene_photo(1, offset=(0.15, 0.1)), "JPEG"),
        "bee/flower.jpg": encode_image(scene_photo(2), "JPEG", quality=95),
        "ant/flower_copy.jpg": near_copies(scene_photo(2))["resized"],
    }
    for age, (name, raw) in enumerate(files.items()):
        (photos / name).write_bytes(raw)
        os.utime(photos / name, (1_700_000_000 + age, 1_700_000_000 + age))
    return original, resized


def test_near_copies_share_the_split_of_the_oldest_and_a_copy_in_another_class_conflicts(
    tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    photos = make_image_folder(tmp_path / "photos", {"ant": 10, "bee": 10})
    original, resized = _planted_copies(photos)
    report, by_split, artifact = convert(photos, ["ant", "bee"], tmp_path / "out", 20, 20)
    split = images.which_split(original, 20, 20)
    assert images.which_split(resized, 20, 20) != split  # so the grouping has to move it
    (group,) = report["near_duplicates"]
    assert group["files"] == sorted(
        [f"ant/{original}", f"ant/{resized}", "ant/cropped.jpg", "ant/retoned.jpg"])
    assert group["oldest"] == f"ant/{original}" and group["split"] == split
    assert 0 < group["distance"] <= report["near_duplicate_distance"] == 64
    where = {_feature(example, features.FILENAME_KEY).decode(): name
             for name, examples in by_split.items() for example in examples}
    assert {where[name] for name in group["files"]} == {split}
    # Another photo of the same scene is no copy; a copy in another class is a conflict.
    assert "ant/reframed.jpg" in where
    assert report["label_conflicts"] == [{"files": ["ant/flower_copy.jpg", "bee/flower.jpg"],
                                          "classes": ["ant", "bee"], "identical": False}]
    assert "ant/flower_copy.jpg" not in where and "bee/flower.jpg" not in where
    assert artifact.get_int_custom_property("num_near_duplicate_groups") == 1
    assert artifact.get_int_custom_property("num_near_duplicate_photos") == 4
    assert artifact.get_int_custom_property("num_label_conflicts") == 1
    assert any("1 groups of near-duplicates (4 photos)" in record.getMessage()
               for record in caplog.records)
    # A thumbnail of every grouped photo, conflicts too, for the run report.
    thumbnails = {
        _feature(example, features.FILENAME_KEY).decode():
            _feature(example, features.IMAGE_KEY)
        for example in map(tf.train.Example.FromString, (
            record.numpy() for record in tf.data.TFRecordDataset(
                str(tmp_path / "out" / GROUPED_PHOTOS_FILE), compression_type="GZIP")))
    }
    assert set(thumbnails) == {*group["files"], "ant/flower_copy.jpg", "bee/flower.jpg"}
    assert all(raw[:2] == b"\xff\xd8" for raw in thumbnails.values())


# --- bad input: one conversion over a corpus of every case (docs/bad_input.md) ---------------


@pytest.fixture(scope="module")
def bad_input(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    photos = make_bad_input_corpus(root / "photos")
    real_read = images.read_image_file
    real_check = executor._check_unchanged_since_fingerprint

    def read_as_non_root(path, listed=None):
        # Tests run as root, whom chmod 000 does not stop: fail the read as a user would see it.
        if path.endswith("locked.jpg"):
            raise images.UnreadableImageError("cannot read file: Permission denied")
        return real_read(path, listed)

    def check_then_change_files(*args):
        # After the listing matched the fingerprint, before any photo is read: as a sync tool
        # or a user would, while a large folder converts.
        real_check(*args)
        (photos / "ant" / VANISHING).unlink()
        with open(photos / "ant" / CHANGING, "ab") as changing:
            changing.write(b"more bytes")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(images, "read_image_file", read_as_non_root)
        patch.setattr(executor, "_check_unchanged_since_fingerprint", check_then_change_files)
        report, by_split, _ = convert(photos, list(scan.discover_classes(photos)), root / "out")
    examples = {
        _feature(example, features.FILENAME_KEY).decode(): (split, example)
        for split, split_examples in by_split.items()
        for example in split_examples
    }
    return report, examples


def _pixels(example):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(_feature(example, features.IMAGE_KEY)))).astype(int)


def test_bad_input_skipped_files_and_their_reasons(bad_input):
    report, examples = bad_input
    reasons = {item["file"]: item["reason"] for item in report["skipped"]}
    assert set(reasons) == {
        "ant/empty.jpg", "ant/truncated.jpg", "ant/random.jpg", "ant/bomb.png", "ant/tiny.png",
        "ant/selfloop.jpg", "ant/locked.jpg", "ant/broken.jpg", "ant/pipe.jpg",
        "ant/socket.png", "ant/zeros.jpg", "ant/caf\\xe9.jpg", "ant/dossier\\xff",
        f"ant/{VANISHING}", f"ant/{CHANGING}",
    }
    assert reasons["ant/empty.jpg"] == "empty file"
    assert reasons["ant/truncated.jpg"].startswith("corrupt or truncated image")
    assert reasons["ant/random.jpg"] == images.NOT_AN_IMAGE
    assert reasons["ant/bomb.png"].startswith("too large: 400000000 pixels is over the")
    assert reasons["ant/tiny.png"] == "too small (1x1); at least 8x8 pixels needed"
    assert reasons["ant/selfloop.jpg"] == "cannot read file: Too many levels of symbolic links"
    assert reasons["ant/locked.jpg"] == "cannot read file: Permission denied"
    assert reasons["ant/broken.jpg"] == "broken symbolic link to missing.jpg"
    assert reasons["ant/pipe.jpg"] == "a named pipe (FIFO), not a regular file; never opened"
    assert reasons["ant/socket.png"] == "a socket, not a regular file; never opened"
    assert reasons["ant/zeros.jpg"] == "a character device, not a regular file; never opened"
    assert reasons["ant/caf\\xe9.jpg"] == "file name is not valid UTF-8; rename it"
    assert reasons["ant/dossier\\xff"] == "folder name is not valid UTF-8; rename it"
    assert reasons[f"ant/{VANISHING}"] == images.VANISHED
    assert reasons[f"ant/{CHANGING}"] == images.CHANGED
    assert not set(reasons) & set(examples)
    # One record per line in the report's JSON, and valid UTF-8 names only.
    json.dumps(report, ensure_ascii=False).encode("utf-8")


def test_bad_input_ignored_files_are_listed(bad_input):
    report, examples = bad_input
    assert [item["file"] for item in report["ignored"]] == [
        "ant/.DS_Store", "ant/.hidden.jpg", "ant/Thumbs.db", "ant/bee_link", "ant/fifo_notes",
        "ant/nested/loop", "ant/nested/up", "ant/notes.txt",
    ]
    reasons = {item["file"]: item["reason"] for item in report["ignored"]}
    assert reasons["ant/bee_link"].startswith("symbolic link to ../bee, inside the image folder")
    # Nothing of bee was read again through ant/bee_link: no label conflict, no ant copy.
    assert not [name for name in examples if name.startswith("ant/bee_link/")]


# One noise photo saved as PNG (named .jpg), BMP, WebP, TIFF and JPEG: near-duplicates.
SAME_PHOTO = ("UPPER.JPG", "bitmap.bmp", "photo.tif", "photo.webp", "png_named.jpg")


def test_bad_input_odd_but_valid_files_convert(bad_input):
    report, examples = bad_input
    (same_photo,) = report["near_duplicates"]
    for name in (
        "png_named.jpg", "animated.gif", "bitmap.bmp", "photo.webp", "photo.tif", "scan.TIFF",
        "cmyk.jpg", "gray.jpg", "deep16.png", "rgba.png", "rotated.jpg", "UPPER.JPG",
        "UPPER2.JPEG", "nested/deeper/inner.jpg", "sous dossier é/fleur d'été ü.jpg",
        "line\nbreak.jpg", "album.jpg/inside.jpg", "outside/far.jpg", "linked.jpg",
    ):
        split, example = examples[f"ant/{name}"]
        assert _feature(example, features.LABEL_NAME_KEY) == b"ant", name
        assert _feature(example, features.IMAGE_KEY)[:2] == b"\xff\xd8", name
        if name in SAME_PHOTO:  # the split of its oldest copy
            assert split == same_photo["split"], name
        else:
            assert images.which_split(name, 10, 10) == split, name  # the base name decides
    assert abs(_pixels(examples["ant/deep16.png"][1]) - 100).max() <= 2  # not white or black
    assert abs(_pixels(examples["ant/animated.gif"][1]) - [255, 0, 0]).max() <= 8  # frame 1
    rotated = examples["ant/rotated.jpg"][1]
    assert (_feature(rotated, "image/height"), _feature(rotated, "image/width")) == (40, 20)
    assert _pixels(examples["ant/gray.jpg"][1]).shape == (16, 24, 3)


def test_bad_input_duplicates_share_one_split_and_conflicts_are_left_out(bad_input):
    report, examples = bad_input
    first, second = names_in_different_splits()
    assert images.which_split(first, 10, 10) != images.which_split(second, 10, 10)
    expected_split = images.which_split(first, 10, 10)
    assert report["duplicates"] == [{
        "files": [f"ant/{first}", f"ant/{second}"], "class": "ant", "split": expected_split,
        "oldest": f"ant/{first}",
    }]
    # Flat single-colour photos (gray.jpg, rgba.png, ...) share a pHash but are no copies.
    (same_photo,) = report["near_duplicates"]
    assert same_photo["files"] == [f"ant/{name}" for name in SAME_PHOTO]
    assert same_photo["oldest"] == "ant/png_named.jpg" and 0 < same_photo["distance"] <= 64
    assert same_photo["split"] == images.which_split("png_named.jpg", 10, 10)
    assert examples[f"ant/{first}"][0] == examples[f"ant/{second}"][0] == expected_split
    assert report["label_conflicts"] == [
        {"files": ["ant/conflict.jpg", "bee/conflict_copy.jpg"], "classes": ["ant", "bee"],
         "identical": True}
    ]
    assert "ant/conflict.jpg" not in examples and "bee/conflict_copy.jpg" not in examples
    # 4 good ant photos + 15 odd-but-valid + 4 odd names and links + 2 duplicates; 4 bee
    # photos; 4 cat photos through the class folder link.
    counts = {name: sum(splits.values()) for name, splits in report["counts"].items()}
    assert counts == {"ant": 25, "bee": 4, "cat": 4} and report["num_images"] == len(examples)
    assert {name for name in examples if name.startswith("cat/")} == {
        f"cat/cat_{index}.jpg" for index in range(4)
    }


def test_a_folder_changed_after_its_fingerprint_stops_with_one_line(tmp_path):
    photos = make_image_folder(tmp_path / "photos", {"ant": 3, "bee": 3})
    exec_properties = driven_exec_properties(image_example_gen(photos, ["ant", "bee"]))
    (photos / "ant" / "sub").mkdir()
    os.link(photos / "ant" / "ant_0.jpg", photos / "ant" / "sub" / "late.jpg")
    with pytest.raises(images.DataDirError) as stopped:
        run_executor(exec_properties, tmp_path / "out")
    message = str(stopped.value)
    assert message.startswith(f"image folder {photos} changed between its fingerprint and the")
    assert message.endswith("run the same command again once nothing writes to it")
    assert "\n" not in message


def test_class_imbalance_is_measured_and_reported(tmp_path, caplog):
    photos = make_image_folder(tmp_path / "photos", {"ant": 40, "bee": 10, "cat": 12})
    component = image_example_gen(photos, ["ant", "bee", "cat"], max_class_imbalance=3.5)
    assert component.exec_properties["max_class_imbalance"] == 3.5
    report, _, artifact = convert(photos, ["ant", "bee", "cat"], tmp_path / "out")
    balance = report["class_balance"]
    assert balance["ratio"] == 4.0 and balance["imbalanced"]
    assert balance["largest"] == {"class": "ant", "images": 40}
    assert balance["smallest"] == {"class": "bee", "images": 10}
    assert artifact.get_string_custom_property("class_imbalance_ratio") == "4.00"
    # "class imbalance", not "imbalance": this test's own tmp_path holds that word, and so
    # does any log line that names a file in it.
    (warning,) = [record.getMessage() for record in caplog.records if "class imbalance" in
                  record.getMessage()]
    assert "4x is over 3x: ant has 40 images, bee 10" in warning


def test_balance_of_even_classes_and_of_a_class_missing_from_a_split():
    counts = {"ant": {"train": 8, "eval": 1, "test": 1}, "bee": {"train": 1}}
    balance = class_balance(counts, max_ratio=20)
    assert balance["ratio"] == 10 and not balance["imbalanced"]
    assert balance["missing_from_splits"] == {"eval": ["bee"], "test": ["bee"]}
    even = class_balance({"a": {"train": 5}, "b": {"train": 5}}, max_ratio=3)
    assert even["ratio"] == 1 and even["missing_from_splits"] == {"eval": ["a", "b"],
                                                                   "test": ["a", "b"]}
    # With --testing-percentage 0 the test split is meant to be empty: not worth a warning.
    no_test = class_balance(counts, max_ratio=20, splits=["train", "eval"])
    assert no_test["missing_from_splits"] == {"eval": ["bee"]}


def test_a_class_with_one_photo_is_converted_with_a_warning(tmp_path, caplog):
    photos = make_image_folder(tmp_path / "photos", {"ant": 30, "bee": 30})
    lonely = make_image_folder(tmp_path / "lonely", {"cat": 1})
    os.rename(lonely / "cat", photos / "cat")
    report, _, _ = convert(photos, ["ant", "bee", "cat"], tmp_path / "out", 20, 20)
    assert sum(report["counts"]["cat"].values()) == 1
    missing = report["class_balance"]["missing_from_splits"]
    assert sum("cat" in names for names in missing.values()) == 2
    assert any("of class cat: too few photos for every split" in record.getMessage()
               for record in caplog.records)


@pytest.mark.parametrize("testing, validation, split, flag", [
    (10, 10, "test", "--testing-percentage"), (0, 1, "eval", "--validation-percentage"),
])
def test_an_empty_split_stops_with_one_line_naming_the_flag(
    tmp_path, testing, validation, split, flag
):
    photos = make_image_folder(tmp_path / "photos", {"ant": 3, "bee": 3})
    with pytest.raises(images.DataDirError) as stopped:
        convert(photos, ["ant", "bee"], tmp_path / "out", testing, validation)
    message = str(stopped.value)
    assert message.startswith(f"the {split} split is empty: 6 photos") and flag in message
    assert "\n" not in message


def test_the_declared_formats_are_the_ones_written():
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_component_specs as specs

    declared = {specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
                specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP}
    assert executor.declared_formats(declared) == (example_gen_pb2.FORMAT_TF_EXAMPLE,
                                                   "tfrecords_gzip")
    with pytest.raises(ValueError, match="File format is not valid"):
        executor.declared_formats({**declared, specs.OUTPUT_FILE_FORMAT_KEY: 12345})
    with pytest.raises(ValueError, match="tf.Examples only"):
        executor.declared_formats(
            {**declared, specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_PARQUET})
