"""The head: class weights, and the RBF or logistic head (`--head`) on cached features whose
regularisation is chosen by cross-validation over the train photos, with the photos whose label
it doubts."""

from __future__ import annotations

import collections
import dataclasses
import logging
import time

import numpy as np

from models import features as feature_names
from models import kernel_head, label_issues, linear_head, serving, training_config
from models.training_config import TrainingConfig

logger = logging.getLogger(__name__)


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    """Per-class weights: inverse class frequency (mean 1 over photos), or None.

    "auto" weights only when the largest class has more than CLASS_WEIGHT_AUTO_RATIO times
    the photos of the smallest; a class without train photos gets weight 1.
    """
    counts = collections.Counter(labels.tolist())
    present = [counts[label] for label in range(num_classes) if counts[label]]
    if mode == "none" or not present:
        return None
    if mode == "auto" and max(present) <= training_config.CLASS_WEIGHT_AUTO_RATIO * min(present):
        return None
    total = sum(present)
    return {
        label: (total / (len(present) * counts[label]) if counts[label] else 1.0)
        for label in range(num_classes)
    }


@dataclasses.dataclass
class HeadFit:
    """The fitted head, with what was measured choosing it."""

    fitted: object
    c: float
    cross_validation: list[linear_head.CrossValidation]
    eval_scores: np.ndarray  # [eval photos, classes], scored as serving scores them
    eval_accuracy: float
    eval_count: int
    # models/label_issues.py's report over the train and eval photos, and how many train
    # photos it named that the final head was not fitted on.
    label_issues: dict = dataclasses.field(default_factory=dict)
    excluded: int = 0
    kind: str = "logistic"  # training_config.HEAD_KINDS

    @property
    def chosen(self) -> linear_head.CrossValidation:
        return next(result for result in self.cross_validation if result.c == self.c)

    def report(self) -> dict:
        chosen = self.chosen
        return {
            "head": self.kind,
            "c": self.c,
            "cv_accuracy": chosen.accuracy,
            "cv_standard_error": chosen.standard_error,
            "cv_folds": chosen.folds,
            "cv_by_c": {f"{result.c:g}": result.accuracy for result in self.cross_validation},
            "eval_accuracy": self.eval_accuracy,
            "eval_count": self.eval_count,
            "excluded_suspects": self.excluded,
        }


def _suspects(settings: TrainingConfig, files: dict | None, train_labels, eval_labels,
              out_of_fold: np.ndarray, eval_scores: np.ndarray) -> tuple[np.ndarray, dict]:
    """(suspected train photos' rows, label_issues' report) from out-of-sample probabilities:
    the train photos' out of fold, the eval photos' from the head fitted on the train photos."""
    names = files or {}
    labels = np.concatenate([train_labels, eval_labels])
    probabilities = np.concatenate([out_of_fold, eval_scores])
    suspects = label_issues.ranked(labels, probabilities)
    issues = label_issues.report(
        suspects, labels, probabilities,
        list(names.get("train") or [""] * len(train_labels))
        + list(names.get("eval") or [""] * len(eval_labels)),
        ["train"] * len(train_labels) + ["eval"] * len(eval_labels), settings.class_names,
    )
    return suspects[suspects < len(train_labels)], issues


def subjects(names: list[str] | None) -> list[str] | None:
    """Each train photo's subject (retrain.py's "_nohash_" rule), for the folds; a photo
    without a name is its own subject. None without names."""
    if not names:
        return None
    return [feature_names.subject_of(name) if name else f"#{row}"
            for row, name in enumerate(names)]


def fit_head(settings: TrainingConfig, features: dict, weights, files: dict | None = None
             ) -> HeadFit:
    """Cross-validates C over the train photos, then fits the head on all of them, or with
    `exclude_suspected_label_errors` on those whose label the cross-validation does not doubt.
    `files`: {"train"|"eval": file names}, for the list of suspects."""
    train_by_view, train_labels = features["train"]
    eval_by_view, eval_labels = features["eval"]
    num_classes = len(settings.class_names)
    scored_views = len(serving.serving_views(settings))
    grid = (settings.head_c,) if settings.head_c > 0 else linear_head.C_GRID
    kind = settings.head
    rows = len(train_labels) * len(train_by_view)
    if kind == "svm-rbf" and rows > kernel_head.MAX_TRAINING_ROWS:
        logger.warning(
            "Trainer: %d train rows (photos x views) are more than the RBF head trains on "
            "(%d: its kernel matrix grows with their square); using the logistic head",
            rows, kernel_head.MAX_TRAINING_ROWS)
        kind = "logistic"
    started = time.time()
    results = linear_head.cross_validate(
        train_by_view, train_labels, num_classes, grid, weights, seed=settings.seed,
        scored_views=scored_views, groups=subjects((files or {}).get("train")),
        kind=kind,
    )
    best = max(results, key=lambda result: result.accuracy)
    fitted = linear_head.fit(train_by_view, train_labels, best.c, weights, kind=kind)
    out_of_fold = best.out_of_fold
    if best.out_of_fold_decisions is not None:
        temperature = kernel_head.fit_temperature(best.out_of_fold_decisions, train_labels)
        fitted.temperature = temperature
        out_of_fold = kernel_head.softmax(temperature * best.out_of_fold_decisions).mean(0)
        logger.info("Trainer: the RBF head's scores at temperature %.2f (fitted out of fold)",
                    temperature)
    eval_scores = linear_head.predict(fitted, eval_by_view[:scored_views], num_classes)
    checked = time.time()
    train_suspects, issues = _suspects(settings, files, train_labels, eval_labels,
                                       out_of_fold, eval_scores)
    logger.info("Trainer: %s (in %.1f s)", label_issues.message(issues), time.time() - checked)
    excluded = 0
    if settings.exclude_suspected_label_errors and len(train_suspects):
        keep = np.ones(len(train_labels), bool)
        keep[train_suspects] = False
        excluded = int(len(train_suspects))
        logger.info("Trainer: the final head leaves out the %d suspected train photos", excluded)
        temperature = getattr(fitted, "temperature", None)
        fitted = linear_head.fit(train_by_view, train_labels, best.c, weights,
                                 np.flatnonzero(keep), kind)
        if temperature is not None:
            fitted.temperature = temperature
        eval_scores = linear_head.predict(fitted, eval_by_view[:scored_views], num_classes)
    eval_accuracy = float(np.mean(eval_scores.argmax(1) == eval_labels))
    logger.info(
        "Trainer: %s head C=%g, cross-validated accuracy %.1f %% ± %.1f (%d folds over %d train "
        "photos, %s), eval accuracy %.1f %%, in %.1f s", kind, best.c,
        100 * best.accuracy, 100 * best.standard_error, best.folds, len(train_labels),
        ", ".join(f"C={r.c:g}: {100 * r.accuracy:.1f} %" for r in results),
        100 * eval_accuracy, time.time() - started,
    )
    return HeadFit(fitted, best.c, results, eval_scores, eval_accuracy, len(eval_labels),
                   issues, excluded, kind)
