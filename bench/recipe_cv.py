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
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from bench import common, recipe_data

FOLDS = 5
C_GRID = (1.0, 3.0, 10.0, 30.0)


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    train_views: tuple[str, ...]
    test_views: tuple[str, ...]
    pooling: tuple[str, ...] = ("avg",)
    normalise: str = "l2"  # "none", "l2", "sqrt-l2"


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
        x_fit = np.concatenate([data[v][fit_rows] for v in recipe.train_views])
        y_fit = np.concatenate([y[fit_rows]] * len(recipe.train_views))
        head = LogisticRegression(C=c, max_iter=3000).fit(x_fit, y_fit)
        scores = np.mean([head.predict_proba(data[v][held_rows]) for v in recipe.test_views],
                         axis=0)
        correct[held_rows] = scores.argmax(1) == y[held_rows]
    return correct


def paired(recipes: list[Recipe], directory: str, labels, rows, cache, c: float) -> None:
    """Each recipe against the first on the same folds: the difference in accuracy and its
    standard error over photos (paired, so far smaller than either recipe's own)."""
    base = out_of_fold_correct(recipes[0], directory, labels, rows, cache, c)
    print(f"paired against {recipes[0].name} ({100 * base.mean():.2f} %), C={c:g}:")
    print("| recipe | CV accuracy | difference | its standard error |")
    print("|---|---|---|---|")
    for recipe in recipes[1:]:
        other = out_of_fold_correct(recipe, directory, labels, rows, cache, c)
        difference, error = common.mean_and_standard_error(other - base)
        print(f"| {recipe.name} | {100 * other.mean():.2f} % | {100 * difference:+.2f} "
              f"| {100 * error:.2f} |", flush=True)


def cross_validate(recipe: Recipe, directory: str, labels, rows, cache, c_grid=C_GRID):
    """{C: (mean accuracy over folds, standard error over folds)}."""
    train = {v: view_features(directory, v, recipe.pooling, recipe.normalise, cache)[rows]
             for v in set(recipe.train_views) | set(recipe.test_views)}
    y = labels[rows]
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(y, y)
    accuracies = {c: [] for c in c_grid}
    for fit_rows, held_rows in folds:
        x_fit = np.concatenate([train[v][fit_rows] for v in recipe.train_views])
        y_fit = np.concatenate([y[fit_rows]] * len(recipe.train_views))
        for c in c_grid:
            head = LogisticRegression(C=c, max_iter=3000).fit(x_fit, y_fit)
            scores = np.mean([head.predict_proba(train[v][held_rows])
                              for v in recipe.test_views], axis=0)
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
    return r


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", required=True)
    parser.add_argument("--only", nargs="*", help="recipe names to run (default: all)")
    parser.add_argument("--paired", nargs="+", help="recipe names: each against the first, "
                        "on the same folds, at --c")
    parser.add_argument("--c", type=float, default=30.0)
    args = parser.parse_args(argv)
    photos = np.load(os.path.join(args.features, recipe_data.PHOTOS_FILE))
    labels, splits = photos["labels"], photos["splits"]
    rows = np.flatnonzero(splits != "test")
    cache: dict = {}
    if args.paired:
        by_name = {recipe.name: recipe for recipe in default_recipes()}
        paired([by_name[name] for name in args.paired], args.features, labels, rows, cache,
               args.c)
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
