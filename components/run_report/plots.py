"""The report's figures, drawn with Matplotlib's Agg canvas (no display, no pyplot state).

Each `*_figure` function takes plain Python / NumPy values and returns a Figure; `png_bytes`
turns one into a PNG. The confusion matrix's figure is models/confusion.py's, shared with the
Trainer's TensorBoard summaries.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from models.confusion import DPI, label_size, new_figure

# Tableau colours: distinct on a white page, and what the rendering test looks for.
SPLIT_COLORS = {"train": "#1f77b4", "eval": "#ff7f0e", "test": "#2ca02c"}
CURVE_COLORS = {"train": "#1f77b4", "validation": "#ff7f0e"}
PRECISION_COLOR, RECALL_COLOR = "#1f77b4", "#ff7f0e"
CORRECT_COLOR, WRONG_COLOR = "#2ca02c", "#d62728"


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def class_counts_figure(counts: Mapping[str, Mapping[str, int]], splits: Sequence[str]) -> Figure:
    """Grouped bars: photos per class (x) and split (colour)."""
    class_names = list(counts)
    figure = new_figure(min(3.0 + 0.6 * len(class_names), 16.0), 3.6)
    axes = figure.add_subplot()
    width = 0.8 / max(len(splits), 1)
    positions = np.arange(len(class_names))
    for index, split in enumerate(splits):
        values = [counts[name].get(split, 0) for name in class_names]
        axes.bar(positions + (index - (len(splits) - 1) / 2) * width, values, width,
                 label=split, color=SPLIT_COLORS.get(split))
    axes.set_xticks(positions, labels=class_names, rotation=30, ha="right",
                    fontsize=label_size(len(class_names)))
    axes.set_ylabel("photos")
    axes.legend()
    axes.set_title("photos per class and split")
    return figure


def histograms_figure(histograms: Mapping[str, Sequence[tuple[float, float, float]]]) -> Figure:
    """One panel per feature of (low, high, count) buckets, e.g. image height and width."""
    figure = new_figure(4.0 * max(len(histograms), 1), 3.2)
    for index, (name, buckets) in enumerate(histograms.items()):
        axes = figure.add_subplot(1, max(len(histograms), 1), index + 1)
        for low, high, count in buckets:
            # A bucket of one value (all photos the same size) still gets a visible bar.
            width = high - low if high > low else max(1.0, abs(low) * 0.02)
            axes.bar(low if high > low else low - width / 2, count, width=width, align="edge",
                     color=SPLIT_COLORS["train"], edgecolor="white")
        axes.set_xlabel(f"{name} (pixels)")
        axes.set_ylabel("photos")
        axes.set_title(name)
    return figure


def training_curves_figure(
    curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
    phase_starts: Sequence[int] = (),
) -> Figure:
    """Loss and accuracy per epoch: `curves[metric][run]` is a list of (epoch, value), where
    run is train or validation. A dashed line marks where fine-tuning started."""
    metrics = list(curves)
    figure = new_figure(4.6 * max(len(metrics), 1), 3.4)
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(1, max(len(metrics), 1), index + 1)
        for run, points in curves[metric].items():
            if points:
                epochs, values = zip(*points, strict=True)
                axes.plot([epoch + 1 for epoch in epochs], values, marker="o", markersize=3,
                          label=run, color=CURVE_COLORS.get(run))
        for start in phase_starts:
            axes.axvline(start + 0.5, color="grey", linestyle="--", linewidth=1)
        axes.set_xlabel("epoch")
        axes.set_title(metric)
        axes.legend()
    return figure


def precision_recall_figure(
    class_names: Sequence[str], precision: Sequence[float], recall: Sequence[float]
) -> Figure:
    """Per-class precision and recall as paired horizontal bars."""
    num_classes = len(class_names)
    figure = new_figure(6.0, min(1.5 + 0.4 * num_classes, 16.0))
    axes = figure.add_subplot()
    positions = np.arange(num_classes)
    axes.barh(positions - 0.2, precision, 0.4, label="precision", color=PRECISION_COLOR)
    axes.barh(positions + 0.2, recall, 0.4, label="recall", color=RECALL_COLOR)
    axes.set_yticks(positions, labels=class_names, fontsize=label_size(num_classes))
    axes.invert_yaxis()
    axes.set_xlim(0, 1.0)
    axes.set_xlabel("test split")
    axes.legend(loc="lower right")
    return figure


def photo_rows_figure(rows: Sequence[Sequence[tuple[np.ndarray, str]]],
                      row_titles: Sequence[str], columns: int = 6) -> Figure:
    """One row of captioned photos per group (e.g. the copies of one photo), titled on its
    left; a row longer than `columns` shows its first photos."""
    columns = max(1, min(columns, max((len(row) for row in rows), default=1)))
    figure = new_figure(1.8 * columns + 1.6, 1.7 * max(len(rows), 1))
    grid = figure.add_gridspec(max(len(rows), 1), columns + 1,
                               width_ratios=[0.75] + [1.0] * columns)
    for index, (row, title) in enumerate(zip(rows, row_titles, strict=True)):
        label = figure.add_subplot(grid[index, 0])
        label.text(0.0, 0.5, title, fontsize=8, va="center", ha="left", wrap=True)
        label.set_axis_off()
        for column, (image, caption) in enumerate(row[:columns]):
            axes = figure.add_subplot(grid[index, column + 1])
            axes.imshow(image)
            axes.set_title(caption, fontsize=7)
            axes.set_axis_off()
    return figure


def contact_sheet_figure(
    images: Sequence[np.ndarray], captions: Sequence[str], columns: int = 6
) -> Figure:
    """A grid of photos (uint8 RGB arrays), each captioned, e.g. "true: rose / predicted: tulip"."""
    columns = max(1, min(columns, len(images)))  # a few mistakes need no wide empty grid
    rows = max(1, -(-len(images) // columns))
    figure = new_figure(2.2 * columns, 2.5 * rows)
    for index, (image, caption) in enumerate(zip(images, captions, strict=True)):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(image)
        axes.set_title(caption, fontsize=8, color=WRONG_COLOR)
        axes.set_axis_off()
    return figure
