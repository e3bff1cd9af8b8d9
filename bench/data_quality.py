"""Near-duplicates and suspected label errors on a photo folder: counts, cost, and what each
does to the accuracy (issue 18).

1. Copies: ImageExampleGen's own fingerprint of every photo (read, SHA-256, perceptual hash,
   timed per photo) and grouping (near_duplicates.resolve, timed), at --distance bits; the
   distances of generated copies of --sample photos (resized and recompressed, cropped,
   re-toned) and of other framings of one scene, against the pairs of different photos; the
   closest pairs by the pipeline's 256-bit pHash against imagehash's 64-bit default.
2. Suspects, as the Trainer finds them: the head's out-of-fold probabilities over the train
   photos of the pipeline's split and the eval photos' from the head on the train photos
   (features from bench/recipe_features.py; the default views plain = short288 and squash224),
   then label_issues (cleanlab, timed).
3. Accuracy, cross-validated over the train and eval photos (5 folds, paired: the same folds
   for each setting) and on the test split: without and with the grouping (folds and splits
   keep each group together) and without and with leaving suspects out of training. Inside the
   cross-validation the suspects are found again in each training fold (nested), and every
   held-out photo is scored, suspects too.

    .venv/bin/python -m bench.data_quality --data-dir ../shared/assets/flower_photos \\
        --features /tmp/recipe
"""

from __future__ import annotations

import argparse
import io
import os
import random
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from bench import common  # noqa: E402
from components.image_example_gen import images, near_duplicates, scan  # noqa: E402
from models import label_issues, linear_head  # noqa: E402
from pipeline import config as config_lib  # noqa: E402

FOLDS = 5
C = 10.0  # the C the pipeline's own cross-validation chose on these photos (BENCHMARKS.md)
VIEWS = ("short288", "squash224")  # the default --views plain,squash224 at --image-size 288


# --- 1. copies ------------------------------------------------------------------------------


def fingerprints(data_dir: str, distance: int):
    class_names = scan.discover_classes(data_dir)
    listing = scan.list_photos(data_dir, class_names)
    started, found = time.time(), []
    for photo in listing.photos:
        raw = images.read_image_file(os.path.join(data_dir, photo.path), photo)
        found.append(near_duplicates.Fingerprint(
            photo.path, images.class_of(photo.path), photo.mtime_ns, images.content_hash(raw),
            images.perceptual_hash(raw) if distance else ""))
    return class_names, found, time.time() - started


def copy_records(found, distance: int) -> tuple[list, dict, float]:
    near_duplicates.groups(found[:2], distance)  # imports scikit-learn and SciPy, not timed
    started = time.time()
    records = list(near_duplicates.resolve(found, distance, 10, 10))
    return records, dict(r for kind, r in records if kind == "override"), time.time() - started


def _distance(first: bytes, second: bytes) -> int:
    import imagehash

    return imagehash.hex_to_hash(images.perceptual_hash(first)) - imagehash.hex_to_hash(
        images.perceptual_hash(second))


