"""Pure helpers of the run report: from the pipeline's outputs (conversion report, TFDV
statistics, TensorBoard events, TFMA plots, predictions) to the numbers the page shows.

No TensorFlow, TFX or file I/O here: every function takes protos, dicts or arrays, so each is
tested on a few hand-made values.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from models import features

SPLIT_ORDER = ("train", "eval", "test")
IMAGE_SIZE_FEATURES = (features.HEIGHT_KEY, features.WIDTH_KEY)
# The Keras TensorBoard callback's per-epoch scalars, by the name the report shows.
CURVE_TAGS = {"epoch_loss": "loss", "epoch_accuracy": "accuracy"}
CURVE_RUNS = ("train", "validation")


def ordered_splits(split_names: Iterable[str]) -> list[str]:
    """train, eval, test first (the pipeline's order), any other split after them by name."""
    names = set(split_names)
    return [name for name in SPLIT_ORDER if name in names] + sorted(names - set(SPLIT_ORDER))


def class_counts_table(
    conversion_report: Mapping, splits: Sequence[str]
) -> list[tuple[str, list[int], int]]:
    """(class, [photos per split], total) per class, from conversion_report.json's counts."""
    counts = conversion_report.get("counts", {})
    rows = []
    for name in conversion_report.get("class_names", list(counts)):
        by_split = counts.get(name, {})
        per_split = [int(by_split.get(split, 0)) for split in splits]
        rows.append((name, per_split, sum(int(value) for value in by_split.values())))
    return rows


@dataclasses.dataclass(frozen=True)
class NumericSummary:
    """One numeric feature of one split, as TFDV summarised it."""

    count: int
    minimum: float
    median: float
    maximum: float
    mean: float
    # (low, high, count) of TFDV's equal-width histogram.
    buckets: tuple[tuple[float, float, float], ...]


def numeric_feature_summaries(
    statistics, feature_names: Sequence[str] = IMAGE_SIZE_FEATURES
) -> dict[str, NumericSummary]:
    """{feature: summary} of `feature_names` in a DatasetFeatureStatisticsList (one split)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    standard = statistics_pb2.Histogram.HistogramType.STANDARD
    wanted = set(feature_names)
    summaries = {}
    for dataset in statistics.datasets:
        for feature in dataset.features:
            name = "/".join(feature.path.step) if feature.path.step else feature.name
            if name not in wanted or not feature.HasField("num_stats"):
                continue
            stats = feature.num_stats
            histogram = next(
                (item for item in stats.histograms if item.type == standard), None
            )
            buckets = tuple(
                (bucket.low_value, bucket.high_value, bucket.sample_count)
                for bucket in (histogram.buckets if histogram else [])
            )
            summaries[name] = NumericSummary(
                count=int(stats.common_stats.num_non_missing),
                minimum=stats.min, median=stats.median, maximum=stats.max, mean=stats.mean,
                buckets=buckets,
            )
    return summaries


def merge_buckets(
    bucket_lists: Iterable[Sequence[tuple[float, float, float]]],
) -> tuple[tuple[float, float, float], ...]:
    """The buckets of several splits' histograms added up where their (low, high) agree, else
    kept side by side: a display aid, not a re-binning."""
    merged: dict[tuple[float, float], float] = {}
    for buckets in bucket_lists:
        for low, high, count in buckets:
            merged[(low, high)] = merged.get((low, high), 0.0) + count
    return tuple((low, high, count) for (low, high), count in sorted(merged.items()))


def scalar_value(value) -> float | None:
    """The float of a TensorBoard `Summary.Value`: TF2 writes scalars as tensors, TF1 as
    `simple_value`."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind == "tensor":
        tensor = value.tensor
        if tensor.float_val:
            return float(tensor.float_val[0])
        if tensor.double_val:
            return float(tensor.double_val[0])
        if tensor.tensor_content and tensor.dtype == 1:  # DT_FLOAT
            return float(np.frombuffer(tensor.tensor_content, dtype=np.float32)[0])
    return None


def training_curves(
    events_by_run: Mapping[str, Iterable],
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{metric: {run: [(epoch, value)]}} from TensorBoard `Event`s per run (train,
    validation), keeping the last value written for an epoch (a resumed run rewrites it)."""
    by_metric: dict[str, dict[str, dict[int, float]]] = {}
    for run, events in events_by_run.items():
        for event in events:
            for value in event.summary.value:
                metric = CURVE_TAGS.get(value.tag)
                number = scalar_value(value) if metric else None
                if number is not None:
                    by_metric.setdefault(metric, {}).setdefault(run, {})[int(event.step)] = number
    return {
        metric: {run: sorted(points.items()) for run, points in runs.items()}
        for metric in CURVE_TAGS.values()
        if (runs := by_metric.get(metric))
    }


def phase_starts(first_epochs_of_files: Iterable[int]) -> list[int]:
    """The epochs where a later training phase began: each event file of scalars after the
    first starts one (the head phase's file, then fine-tuning's)."""
    starts = sorted(set(first_epochs_of_files))
    return starts[1:]


def confusion_matrix_from_tfma(matrices_at_thresholds, num_classes: int) -> np.ndarray:
    """The [C, C] matrix of TFMA's MultiClassConfusionMatrixPlot at its lowest threshold (0:
    the arg-max class is the prediction). Entries with no predicted class are not counted."""
    matrices = list(matrices_at_thresholds.matrices)
    if not matrices:
        raise ValueError("the MultiClassConfusionMatrixPlot has no matrix")
    chosen = min(matrices, key=lambda matrix: matrix.threshold)
    result = np.zeros((num_classes, num_classes), dtype=np.int64)
    for entry in chosen.entries:
        actual, predicted = entry.actual_class_id, entry.predicted_class_id
        if 0 <= actual < num_classes and 0 <= predicted < num_classes:
            result[actual, predicted] += round(entry.num_weighted_examples)
    return result


def precision_and_recall(matrix: np.ndarray) -> tuple[list[float], list[float]]:
    """Per class: precision = right / predicted as the class, recall = right / of the class.
    NaN where nothing was predicted as, or nothing belongs to, the class."""
    matrix = np.asarray(matrix, dtype=np.float64)
    right = np.diag(matrix)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, right / predicted, np.nan)
        recall = np.where(actual > 0, right / actual, np.nan)
    return precision.tolist(), recall.tolist()


@dataclasses.dataclass(frozen=True)
class Mistake:
    """One misclassified photo: how sure the model was of its wrong class."""

    score: float
    filename: str
    true_label: int
    predicted_label: int
    encoded: bytes = dataclasses.field(repr=False, default=b"")


class WorstMistakes:
    """Keeps the `limit` most confident mistakes seen, in bounded memory, however many photos
    pass through (only their encoded bytes are held, at most `limit` of them)."""

    def __init__(self, limit: int):
        self._limit = limit
        self._heap: list[tuple[float, int, Mistake]] = []
        self._seen = 0
        self.total = 0

    def add(self, mistake: Mistake) -> None:
        self.total += 1
        self._seen += 1
        item = (mistake.score, -self._seen, mistake)
        if len(self._heap) < self._limit:
            heapq.heappush(self._heap, item)
        elif self._limit and item > self._heap[0]:
            heapq.heapreplace(self._heap, item)

    def most_confident_first(self) -> list[Mistake]:
        return [mistake for _, _, mistake in sorted(self._heap, reverse=True)]


def mistake_caption(mistake: Mistake, class_names: Sequence[str]) -> str:
    return (f"true: {class_names[mistake.true_label]}\n"
            f"predicted: {class_names[mistake.predicted_label]} ({mistake.score:.0%})")
