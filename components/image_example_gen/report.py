"""ImageExampleGen's conversion report: `conversion_report.json` beside the splits.

The Beam job (conversion.py) writes its side outputs (the skipped photos, the counts per split
and class, the copies) as JSON lines under the *_PREFIX names in the Examples folder;
write_report gathers them with the listing's own passed-over entries into one report, logs
it, and stops when a class or a split came out empty. The messages here are also those of the
run summary (pipeline/results.py).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import tensorflow as tf

from components.image_example_gen import images, scan

logger = logging.getLogger(__name__)
# Each kind of finding is logged for this many files or groups at most; the report lists all.
MAX_LOGGED = 20
REPORT_FILE = "conversion_report.json"
# tf.Examples (image/filename, image/encoded: a small JPEG) of the photos of every group.
GROUPED_PHOTOS_FILE = "grouped_photos.tfrecord.gz"
# The Beam job's side outputs, read back and removed by write_report.
SKIPPED_PREFIX = "_skipped"
COUNTS_PREFIX = "_counts"
DUPLICATES_PREFIX = "_duplicates"
NEAR_DUPLICATES_PREFIX = "_near_duplicates"
CONFLICTS_PREFIX = "_conflicts"


def copy_counts(report: dict[str, Any]) -> dict[str, int]:
    """The Examples artifact's counts of copies (custom properties in ML Metadata)."""
    return {
        "num_duplicate_groups": len(report["duplicates"]),
        "num_near_duplicate_groups": len(report["near_duplicates"]),
        "num_near_duplicate_photos": sum(len(item["files"]) for item in report["near_duplicates"]),
        "num_label_conflicts": len(report["label_conflicts"]),
    }


def copies_message(report: dict[str, Any]) -> str:
    """One line for the log and the run summary: the copies found and what became of them."""
    counts = copy_counts(report)
    return (
        f"{counts['num_near_duplicate_groups']} groups of near-duplicates "
        f"({counts['num_near_duplicate_photos']} photos) and {counts['num_duplicate_groups']} of "
        f"identical files, each kept in one split; {counts['num_label_conflicts']} label "
        "conflicts (copies in two classes) left out"
    )


def class_balance(
    counts: dict[str, dict[str, int]], max_ratio: float, splits=images.SPLITS
) -> dict[str, Any]:
    """How uneven the classes are: largest / smallest class, and the classes each of `splits`
    (those that should hold photos) lacks."""
    totals = {name: sum(by_split.values()) for name, by_split in counts.items()}
    largest = max(totals, key=lambda name: (totals[name], name))
    smallest = min(totals, key=lambda name: (totals[name], name))
    ratio = totals[largest] / totals[smallest] if totals[smallest] else float("inf")
    return {
        "ratio": round(ratio, 2),
        "max_ratio": max_ratio,
        "imbalanced": ratio > max_ratio,
        "largest": {"class": largest, "images": totals[largest]},
        "smallest": {"class": smallest, "images": totals[smallest]},
        "missing_from_splits": {
            split: [name for name in counts if totals[name] and not counts[name].get(split)]
            for split in splits
            if any(totals[name] and not counts[name].get(split) for name in counts)
        },
    }


def imbalance_message(balance: dict[str, Any]) -> str:
    """One line for the log and the run summary when the classes are too uneven."""
    return (
        f"class imbalance {balance['ratio']:g}x is over {balance['max_ratio']:g}x: "
        f"{balance['largest']['class']} has {balance['largest']['images']} images, "
        f"{balance['smallest']['class']} {balance['smallest']['images']}; add photos to the "
        "small classes (training weights the classes to compensate)"
    )


def _expected_splits(settings: dict[str, Any]) -> list[str]:
    """The splits that get photos: a 0 % test split is meant to be empty."""
    return [images.TRAIN, images.EVAL] + ([images.TEST] if settings["testing_percentage"] else [])


def _check_splits(counts: dict[str, dict[str, int]], settings: dict[str, Any]) -> None:
    """Stops when a whole split is empty: evaluation or training would have nothing."""
    flags = {
        images.TRAIN: "",
        images.EVAL: "--validation-percentage",
        images.TEST: "--testing-percentage",
    }
    percentages = {
        images.TRAIN: 100 - settings["testing_percentage"] - settings["validation_percentage"],
        images.EVAL: settings["validation_percentage"],
        images.TEST: settings["testing_percentage"],
    }
    num_images = sum(sum(by_split.values()) for by_split in counts.values())
    for split in images.SPLITS:
        if percentages[split] and not any(by_split.get(split) for by_split in counts.values()):
            fix = "add photos" + (f" or change {flags[split]}" if flags[split] else "")
            if split == images.TEST:
                fix += " (0 skips the test split)"
            raise images.DataDirError(
                f"the {split} split is empty: {num_images} photos are too few for "
                f"{percentages[split]}% of them to land there by retrain.py's hash; {fix}"
            )