def generated_copies(data_dir: str, paths: list[str], sample: int) -> dict[str, list[int]]:
    """Distances from each sampled photo to its generated copies and to other framings."""
    from PIL import Image, ImageEnhance, ImageOps

    def jpeg(image, quality=90):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()

    def crop(image, share):
        width, height = image.size
        dx, dy = int(width * share), int(height * share)
        return image.crop((dx, dy, width - dx, height - dy))

    distances: dict[str, list[int]] = {}
    for path in random.Random(0).sample(paths, sample):
        raw = images.read_image_file(os.path.join(data_dir, path))
        photo = ImageOps.exif_transpose(Image.open(io.BytesIO(raw))).convert("RGB")
        width, height = photo.size
        gamma = Image.fromarray((255 * (np.asarray(photo) / 255.0) ** 0.7).astype(np.uint8))
        copies = {
            "resized to 1/2, JPEG quality 60": jpeg(photo.resize((width // 2, height // 2)), 60),
            "resized to 1/4, JPEG quality 40": jpeg(photo.resize((width // 4, height // 4)), 40),
            "cropped 2 % a side": jpeg(crop(photo, 0.02)),
            "cropped 3 % a side": jpeg(crop(photo, 0.03)),
            "cropped 5 % a side": jpeg(crop(photo, 0.05)),
            "brightness x1.3": jpeg(ImageEnhance.Brightness(photo).enhance(1.3)),
            "contrast x0.7": jpeg(ImageEnhance.Contrast(photo).enhance(0.7)),
            "gamma 0.7": jpeg(gamma),
            "greyscale": jpeg(ImageOps.grayscale(photo)),
        }
        for name, copy in copies.items():
            distances.setdefault(name, []).append(_distance(jpeg(photo, 95), copy))
        # Another photo of the same scene: the camera moved (two windows 15 % apart), or
        # zoomed in 1.3x.
        left = jpeg(photo.crop((0, 0, int(width * 0.85), height)))
        right = jpeg(photo.crop((int(width * 0.15), 0, width, height)))
        distances.setdefault("same scene, framed 15 % apart", []).append(_distance(left, right))
        distances.setdefault("same scene, zoomed 1.3x", []).append(
            _distance(jpeg(photo), jpeg(crop(photo, 0.115))))
    return distances


def pair_distances(found) -> np.ndarray:
    """The distance of every pair (i < j), in np.triu_indices order."""
    packed = np.stack([np.frombuffer(bytes.fromhex(f.phash), np.uint8) for f in found])
    table = np.array([bin(value).count("1") for value in range(256)], np.uint8)
    upper = []
    for row in range(len(packed) - 1):
        upper.append(table[packed[row] ^ packed[row + 1:]].sum(axis=1, dtype=np.int32))
    return np.concatenate(upper)


def closest_pairs_at_8x8(data_dir: str, found, pairs: np.ndarray, count: int) -> None:
    """The `count` closest pairs by the pipeline's 16x16 pHash, with imagehash's 8x8 default."""
    import imagehash
    from PIL import Image, ImageOps

    def small_hash(path):
        raw = images.read_image_file(os.path.join(data_dir, path))
        return imagehash.phash(ImageOps.exif_transpose(Image.open(io.BytesIO(raw))))

    rows, columns = np.triu_indices(len(found), 1)
    print(f"\n| the {count} closest pairs | 16x16 (256 bits) | 8x8 (64 bits) |\n|---|---|---|")
    for index in np.argsort(pairs, kind="stable")[:count]:
        first, second = found[rows[index]].path, found[columns[index]].path
        print(f"| {first}, {second} | {pairs[index]} | {small_hash(first) - small_hash(second)} |")


# --- 2. and 3. suspects and accuracy ---------------------------------------------------------


def load_features(directory: str):
    photos = np.load(os.path.join(directory, "photos.npz"))
    by_view = [np.load(os.path.join(directory, f"{view}.npz"))["features"][:, :1024]
               .astype(np.float32) for view in VIEWS]  # the module's own (average) pooling
    return [str(path) for path in photos["paths"]], photos["labels"], by_view


def _weights(labels, num_classes):
    from models.head import class_weights

    return class_weights(labels, num_classes, "auto")


def suspects_of(by_view, labels, num_classes, rows, seed=0):
    """Rows (of `rows`) whose label the out-of-fold probabilities doubt, cleanlab's seconds."""
    (result,) = linear_head.cross_validate([f[rows] for f in by_view], labels[rows],
                                           num_classes, (C,), _weights(labels[rows], num_classes),
                                           FOLDS, seed)
    started = time.time()
    ranked = label_issues.ranked(labels[rows], result.out_of_fold)
    return rows[ranked], time.time() - started


def pipeline_suspects(by_view, labels, splits, files, class_names):
    """As the Trainer: out of fold over train, the head on train for eval; then cleanlab."""
    num_classes = len(class_names)
    train, evaluation = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "eval")
    weights = _weights(labels[train], num_classes)
    started = time.time()
    (result,) = linear_head.cross_validate([f[train] for f in by_view], labels[train],
                                           num_classes, (C,), weights, FOLDS, 0)
    head = linear_head.fit([f[train] for f in by_view], labels[train], C, weights)
    eval_scores = linear_head.predict(head, [f[evaluation] for f in by_view], num_classes)
    head_seconds = time.time() - started
    rows = np.concatenate([train, evaluation])
    probabilities = np.concatenate([result.out_of_fold, eval_scores])
    started = time.time()
    ranked = label_issues.ranked(labels[rows], probabilities)
    cleanlab_seconds = time.time() - started
    report = label_issues.report(ranked, labels[rows], probabilities, [files[i] for i in rows],
                                 list(splits[rows]), class_names)
    return rows[ranked], report, head_seconds, cleanlab_seconds


def cross_validated(by_view, labels, rows, groups, exclude, num_classes):
    """[len(rows)] 0/1 out-of-fold correctness (every photo scored); folds keep `groups`."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(FOLDS, shuffle=True, random_state=0)
    correct = np.zeros(len(rows))
    for fit, held in splitter.split(rows, labels[rows], groups[rows]):
        fit_rows = rows[fit]
        if exclude:
            doubted, _ = suspects_of(by_view, labels, num_classes, fit_rows)
            fit_rows = np.setdiff1d(fit_rows, doubted)
        head = linear_head.fit([f[fit_rows] for f in by_view], labels[fit_rows], C,
                               _weights(labels[fit_rows], num_classes))
        scores = linear_head.predict(head, [f[rows[held]] for f in by_view], num_classes)
        correct[held] = scores.argmax(1) == labels[rows[held]]
    return correct


def test_accuracy(by_view, labels, splits, exclude, num_classes, files, class_names):
    train, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    excluded = 0
    if exclude:
        doubted, _, _, _ = pipeline_suspects(by_view, labels, splits, files, class_names)
        kept = np.setdiff1d(train, doubted)
        excluded, train = len(train) - len(kept), kept
    head = linear_head.fit([f[train] for f in by_view], labels[train], C,
                           _weights(labels[train], num_classes))
    scores = linear_head.predict(head, [f[test] for f in by_view], num_classes)
    correct = scores.argmax(1) == labels[test]
    low, high = linear_head.wilson_interval(int(correct.sum()), len(correct))
    return float(correct.mean()), (low, high), len(test), excluded


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--features", required=True, help="bench/recipe_features.py's --out")
    parser.add_argument("--distance", type=int,
                        default=config_lib.DEFAULT_NEAR_DUPLICATE_DISTANCE)
    parser.add_argument("--sample", type=int, default=300,
                        help="photos to make generated copies of")
    parser.add_argument("--copies-only", action="store_true",
                        help="the copies alone: no features, suspects or accuracy")
    args = parser.parse_args(argv)

    class_names, found, seconds = fingerprints(args.data_dir, args.distance)
    print(f"## Copies: {len(found)} photos, fingerprints {seconds:.1f} s "
          f"({1000 * seconds / len(found):.1f} ms a photo)")
    records, overrides, group_seconds = copy_records(found, args.distance)
    kinds = [kind for kind, _ in records if kind != "override"]
    near = [record for kind, record in records if kind == "near_duplicate"]
    print(f"grouping at {args.distance} bits: {group_seconds:.2f} s; "
          f"{kinds.count('near_duplicate')} near-duplicate groups "
          f"({sum(len(r['files']) for r in near)} photos), {kinds.count('duplicate')} identical, "
          f"{kinds.count('conflict')} label conflicts")
    for kind, record in records:
        if kind != "override":
            print(f"  {kind}: {', '.join(record['files'])} (distance {record.get('distance')})")
    pairs = pair_distances(found)
    print("pairs of the folder within t bits: " + ", ".join(
        f"{t}: {int((pairs <= t).sum())}" for t in (16, 32, 48, 56, 64, 72, 80, 88, 96)))
    closest_pairs_at_8x8(args.data_dir, found, pairs, 20)
    print(f"\n| generated from {args.sample} photos | median | 95th percentile | max "
          f"| share within {args.distance} |\n|---|---|---|---|---|")
    for name, values in generated_copies(args.data_dir, [f.path for f in found],
                                         args.sample).items():
        values = np.asarray(values)
        print(f"| {name} | {np.median(values):.0f} | {np.percentile(values, 95):.0f} | "
              f"{values.max()} | {100 * np.mean(values <= args.distance):.0f} % |")
    if args.copies_only:
        return

    files, labels, by_view = load_features(args.features)
    index = {name: row for row, name in enumerate(files)}
    num_classes = len(class_names)
    # Splits and groups without the grouping (identical files only, as before issue 18) and
    # with it; conflicts are left out either way.
    settings = {}
    for name, distance in (("identical files only", 0), (f"{args.distance} bits", args.distance)):
        records, overrides, _ = copy_records(found, distance)
        splits = np.array([images.which_split(path, 10, 10) for path in files], dtype=object)
        group = np.arange(len(files))
        for kind, record in records:
            if kind in ("duplicate", "near_duplicate"):
                members = [index[path] for path in record["files"]]
                group[members] = members[0]
        for path, split in overrides.items():
            splits[index[path]] = split if split else "dropped"
        settings[name] = (splits, group)

    splits = settings[f"{args.distance} bits"][0]
    doubted, report, head_seconds, cleanlab_seconds = pipeline_suspects(
        by_view, labels, splits, files, class_names)
    print(f"\n## Suspects: {label_issues.message(report)}")
    print(f"head (5-fold CV + fit at C={C:g}) {head_seconds:.1f} s, cleanlab "
          f"{cleanlab_seconds:.2f} s; by folder label {report['by_label']}")
    pairs_of = {}
    for suspect in report["suspects"]:
        key = f"{suspect['label']} -> {suspect['suggested']}"
        pairs_of[key] = pairs_of.get(key, 0) + 1
    print("folder -> suggested: " + ", ".join(f"{k} {v}" for k, v in
                                              sorted(pairs_of.items(), key=lambda kv: -kv[1])))
    for suspect in report["suspects"][:10]:
        print(f"  {suspect['file']} ({suspect['split']}): {suspect['label']} "
              f"{suspect['label_probability']:.3f}, looks {suspect['suggested']} "
              f"{suspect['suggested_probability']:.3f}")

    print("\n## Accuracy: cross-validated over train+eval (paired against the first row), "
          "and on the test split")
    print("| grouping | suspects left out of training | CV accuracy | difference | "
          "its SE | test accuracy (95 % interval, photos) | train photos left out | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    base = None
    for name, (splits, group) in settings.items():
        rows = np.flatnonzero((splits == "train") | (splits == "eval"))
        for exclude in (False, True):
            started = time.time()
            correct = cross_validated(by_view, labels, rows, group, exclude, num_classes)
            # Rows differ between settings (conflicts, moved photos): pair on the common ones.
            by_file = dict(zip(rows.tolist(), correct, strict=True))
            base = base or by_file
            difference, error = common.mean_and_standard_error(
                [by_file[row] - base[row] for row in sorted(set(base) & set(by_file))])
            accuracy, (low, high), count, excluded = test_accuracy(
                by_view, labels, splits, exclude, num_classes, files, class_names)
            print(f"| {name} | {'yes' if exclude else 'no'} | {100 * correct.mean():.2f} % | "
                  f"{100 * difference:+.2f} | {100 * error:.2f} | "
                  f"{100 * accuracy:.1f} % ({100 * low:.1f}-{100 * high:.1f}, {count}) | "
                  f"{excluded} | {time.time() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
