"""bench/tflite_accuracy.py's photo selection by split and its paired difference."""

import numpy as np
import pytest

from bench import tflite_accuracy
from tests.support.images import make_image_folder


def test_split_photos_takes_one_split_or_several(tmp_path):
    make_image_folder(tmp_path, {"ant": 30, "bee": 30}, size=(8, 8))
    names, everything = tflite_accuracy.split_photos(str(tmp_path), ("train", "eval", "test"),
                                                     10, 10)
    assert list(names) == ["ant", "bee"] and len(everything) == 60
    _, test = tflite_accuracy.split_photos(str(tmp_path), "test", 10, 10)
    _, test_and_eval = tflite_accuracy.split_photos(str(tmp_path), ["test", "eval"], 10, 10)
    assert 0 < len(test) < len(test_and_eval) < 60
    assert set(test) < set(test_and_eval)


def test_paired_difference_is_over_the_same_photos():
    reference = np.array([True] * 90 + [False] * 10)
    same = tflite_accuracy.paired_difference(reference, reference)
    assert same == (0.0, 0.0)
    worse = reference.copy()
    worse[:3] = False  # three photos lost, none gained
    difference, error = tflite_accuracy.paired_difference(worse, reference)
    assert difference == pytest.approx(-0.03)
    assert error == pytest.approx(np.std([-1.0] * 3 + [0.0] * 97, ddof=1) / 10)


def test_the_shared_paired_error_matches_numpys():
    from bench import common

    values = np.array([1.0, 0.0, 0.0, -1.0, 1.0, 1.0])
    mean, error = common.mean_and_standard_error(values)
    assert mean == pytest.approx(values.mean())
    assert error == pytest.approx(values.std(ddof=1) / np.sqrt(len(values)))
    assert common.mean_and_standard_error([0.5])[0] == 0.5
    assert np.isnan(common.mean_and_standard_error([0.5])[1])