def _read_json_lines(path: str) -> list:
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _log_the_rest(what: str, count: int) -> None:
    if count > MAX_LOGGED:
        logger.info("ImageExampleGen: and %d more %s, all listed in %s", count - MAX_LOGGED,
                    what, REPORT_FILE)


def log_findings(skipped: list, ignored: list, duplicates: list, near: list,
                 conflicts: list) -> None:
    """One log line per finding, MAX_LOGGED of each kind at most: a folder of many copies
    would otherwise bury the run's progress (24,360 photos made 4,946 lines)."""
    for item in skipped[:MAX_LOGGED]:
        # one_line: a file name may hold a line break, and each log record stays one line.
        logger.warning(
            "ImageExampleGen: skipped %s: %s", images.one_line(item["file"]), item["reason"]
        )
    _log_the_rest("skipped files", len(skipped))
    if ignored:
        logger.info(
            "ImageExampleGen: ignored %d files that are hidden or not images (listed in %s)",
            len(ignored), REPORT_FILE,
        )
    for kind, items in (("identical files", duplicates), ("near-duplicates", near)):
        for item in items[:MAX_LOGGED]:
            logger.info(
                "ImageExampleGen: %s kept together in %s (the split of the oldest, %s): %s",
                kind, item["split"], images.one_line(item["oldest"]),
                ", ".join(map(images.one_line, item["files"])),
            )
        _log_the_rest(f"groups of {kind}", len(items))
    for item in conflicts[:MAX_LOGGED]:
        logger.warning(
            "ImageExampleGen: the same photo%s is in classes %s (%s); left out of every split: "
            "keep it in one class folder only",
            "" if item["identical"] else " (near-duplicates)", " and ".join(item["classes"]),
            ", ".join(map(images.one_line, item["files"])),
        )
    _log_the_rest("label conflicts", len(conflicts))


def write_report(
    uri: str, class_names: list[str], listing: scan.ClassFiles, settings: dict[str, Any]
) -> dict:
    """Gathers the Beam side outputs into one JSON report and checks every class kept photos.

    Skipped are the entries the listing could not use (broken links, FIFOs...) and the photos
    the conversion could not read.
    """
    skipped_path = os.path.join(uri, SKIPPED_PREFIX)
    counts_path = os.path.join(uri, COUNTS_PREFIX)
    skipped = sorted(
        listing.skipped + _read_json_lines(skipped_path), key=lambda item: item["file"]
    )
    ignored = listing.ignored
    duplicates_path = os.path.join(uri, DUPLICATES_PREFIX)
    near_duplicates_path = os.path.join(uri, NEAR_DUPLICATES_PREFIX)
    conflicts_path = os.path.join(uri, CONFLICTS_PREFIX)
    duplicates = sorted(_read_json_lines(duplicates_path), key=lambda item: item["files"])
    near = sorted(_read_json_lines(near_duplicates_path), key=lambda item: item["files"])
    conflicts = sorted(_read_json_lines(conflicts_path), key=lambda item: item["files"])
    counts: dict[str, dict[str, int]] = {name: {} for name in class_names}
    for split, class_name, count in _read_json_lines(counts_path):
        counts[class_name][split] = count
    report = {
        "class_names": list(class_names),
        "num_images": sum(sum(by_split.values()) for by_split in counts.values()),
        "counts": counts,
        "skipped": skipped,
        "ignored": ignored,
        "near_duplicate_distance": settings["near_duplicate_distance"],
        "duplicates": duplicates,
        "near_duplicates": near,
        "label_conflicts": conflicts,
    }
    if all(counts.values()):
        report["class_balance"] = class_balance(
            counts, settings["max_class_imbalance"], _expected_splits(settings)
        )
    with tf.io.gfile.GFile(os.path.join(uri, REPORT_FILE), "w") as report_file:
        json.dump(report, report_file, indent=2)
    for path in (skipped_path, counts_path, duplicates_path, near_duplicates_path,
                 conflicts_path):
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    logger.info(
        "ImageExampleGen: wrote %d examples; skipped %d unreadable files (listed in %s)",
        report["num_images"], len(skipped), os.path.join(uri, REPORT_FILE),
    )
    log_findings(skipped, ignored, duplicates, near, conflicts)
    logger.info("ImageExampleGen: %s (%s)", copies_message(report), REPORT_FILE)
    no_photos = [name for name in class_names if not counts[name]]
    if no_photos:
        raise images.DataDirError(
            f"class {no_photos[0]!r} has no readable images (see {REPORT_FILE}); "
            "replace its files with JPEG/PNG/GIF/BMP/WebP/TIFF photos or remove the folder"
        )
    _check_splits(counts, settings)
    balance = report["class_balance"]
    if balance["imbalanced"]:
        logger.warning("ImageExampleGen: %s", imbalance_message(balance))
    for split, names in balance["missing_from_splits"].items():
        logger.warning(
            "ImageExampleGen: no %s photo of class %s: too few photos for every split to have "
            "some; add photos to %s", split, ", ".join(names), " and ".join(names),
        )
    return report

