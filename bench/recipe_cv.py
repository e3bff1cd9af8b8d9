"""5-fold cross-validated accuracy of head recipes on the features of bench.recipe_features.

Only the train and eval photos of the pipeline's hash split take part (the test split chooses
nothing). A recipe names the views its head is trained on (each view of a photo is one more
training row), the views whose scores are averaged at prediction, the pooling, the feature
normalisation and the head's regularisation C (a grid: the best C is reported). Folds are
over photos, stratified by class, so every view of a photo is in the same fold.

    .venv/bin/python -m bench.recipe_cv --features /tmp/recipe
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from bench import common, recipe_data
from models import kernel_head

FOLDS = 5
C_GRID = (1.0, 3.0, 10.0, 30.0)
RBF_LANDMARKS = 2000


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    train_views: tuple[str, ...]
    test_views: tuple[str, ...]
    pooling: tuple[str, ...] = ("avg",)
    normalise: str = "l2"  # "none", "l2", "sqrt-l2"
    # "logistic"; "svm-rbf" (scikit-learn's SVC, one-vs-one, its decision values averaged over
    # views); "svm-rbf-ovr" (the pipeline's, models/kernel_head.py); "svm-linear"; "mlp";
    # "rbf-logistic"
    head: str = "logistic"
    # "rows": each training view is one more row, scores averaged over test_views;
    # "concat": the views' features side by side, one row per photo (train = test views)
    combine: str = "rows"


def fitted_head(recipe: Recipe, c: float, x, y):
    if recipe.head == "svm-rbf":
        return SVC(C=c, kernel="rbf", gamma="scale").fit(x, y)
    if recipe.head == "svm-rbf-ovr":
        # The pipeline's head (models/kernel_head.py): one machine per class against the rest.
        return kernel_head.fit(np.asarray(x, np.float64), y, c)
    if recipe.head == "svm-linear":
        return SVC(C=c / 10, kernel="linear").fit(x, y)
    if recipe.head == "mlp":
        return MLPClassifier((512,), alpha=1e-2 / c, max_iter=500, early_stopping=False,
                             random_state=0).fit(x, y)
    if recipe.head == "rbf-logistic":
        # The RBF kernel against RBF_LANDMARKS training rows as features (Nystroem), then a
        # logistic regression: a head of fixed size that a TF graph computes in two matmuls
        # and an exp. gamma 1 on unit rows: exp(-|a - b|^2) = exp(2 (a.b - 1)).
        model = make_pipeline(
            Nystroem(gamma=1.0, n_components=min(RBF_LANDMARKS, len(x)), random_state=0),
            LogisticRegression(C=c, max_iter=3000))
        return model.fit(x, y)
    return LogisticRegression(C=c, max_iter=3000).fit(x, y)


def head_scores(head, x):
    return head.decision_function(x) if isinstance(head, SVC) else head.predict_proba(x)


def held_out_scores(recipe: Recipe, data: dict, y, fit_rows, held_rows, c: float):
    """[len(held_rows), classes] scores of the held-out photos by a head fit on fit_rows."""
    if recipe.combine == "concat":
        x = np.concatenate([data[v] for v in recipe.train_views], axis=1)
        return head_scores(fitted_head(recipe, c, x[fit_rows], y[fit_rows]), x[held_rows])
    x_fit = np.concatenate([data[v][fit_rows] for v in recipe.train_views])
    y_fit = np.concatenate([y[fit_rows]] * len(recipe.train_views))
    head = fitted_head(recipe, c, x_fit, y_fit)
    return np.mean([head_scores(head, data[v][held_rows]) for v in recipe.test_views], axis=0)


def normalised(features: np.ndarray, mode: str) -> np.ndarray:
    if mode == "sqrt-l2":
        features = np.sign(features) * np.sqrt(np.abs(features))
    if mode in ("l2", "sqrt-l2"):
        features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return features


def view_features(directory: str, view: str, pooling: tuple[str, ...], mode: str, cache: dict):
    if view not in cache:
        cache[view] = np.load(recipe_data.view_path(directory, view))["features"].astype(
            np.float32)
    parts, start = {}, 0
    for name, width in recipe_data.POOLING_WIDTHS.items():
        parts[name] = cache[view][:, start:start + width]
        start += width
    # Each pooling normalised on its own, so that none dominates by scale.
    return np.concatenate([normalised(parts[name], mode) for name in pooling], axis=1)


def out_of_fold_correct(recipe: Recipe, directory: str, labels, rows, cache, c: float):
    """[len(rows)] 0/1: whether each photo's out-of-fold prediction is right, for one C."""
    data = {v: view_features(directory, v, recipe.pooling, recipe.normalise, cache)[rows]
            for v in set(recipe.train_views) | set(recipe.test_views)}
    y = labels[rows]
    correct = np.zeros(len(rows))
    for fit_rows, held_rows in StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(y, y):
        scores = held_out_scores(recipe, data, y, fit_rows, held_rows, c)
        correct[held_rows] = scores.argmax(1) == y[held_rows]
    return correct


