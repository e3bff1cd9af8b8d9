"""A confusion matrix and its picture: counted from labels and predictions, drawn with
Matplotlib's Agg canvas (no display, no pyplot state). The Trainer's TensorBoard summaries and
the run report (components/run_report) both draw it from here, so they show the same picture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_classes: int):
    """[C, C] counts: row = true class, column = predicted class."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    cells = np.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    return cells[: num_classes**2].reshape(num_classes, num_classes)


def accuracy(matrix: np.ndarray) -> float:
    total = np.asarray(matrix).sum()
    return float(np.trace(matrix) / total) if total else math.nan


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def rgb_pixels(figure: Figure) -> np.ndarray:
    """The rendered figure as a uint8 [height, width, 3] array (no PNG round trip)."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def label_size(num_classes: int) -> float:
    return max(6.0, 11.0 - 0.15 * num_classes)


def confusion_matrix_figure(
    matrix: np.ndarray, class_names: Sequence[str], title: str = ""
) -> Figure:
    """Rows are true classes, columns predicted ones; each cell shows its count, and its colour
    is the share of the row, so a small class is as readable as a big one."""
    matrix = np.asarray(matrix)
    num_classes = len(class_names)
    side = min(4.0 + 0.45 * num_classes, 14.0)
    figure = new_figure(side + 1.0, side)
    axes = figure.add_subplot()
    row_totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    ticks = np.arange(num_classes)
    font_size = label_size(num_classes)
    axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right", fontsize=font_size)
    axes.set_yticks(ticks, labels=class_names, fontsize=font_size)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if num_classes <= 30:  # beyond that the numbers would not fit in their cells
        for row, column in np.ndindex(matrix.shape):
            axes.text(column, row, str(int(matrix[row, column])), ha="center", va="center",
                      fontsize=font_size, color="white" if shares[row, column] > 0.5 else "black")
    if title:
        axes.set_title(title)
    return figure
