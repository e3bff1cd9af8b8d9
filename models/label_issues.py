"""Suspected label errors: photos whose folder's label the held-out predictions doubt.

cleanlab's `find_label_issues` (confident learning: per class, a threshold on the probability of
that class learnt from the photos themselves) on out-of-sample probabilities, which the Trainer
already has: for each train photo those of the head's cross-validation (out of fold), for each
eval photo those of the head fitted on the train photos. Suspects are ranked by cleanlab's
self-confidence, the probability of the folder's label, lowest (most suspicious) first, each
with the label the head suggests. A suspect may be mislabelled, or only hard for the head:
the list is for a person to look at. Pure: NumPy and cleanlab, no TensorFlow.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np

METHOD = ("cleanlab.filter.find_label_issues on out-of-sample probabilities, ranked by "
          "self-confidence")


def _normalised(probabilities) -> np.ndarray:
    # A mean over views sums to 1 only up to rounding; cleanlab checks.
    probabilities = np.asarray(probabilities, np.float64)
    return probabilities / np.maximum(probabilities.sum(axis=1, keepdims=True), 1e-12)


def ranked(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """The indices of the suspects, most suspicious first.

    `probabilities` [N, classes] must be out of sample: a photo the head was fitted on would
    be scored as its own label.
    """
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels, np.int64)
    if not len(labels) or len(np.unique(labels)) < 2:
        return np.zeros(0, np.int64)
    # One process: the Trainer runs inside TFX's, whose threads a fork would copy.
    return np.asarray(find_label_issues(labels, _normalised(probabilities), n_jobs=1,
                                        return_indices_ranked_by="self_confidence"), np.int64)


def report(suspects: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
           files: Sequence[str], splits: Sequence[str], class_names: Sequence[str]) -> dict:
    """label_issues.json: what was checked, the counts, and the `ranked` suspects, each with
    the likeliest other label."""
    probabilities = _normalised(probabilities)
    listed = []
    for index in suspects:
        # The likeliest other class: cleanlab may doubt a label that is still the argmax.
        others = probabilities[index].copy()
        others[labels[index]] = -1.0
        suggested = int(others.argmax())
        listed.append({
            "file": files[index],
            "split": splits[index],
            "label": class_names[labels[index]],
            "label_probability": round(float(probabilities[index, labels[index]]), 4),
            "suggested": class_names[suggested],
            "suggested_probability": round(float(probabilities[index, suggested]), 4),
        })
    by_split = collections.Counter(splits)
    return {
        "method": METHOD,
        "checked": {split: by_split[split] for split in sorted(by_split)},
        "count": len(listed),
        "by_label": dict(sorted(collections.Counter(s["label"] for s in listed).items())),
        "suspects": listed,
    }


def message(report: dict) -> str:
    """One line for the log and the run summary."""
    checked = sum(report["checked"].values())
    line = (f"{report['count']} of {checked} {' and '.join(report['checked'])} photos may be "
            "in the wrong class folder")
    if report["suspects"]:
        top = report["suspects"][0]
        line += (f"; most suspicious {top['file']} ({top['label']}, looks "
                 f"{top['suggested']} {100 * top['suggested_probability']:.0f}%)")
    return line
