"""The cross-validated logistic-regression head, its Keras form, and the Wilson interval."""

import numpy as np
import pytest

from models import linear_head


def _features(rng, labels, dimension=8):
    centres = rng.normal(0, 1, (labels.max() + 1, dimension))
    return np.abs(centres[labels] + rng.normal(0, 0.3, (len(labels), dimension)))


def test_cross_validation_folds_over_photos_and_scores_the_mean_of_the_views():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    plain = _features(rng, labels)
    noise = rng.normal(0, 5, plain.shape)  # a useless second view
    results = linear_head.cross_validate([plain], labels, 3, (0.01, 10.0))
    assert [r.c for r in results] == [0.01, 10.0] and results[0].folds == 5
    assert results[1].accuracy > 0.9 and 0 <= results[1].standard_error < 0.1
    # Scored on the plain view alone, the useless view only adds training rows.
    scored_plain = linear_head.cross_validate([plain, noise], labels, 3, (10.0,), scored_views=1)
    both = linear_head.cross_validate([plain, noise], labels, 3, (10.0,))
    assert scored_plain[0].accuracy > both[0].accuracy


def test_a_small_class_lowers_the_number_of_folds():
    rng = np.random.default_rng(1)
    labels = np.array([0] * 20 + [1] * 3)
    (result,) = linear_head.cross_validate([_features(rng, labels)], labels, 2, (1.0,))
    assert result.folds == 3


@pytest.mark.parametrize("num_classes", [2, 4])
def test_the_dense_layer_gives_the_heads_probabilities(num_classes):
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(num_classes), 10)
    features = _features(rng, labels)
    head = linear_head.fit([features], labels, 3.0)
    kernel, bias = linear_head.dense_weights(head, num_classes, features.shape[1])
    logits = linear_head.l2_normalise(features) @ kernel + bias
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    np.testing.assert_allclose(softmax, linear_head.predict(head, [features], num_classes),
                               atol=1e-5)


def test_a_class_without_train_photos_gets_no_probability():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 2], 10)
    head = linear_head.fit([_features(rng, labels)], labels, 1.0)
    scores = linear_head.predict(head, [_features(rng, labels)], 3)
    assert scores.shape == (20, 3) and np.all(scores[:, 1] == 0)
    kernel, bias = linear_head.dense_weights(head, 3, 8)
    assert bias[1] < -1000


def test_wilson_interval():
    low, high = linear_head.wilson_interval(210, 235)
    assert low == pytest.approx(0.8477, abs=1e-3) and high == pytest.approx(0.9273, abs=1e-3)
    assert linear_head.wilson_interval(0, 0) == (0.0, 1.0)
    low, high = linear_head.wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and 0.69 < low < 0.73


def test_no_fit_keeps_its_design_matrix(monkeypatch):
    # scipy's optimiser holds its arguments in a reference cycle: without a collection after
    # each fit, every fold's float64 copy of the features stayed until Python's rare full
    # collection (3.5 GB at 10x the photos).
    import weakref

    made = []
    build = linear_head.design_matrix

    def tracked(*args, **kwargs):
        matrix = build(*args, **kwargs)
        made.append(weakref.ref(matrix))
        return matrix

    monkeypatch.setattr(linear_head, "design_matrix", tracked)
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(3), 20)
    linear_head.cross_validate([_features(rng, labels)] * 2, labels, 3, (0.1, 1.0))
    assert len(made) == 10 and all(ref() is None for ref in made)


def test_the_design_matrix_is_each_views_normalised_rows_in_float64():
    rng = np.random.default_rng(5)
    views = [rng.normal(size=(6, 4)).astype(np.float32) for _ in range(2)]
    rows = np.array([4, 1])
    matrix = linear_head.design_matrix(views, rows)
    assert matrix.dtype == np.float64 and matrix.flags.c_contiguous
    np.testing.assert_allclose(matrix, linear_head.l2_normalise(
        np.concatenate([views[0][rows], views[1][rows]]).astype(np.float64)), rtol=1e-6)
    assert linear_head.design_matrix(views).shape == (12, 4)


def test_groups_keep_copies_of_a_subject_in_one_fold():
    # 40 subjects, 5 near-copies each, labels unrelated to the features: only copies of a
    # held-out photo in the fit folds let the head "recognise" it.
    rng = np.random.default_rng(6)
    subject_labels = np.repeat([0, 1], 20)
    rng.shuffle(subject_labels)
    centres = rng.normal(size=(40, 16))
    rows = np.repeat(np.arange(40), 5)
    features = centres[rows] + rng.normal(0, 0.01, (200, 16))
    labels, groups = subject_labels[rows], [f"s{row}" for row in rows]
    folds, splits = linear_head._splitter(labels, groups, 5, 0)
    assert folds == 5
    for _, held in splits:
        held_groups = {groups[row] for row in held}
        assert sum(groups.count(g) for g in held_groups) == len(held)  # whole groups only
    (leaky,) = linear_head.cross_validate([features], labels, 2, (100.0,))
    (grouped,) = linear_head.cross_validate([features], labels, 2, (100.0,), groups=groups)
    assert leaky.accuracy > 0.95 and grouped.accuracy < 0.75


def test_groups_of_single_photos_fold_as_without_groups():
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(3), 10)
    features = _features(rng, labels)
    plain = linear_head.cross_validate([features], labels, 3, (1.0,))
    singles = linear_head.cross_validate([features], labels, 3, (1.0,),
                                         groups=[str(i) for i in range(30)])
    assert plain == singles
