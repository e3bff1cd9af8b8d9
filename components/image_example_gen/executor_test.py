"""Tests of ImageExampleGen's executor: the Beam conversion, split, report and bad files."""

import json
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402

from components.image_example_gen import executor, images  # noqa: E402
from components.image_example_gen.component import ImageExampleGen  # noqa: E402
from pipeline import config as config_lib  # noqa: E402
from tests.support import make_corrupt_file, make_image_folder  # noqa: E402


def convert(data_dir, class_names, output_dir, testing=10, validation=10):
    """Runs the executor as the pipeline would; returns (report dict, examples by split)."""
    component = ImageExampleGen(str(data_dir), class_names, testing, validation)
    examples = standard_artifacts.Examples()
    examples.uri = str(output_dir)
    context = BaseBeamExecutor.Context(
        beam_pipeline_args=["--direct_num_workers=1"], tmp_dir=str(output_dir / "tmp")
    )
    executor.Executor(context).Do({}, {"examples": [examples]}, dict(component.exec_properties))
    report = json.loads((output_dir / executor.REPORT_FILE).read_text())
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
            file_name = _feature(example, config_lib.FILENAME_KEY).decode()
            assert images.which_split(file_name, 10, 10) == split
            class_name = _feature(example, config_lib.LABEL_NAME_KEY).decode()
            assert file_name.startswith(class_name + "/")
            assert _feature(example, config_lib.LABEL_KEY) == ["ant", "bee"].index(class_name)
            # PNGs are stored as RGB JPEG, so later steps see one format.
            assert _feature(example, config_lib.IMAGE_KEY)[:2] == b"\xff\xd8"
    assert artifact.get_int_custom_property("num_images") == 24
    assert artifact.split_names == '["train", "eval", "test"]'


def test_unreadable_files_are_skipped_and_reported(tmp_path):
    photos = make_image_folder(tmp_path / "photos", {"ant": 4, "bee": 4})
    make_corrupt_file(photos / "bee" / "broken.jpg")
    (photos / "ant" / "empty.jpg").write_bytes(b"")
    report, by_split, _ = convert(photos, ["ant", "bee"], tmp_path / "out")
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
        flower_photos, list(images.discover_classes(flower_photos)), tmp_path / "out"
    )
    counts = {name: sum(splits.values()) for name, splits in report["counts"].items()}
    assert counts == {"daisy": 438, "dandelion": 631, "roses": 377, "sunflowers": 459,
                      "tulips": 531}
    assert report["skipped"] == []
    # retrain.py's 10/10 split, within sampling noise.
    assert 0.07 < len(by_split[images.TEST]) / 2436 < 0.13
    assert 0.07 < len(by_split[images.EVAL]) / 2436 < 0.13
