"""The figures a trained model's folder carries: the confusion matrix and the learning curves."""

from collections.abc import Sequence
from pathlib import Path

import matplotlib


matplotlib.use("Agg")  # files only: training machines often have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str) -> Path:
    """Writes a confusion matrix (rows: true class, columns: predicted class) with row-normalised colours and
    counts in the cells."""
    counts = np.asarray(matrix)
    if counts.shape != (len(labels), len(labels)):
        raise ValueError(f"`matrix` must be {len(labels)}×{len(labels)} for {len(labels)} labels, got {counts.shape}.")
    rows = counts.sum(axis=1, keepdims=True)
    recall = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    figure, axes = plt.subplots(figsize=(1.0 + 0.8 * len(labels), 0.8 + 0.8 * len(labels)))
    image = axes.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    for (row, column), count in np.ndenumerate(counts):
        axes.text(column, row, str(count), ha="center", va="center", color="white" if recall[row, column] > 0.5 else "black")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="fraction of the true class")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def plot_learning_curves(log_history: Sequence[dict], path: str | Path, metrics: Sequence[str] = ("eval_macro_f1", "eval_uar", "eval_accuracy")) -> Path:
    """Writes the training loss, the validation loss and the validation `metrics` against the epoch, from a
    `Trainer`'s `state.log_history`."""
    def series(key: str) -> tuple[list[float], list[float]]:
        points = [(entry["epoch"], entry[key]) for entry in log_history if key in entry and "epoch" in entry]
        return [epoch for epoch, _ in points], [value for _, value in points]

    figure, (loss_axes, metric_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for key, name in (("loss", "training loss"), ("eval_loss", "validation loss")):
        epochs, values = series(key)
        if values:
            loss_axes.plot(epochs, values, marker="." if key == "eval_loss" else None, label=name)
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("cross-entropy")
    loss_axes.legend()
    for key in metrics:
        epochs, values = series(key)
        if values:
            metric_axes.plot(epochs, values, marker=".", label=key.removeprefix("eval_"))
    metric_axes.set_xlabel("epoch")
    metric_axes.set_ylabel("validation")
    metric_axes.set_ylim(0.0, 1.0)
    metric_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)
