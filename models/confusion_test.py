import numpy as np

from models import confusion


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    matrix = confusion.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert confusion.confusion_matrix([0], [0], 4).shape == (4, 4)


def test_accuracy_is_the_diagonal_share_and_nan_when_empty():
    assert confusion.accuracy(np.array([[2, 0], [1, 1]])) == 0.75
    assert np.isnan(confusion.accuracy(np.zeros((2, 2))))


def test_confusion_matrix_figure_renders_rgb_pixels():
    figure = confusion.confusion_matrix_figure(np.array([[3, 1], [0, 4]]), ["a", "b"], "title")
    pixels = confusion.rgb_pixels(figure)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert pixels.min() < 100 < 200 < pixels.max()  # dark cells and white paper
