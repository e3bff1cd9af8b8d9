"""bench/recipe_cv.py: the heads it compares and its NAME@C syntax, on small separable data."""

import numpy as np
import pytest

from bench import recipe_cv


def _views(rows: int = 60, classes: int = 3, width: int = 8):
    rng = np.random.default_rng(0)
    labels = np.arange(rows) % classes
    centres = rng.normal(size=(classes, width)) * 3
    data = {view: recipe_cv.normalised(centres[labels] + rng.normal(size=(rows, width)), "l2")
            for view in ("a", "b")}
    return data, labels


@pytest.mark.parametrize("head", ["logistic", "svm-rbf", "svm-rbf-ovr", "svm-linear", "mlp",
                                  "rbf-logistic"])
@pytest.mark.parametrize("combine", ["rows", "concat"])
def test_every_head_scores_held_out_photos_per_class(head, combine):
    data, labels = _views()
    recipe = recipe_cv.Recipe("r", ("a", "b"), ("a", "b"), head=head, combine=combine)
    fit_rows, held_rows = np.arange(0, 45), np.arange(45, 60)
    scores = recipe_cv.held_out_scores(recipe, data, labels, fit_rows, held_rows, 10.0)
    assert scores.shape == (15, 3)
    assert np.mean(scores.argmax(1) == labels[held_rows]) > 0.9


def test_a_recipe_name_may_carry_its_c():
    assert recipe_cv.named_with_c("short288, svm-rbf@3", 30.0) == ("short288, svm-rbf", 3.0)
    assert recipe_cv.named_with_c("short288", 30.0) == ("short288", 30.0)


def test_recipe_names_are_unique():
    names = [recipe.name for recipe in recipe_cv.default_recipes()]
    assert len(names) == len(set(names))
