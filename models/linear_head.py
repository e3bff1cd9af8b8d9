"""The final head: multinomial logistic regression on L2-normalised MobileNet features (or,
with kind "svm-rbf", models/kernel_head.py's machines, cross-validated the same way).

scikit-learn's LogisticRegression with its regularisation C chosen by stratified k-fold
cross-validation over the train photos; every view of a photo (its mirror image...) is one more
training row and lands in the same fold as the photo, as do the photos of one subject, and a
held-out photo is scored by the mean of its views' probabilities, as serving scores it. The
fitted logistic head becomes a Keras Dense softmax layer (the RBF head, kernel_head's layer),
so the exported model is one graph
(BENCHMARKS.md, "Recipes").
"""

from __future__ import annotations

import dataclasses
import gc
import math

import numpy as np

from models.training_config import HEAD_C_GRID as C_GRID

CV_FOLDS = 5
MAX_ITERATIONS = 3000


def _norms(features: np.ndarray) -> np.ndarray:
    """Each row's L2 norm, [N, 1], at least 1e-12 so an all-zero row stays zero."""
    return np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


def l2_normalise(features: np.ndarray) -> np.ndarray:
    return features / _norms(features)


@dataclasses.dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold accuracy of the head for one C: mean over folds and its standard error,
    and each photo's out-of-fold probabilities [N, classes] (for models/label_issues.py)."""

    c: float
    accuracy: float
    standard_error: float
    folds: int
    out_of_fold: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    # A head with decision values (models/kernel_head.py): each scored view's out of fold,
    # [views, N, classes], for its temperature.
    out_of_fold_decisions: np.ndarray | None = dataclasses.field(default=None, compare=False,
                                                                 repr=False)


def _logistic_regression(c: float, class_weight):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=MAX_ITERATIONS, class_weight=class_weight)


def design_matrix(features_by_view: list[np.ndarray], rows: np.ndarray | None = None
                  ) -> np.ndarray:
    """The L2-normalised rows of every view, stacked view after view, as one float64 array.

    float64 because lbfgs copies anything else to float64 (sklearn 1.5 `_logistic.py`); built
    here, that copy is the only one: one view's rows at a time pass through float32.
    """
    count = len(features_by_view[0]) if rows is None else len(rows)
    matrix = np.empty((count * len(features_by_view), features_by_view[0].shape[-1]), np.float64)
    for index, features in enumerate(features_by_view):
        block = matrix[index * count:(index + 1) * count]
        block[:] = features if rows is None else features[rows]
        block /= _norms(block)
    return matrix


def _fit(features_by_view: list[np.ndarray], labels: np.ndarray, c: float, class_weight,
         rows: np.ndarray | None = None, kind: str = "logistic"):
    """One head on all views of the given photos (`rows` of them; all by default)."""
    labels = labels if rows is None else labels[rows]
    # scipy's ScalarFunction keeps the design matrix in a reference cycle, which only a full
    # collection frees; without one, each fit's copy stayed (a 4.0 GB peak in the 20 fits of
    # a cross-validation on 19,531 photos x 2 views; bench/head_memory.py). Objects from before
    # the fit are frozen so that the collection does not walk TensorFlow's million objects
    # (1.2 s a collection with them, under 1 ms without).
    gc.freeze()
    try:
        design = design_matrix(features_by_view, rows)
        targets = np.concatenate([labels] * len(features_by_view))
        if kind == "svm-rbf":
            from models import kernel_head

            head = kernel_head.fit(design, targets, c, class_weight)
        else:
            head = _logistic_regression(c, class_weight).fit(design, targets)
        del design
        gc.collect()
    finally:
        gc.unfreeze()
    return head


def predict(head, features_by_view: list[np.ndarray], num_classes: int) -> np.ndarray:
    """[N, num_classes] probabilities: the mean over the views, in label order. Features are
    raw: they are L2-normalised here, as the exported model's UnitNormalization does."""
    scores = np.zeros((len(features_by_view[0]), num_classes))
    for features in features_by_view:
        # A class without train photos has no column in sklearn's output.
        scores[:, head.classes_] += head.predict_proba(l2_normalise(features))
    return scores / len(features_by_view)


def _splitter(labels: np.ndarray, groups, folds: int, seed: int):
    """(folds, the splits' (fit rows, held rows)): stratified by class, and with `groups` (one
    key a photo) every group in one fold. Folds drop to the fewest photos (or groups) of a
    class, 2 at least."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    grouped = groups is not None and len(set(groups)) < len(labels)
    if grouped:
        per_class = [len({g for g, label in zip(groups, labels, strict=True) if label == c})
                     for c in np.unique(labels)]
    else:
        per_class = [int(n) for n in np.bincount(labels) if n] if len(labels) else []
    smallest = min(per_class) if per_class else 0
    folds = min(folds, max(2, smallest)) if smallest else folds
    if grouped:
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(
            labels, labels, groups)
    else:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels)
    return folds, list(splits)


def cross_validate(features_by_view: list[np.ndarray], labels: np.ndarray, num_classes: int,
                   c_grid=C_GRID, class_weight=None, folds: int = CV_FOLDS, seed: int = 0,
                   scored_views: int | None = None, groups=None, kind: str = "logistic"
                   ) -> list[CrossValidation]:
    """Out-of-fold accuracy for each C of the grid; folds are over photos, by class.

    The head is fitted on every view; a held-out photo is scored by its first `scored_views`
    views (all by default), as serving scores it. `groups` (a key per photo, e.g. its
    subject) keeps the photos of a group in one fold: without it, copies of one subject in
    different folds make the accuracy optimistic and favour the weakest regularisation.
    A class with fewer photos than folds lowers the number of folds (to 2 at least).
    """
    scored = features_by_view[:scored_views or len(features_by_view)]
    folds, splits = _splitter(labels, groups, folds, seed)
    correct = {c: [] for c in c_grid}
    out_of_fold = {c: np.zeros((len(labels), num_classes)) for c in c_grid}
    decisions = ({c: np.full((len(scored), len(labels), num_classes), -1e4) for c in c_grid}
                 if kind == "svm-rbf" else {})
    for fit_rows, held_rows in splits:
        for c in c_grid:
            head = _fit(features_by_view, labels, c, class_weight, fit_rows, kind)
            scores = predict(head, [f[held_rows] for f in scored], num_classes)
            out_of_fold[c][held_rows] = scores
            correct[c].append(float(np.mean(scores.argmax(1) == labels[held_rows])))
            for view, features in enumerate(scored if decisions else []):
                decisions[c][view][np.ix_(held_rows, head.classes_)] = head.decision_function(
                    l2_normalise(features[held_rows]))
    return [
        CrossValidation(c, float(np.mean(accuracies)),
                        float(np.std(accuracies, ddof=1) / math.sqrt(len(accuracies))), folds,
                        out_of_fold[c], decisions.get(c))
        for c, accuracies in correct.items()
    ]


def fit(features_by_view: list[np.ndarray], labels: np.ndarray, c: float, class_weight=None,
        rows: np.ndarray | None = None, kind: str = "logistic"):
    """The head (`kind`: training_config.HEAD_KINDS) on every view of every photo, or of the
    photos in `rows` (raw features, normalised here)."""
    return _fit(features_by_view, labels, c, class_weight, rows, kind)


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
