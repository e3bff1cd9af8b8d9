"""Suspected label errors on generated photos: a photo planted in the wrong class folder."""

import numpy as np
from PIL import Image

from models import label_issues, linear_head
from tests.support import make_image_folder

CLASSES = ("ant", "bee", "cat")


def _features_and_labels(root, planted=None):
    """Tiny pixel features of every photo (the classes differ by hue and shape), the folder
    labels, and the file names; `planted` (a bee photo) is filed under ant."""
    files, rows, labels = [], [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((root / name).iterdir()):
            label_of = CLASSES.index("ant") if path.name == planted else label
            with Image.open(path) as image:
                rows.append(np.asarray(image.convert("RGB").resize((8, 6)), np.float64).ravel())
            labels.append(label_of)
            files.append(f"{CLASSES[label_of]}/{path.name}")
    return np.stack(rows) / 255.0, np.asarray(labels), files


def _out_of_fold(features, labels):
    (result,) = linear_head.cross_validate([features], labels, len(CLASSES), (1.0,))
    return result.out_of_fold


def test_a_photo_in_the_wrong_class_folder_is_the_top_suspect(tmp_path):
    root = make_image_folder(tmp_path / "photos", dict.fromkeys(CLASSES, 20))
    features, labels, files = _features_and_labels(root, planted="bee_3.jpg")
    probabilities = _out_of_fold(features, labels)
    suspects = label_issues.ranked(labels, probabilities)
    report = label_issues.report(suspects, labels, probabilities, files, ["train"] * len(files),
                                 CLASSES)
    top = report["suspects"][0]
    assert top["file"] == "ant/bee_3.jpg" and top["label"] == "ant"
    assert top["suggested"] == "bee" and top["suggested_probability"] > 0.5
    assert top["label_probability"] < 0.2
    assert report["count"] <= 3 and report["checked"] == {"train": 60}
    assert report["by_label"]["ant"] >= 1
    # Most suspicious first: the folder label's probability rises down the list.
    chances = [suspect["label_probability"] for suspect in report["suspects"]]
    assert chances == sorted(chances)
    assert label_issues.message(report).startswith(f"{report['count']} of 60 train photos")
    assert "ant/bee_3.jpg (ant, looks bee" in label_issues.message(report)


def test_clean_folders_have_no_suspect_and_one_class_none_to_check(tmp_path):
    root = make_image_folder(tmp_path / "photos", dict.fromkeys(CLASSES, 20))
    features, labels, files = _features_and_labels(root)
    probabilities = _out_of_fold(features, labels)
    assert len(label_issues.ranked(labels, probabilities)) == 0
    assert len(label_issues.ranked(np.zeros(5, int), np.ones((5, 3)) / 3)) == 0