def named_with_c(name: str, c: float) -> tuple[str, float]:
    """'short288@3' -> ('short288', 3.0); a name without '@' takes `c`."""
    body, _, given = name.rpartition("@")
    return (body, float(given)) if body else (name, c)


def paired(recipes: list[tuple[Recipe, float]], directory: str, labels, rows, cache) -> None:
    """Each (recipe, C) against the first on the same folds: the difference in accuracy and
    its standard error over photos (paired, so far smaller than either recipe's own)."""
    first, first_c = recipes[0]
    base = out_of_fold_correct(first, directory, labels, rows, cache, first_c)
    print(f"paired against {first.name} at C={first_c:g} ({100 * base.mean():.2f} %):")
    print("| recipe | C | CV accuracy | difference | its standard error |")
    print("|---|---|---|---|---|")
    for recipe, c in recipes[1:]:
        other = out_of_fold_correct(recipe, directory, labels, rows, cache, c)
        difference, error = common.mean_and_standard_error(other - base)
        print(f"| {recipe.name} | {c:g} | {100 * other.mean():.2f} % | {100 * difference:+.2f} "
              f"| {100 * error:.2f} |", flush=True)


def cross_validate(recipe: Recipe, directory: str, labels, rows, cache, c_grid=C_GRID):
    """{C: (mean accuracy over folds, standard error over folds)}."""
    train = {v: view_features(directory, v, recipe.pooling, recipe.normalise, cache)[rows]
             for v in set(recipe.train_views) | set(recipe.test_views)}
    y = labels[rows]
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(y, y)
    accuracies = {c: [] for c in c_grid}
    for fit_rows, held_rows in folds:
        for c in c_grid:
            scores = held_out_scores(recipe, train, y, fit_rows, held_rows, c)
            accuracies[c].append(np.mean(scores.argmax(1) == y[held_rows]))
    return {c: (float(np.mean(a)), float(np.std(a, ddof=1) / np.sqrt(FOLDS)))
            for c, a in accuracies.items()}


