"""The final head: multinomial logistic regression on L2-normalised MobileNet features.

scikit-learn's LogisticRegression with its regularisation C chosen by stratified k-fold
cross-validation over the train photos; every view of a photo (its mirror image...) is one more
training row and lands in the same fold as the photo, and a held-out photo is scored by the
mean of its views' probabilities, as serving scores it. The fitted head becomes a Keras Dense
softmax layer, so the exported model is one graph (BENCHMARKS.md, "Recipes").
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from models.training_config import HEAD_C_GRID as C_GRID

CV_FOLDS = 5
MAX_ITERATIONS = 3000


def l2_normalise(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


@dataclasses.dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold accuracy of the head for one C: mean over folds and its standard error,
    and each photo's out-of-fold probabilities [N, classes] (for models/label_issues.py)."""

    c: float
    accuracy: float
    standard_error: float
    folds: int
    out_of_fold: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)


def _logistic_regression(c: float, class_weight):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=MAX_ITERATIONS, class_weight=class_weight)


def _fit(features_by_view: list[np.ndarray], labels: np.ndarray, c: float, class_weight):
    """One head on all views of the given photos."""
    return _logistic_regression(c, class_weight).fit(
        l2_normalise(np.concatenate(features_by_view)),
        np.concatenate([labels] * len(features_by_view)),
    )


def predict(head, features_by_view: list[np.ndarray], num_classes: int) -> np.ndarray:
    """[N, num_classes] probabilities: the mean over the views, in label order. Features are
    raw: they are L2-normalised here, as the exported model's UnitNormalization does."""
    scores = np.zeros((len(features_by_view[0]), num_classes))
    for features in features_by_view:
        # A class without train photos has no column in sklearn's output.
        scores[:, head.classes_] += head.predict_proba(l2_normalise(features))
    return scores / len(features_by_view)


def cross_validate(features_by_view: list[np.ndarray], labels: np.ndarray, num_classes: int,
                   c_grid=C_GRID, class_weight=None, folds: int = CV_FOLDS, seed: int = 0,
                   scored_views: int | None = None) -> list[CrossValidation]:
    """Out-of-fold accuracy for each C of the grid; folds are over photos, by class.

    The head is fitted on every view; a held-out photo is scored by its first `scored_views`
    views (all by default), as serving scores it. A class with fewer photos than folds
    lowers the number of folds (to 2 at least).
    """
    scored = features_by_view[:scored_views or len(features_by_view)]
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if len(labels) else 0
    folds = min(folds, max(2, smallest)) if smallest else folds
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    correct = {c: [] for c in c_grid}
    out_of_fold = {c: np.zeros((len(labels), num_classes)) for c in c_grid}
    for fit_rows, held_rows in splitter.split(labels, labels):
        for c in c_grid:
            head = _fit([f[fit_rows] for f in features_by_view], labels[fit_rows], c,
                        class_weight)
            scores = predict(head, [f[held_rows] for f in scored], num_classes)
            out_of_fold[c][held_rows] = scores
            correct[c].append(float(np.mean(scores.argmax(1) == labels[held_rows])))
    return [
        CrossValidation(c, float(np.mean(accuracies)),
                        float(np.std(accuracies, ddof=1) / math.sqrt(len(accuracies))), folds,
                        out_of_fold[c])
        for c, accuracies in correct.items()
    ]


def fit(features_by_view: list[np.ndarray], labels: np.ndarray, c: float, class_weight=None):
    """The head on every view of every photo (raw features, normalised here)."""
    return _fit(features_by_view, labels, c, class_weight)


def dense_weights(head, num_classes: int, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [D, K], bias [K]) of a Dense softmax layer equal to the fitted head.

    A class the head never saw gets a bias far below the others: probability ~0, as sklearn
    gives it none. A two-class sklearn head has one row of weights for class 1; softmax over
    [0, w] is the same as its sigmoid.
    """
    kernel = np.zeros((dimension, num_classes), np.float32)
    bias = np.full((num_classes,), -1e4, np.float32)
    coef, intercept = head.coef_, head.intercept_
    if len(head.classes_) == 2 and coef.shape[0] == 1:
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    kernel[:, head.classes_] = coef.T
    bias[head.classes_] = intercept
    return kernel, bias


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default); (0, 1) for no trials."""
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - margin), min(1.0, centre + margin)