def default_recipes() -> list[Recipe]:
    r = []
    for size in (224, 288, 320, 352):
        r.append(Recipe(f"squash{size}", (f"squash{size}",), (f"squash{size}",)))
    for size in (288, 320, 352):
        r.append(Recipe(f"short{size}", (f"short{size}",), (f"short{size}",)))
    r.append(Recipe("squash224 no-norm", ("squash224",), ("squash224",), normalise="none"))
    for size in (288,):
        one = (f"short{size}",)
        r.append(Recipe(f"short{size}, sqrt-l2", one, one, normalise="sqrt-l2"))
        r.append(Recipe(f"short{size}, gem3", one, one, pooling=("gem3",)))
        r.append(Recipe(f"short{size}, max", one, one, pooling=("max",)))
        r.append(Recipe(f"short{size}, avg+avg11", one, one, pooling=("avg", "avg11")))
        r.append(Recipe(f"short{size}, avg+gem3", one, one, pooling=("avg", "gem3")))
        r.append(Recipe(f"short{size}, avg+max", one, one, pooling=("avg", "max")))
    r.append(Recipe("squash224+short288 concat-views", ("squash224", "short288"),
                    ("squash224", "short288")))
    r.append(Recipe("short288+short352 concat-views", ("short288", "short352"),
                    ("short288", "short352")))
    r.append(Recipe("short288+mirror+squash352", ("short288", "short288m", "squash352"),
                    ("short288", "short288m", "squash352")))
    r.append(Recipe("squash224+short288+short352", ("squash224", "short288", "short352"),
                    ("squash224", "short288", "short352")))
    for size in (288, 320, 352):
        both = (f"short{size}", f"short{size}m")
        r.append(Recipe(f"short{size} + mirror", both, both))
        r.append(Recipe(f"short{size} + mirror, sqrt-l2", both, both, normalise="sqrt-l2"))
        r.append(Recipe(f"short{size} + mirror, gem3", both, both, pooling=("gem3",)))
        r.append(Recipe(f"short{size} + mirror, avg+avg11", both, both, pooling=("avg", "avg11")))
        r.append(Recipe(f"short{size} + mirror, avg+gem3", both, both, pooling=("avg", "gem3")))
        r.append(Recipe(f"short{size} + mirror, train both test plain", both, both[:1]))
    for size in (288, 320):
        both = (f"squash{size}", f"squash{size}m")
        r.append(Recipe(f"squash{size} + mirror", both, both))
    two = ("short288", "squash224")  # the pipeline's default views
    three = ("squash224", "short288", "short352")
    r.append(Recipe("short288+squash224, svm-rbf", two, two, head="svm-rbf"))
    r.append(Recipe("short288+squash224, features side by side", two, two, combine="concat"))
    r.append(Recipe("squash224+short288+short352, features side by side", three, three,
                    combine="concat"))
    r.append(Recipe("squash224+short288+short352, svm-rbf", three, three, head="svm-rbf"))
    for head in ("svm-linear", "mlp", "rbf-logistic", "svm-rbf-ovr"):
        r.append(Recipe(f"short288+squash224, {head}", two, two, head=head))
    for views in (("short288", "squash224", "squash352"), ("short288", "short288m", "squash224")):
        r.append(Recipe(f"{'+'.join(views)}, svm-rbf", views, views, head="svm-rbf"))
    r.append(Recipe("short288, svm-rbf-ovr", two[:1], two[:1], head="svm-rbf-ovr"))
    r.append(Recipe("squash224+short288+short352, svm-rbf-ovr", three, three, head="svm-rbf-ovr"))
    return r


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", required=True)
    parser.add_argument("--only", nargs="*", help="recipe names to run (default: all)")
    parser.add_argument("--paired", nargs="+", help="recipe names: each against the first, "
                        "on the same folds, at --c or at the C after '@' (NAME@3)")
    parser.add_argument("--c", type=float, default=30.0)
    args = parser.parse_args(argv)
    photos = np.load(os.path.join(args.features, recipe_data.PHOTOS_FILE))
    labels, splits = photos["labels"], photos["splits"]
    rows = np.flatnonzero(splits != "test")
    cache: dict = {}
    if args.paired:
        by_name = {recipe.name: recipe for recipe in default_recipes()}
        chosen = [named_with_c(name, args.c) for name in args.paired]
        paired([(by_name[name], c) for name, c in chosen], args.features, labels, rows, cache)
        return
    print(f"{len(rows)} train+eval photos, {FOLDS} folds; C grid {C_GRID}")
    print("| recipe | best C | CV accuracy | all C |")
    print("|---|---|---|---|")
    for recipe in default_recipes():
        if args.only and recipe.name not in args.only:
            continue
        views = set(recipe.train_views) | set(recipe.test_views)
        if not all(os.path.exists(recipe_data.view_path(args.features, v)) for v in views):
            continue
        started = time.time()
        result = cross_validate(recipe, args.features, labels, rows, cache)
        best = max(result, key=lambda c: result[c][0])
        mean, error = result[best]
        others = ", ".join(f"{c:g}: {100 * m:.1f}" for c, (m, _) in result.items())
        print(f"| {recipe.name} | {best:g} | {100 * mean:.2f} ± {100 * error:.2f} % | {others} "
              f"| {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
