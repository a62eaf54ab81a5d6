"""The figures a trained model's folder carries: the confusion matrix and the learning curves; and the test scores
per fold of a cross-validation."""

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


def plot_learning_curves(
    log_history: Sequence[dict],
    path: str | Path,
    metrics: Sequence[str] = ("eval_macro_f1", "eval_uar", "eval_accuracy"),
    loss_name: str = "cross-entropy",
    title: str | None = None,
    best_step: int | None = None,
    stages: Sequence[tuple[float, str]] = (),
    chance: float | None = None,
) -> Path:
    """Writes the training loss, the validation loss and the validation `metrics` against the epoch, from a
    `Trainer`'s `state.log_history`.

    Args:
        title: the figure's title (e.g. the model's design and data).
        best_step: the global step of the checkpoint kept as best (`trainer.state.best_global_step`), marked at its
            epoch on both panels.
        stages: `(epoch, description)` of each change of what trains (progressive unfreezing), marked as dotted
            lines at the epoch where it starts, e.g. `[(1.0, "top 2 layers")]`.
        chance: the metrics' chance level (1 / number of classes), drawn as a dashed line.
        loss_name: what the loss is (the problem type's: cross-entropy, binary cross-entropy, mean squared error).
    """
    # Evaluations after training ended (of the best checkpoint, logged at the last epoch) are not part of the curves.
    end = next((index for index, entry in enumerate(log_history) if "train_runtime" in entry), len(log_history))
    log_history = log_history[:end]

    def series(key: str) -> tuple[list[float], list[float]]:
        points = [(entry["epoch"], entry[key]) for entry in log_history if key in entry and "epoch" in entry]
        return [epoch for epoch, _ in points], [value for _, value in points]

    best_epoch = next(
        (entry["epoch"] for entry in log_history if entry.get("step") == best_step and "eval_loss" in entry), None
    )
    figure, (loss_axes, metric_axes) = plt.subplots(1, 2, figsize=(11, 4.4))
    for key, name in (("loss", "training loss"), ("eval_loss", "validation loss")):
        epochs, values = series(key)
        if values:
            loss_axes.plot(epochs, values, marker="." if key == "eval_loss" else None, label=name)
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel(loss_name)
    loss_axes.set_title("loss")
    lowest = 0.0
    for key in metrics:
        epochs, values = series(key)
        if values:
            metric_axes.plot(epochs, values, marker=".", label=key.removeprefix("eval_"))
            lowest = min(lowest, *values)
    if chance is not None:
        metric_axes.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
    metric_axes.set_xlabel("epoch")
    metric_axes.set_ylabel("validation")
    metric_axes.set_ylim(-1.0 if lowest < 0 else 0.0, 1.0)  # a correlation (CCC) may fall below 0
    metric_axes.set_title("validation metrics")
    for axes in (loss_axes, metric_axes):
        for index, (epoch, description) in enumerate(stages):
            axes.axvline(epoch, color="tab:purple", linestyle=":", linewidth=1.2, label="unfreezing" if index == 0 else None)
            # The stage's name along its line, from the top of the panel down.
            axes.text(epoch, 0.98, f" {description}", transform=axes.get_xaxis_transform(), rotation=90,
                      va="top", ha="right", fontsize=7, color="tab:purple")  # fmt: skip
        if best_epoch is not None:
            axes.axvline(best_epoch, color="tab:green", linewidth=1.5, alpha=0.6, label=f"best (epoch {best_epoch:g})")
        axes.legend(fontsize="small", loc="best")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def plot_cross_validation(
    folds: Sequence[str], scores: dict[str, Sequence[float]], path: str | Path, title: str, chance: float | None = None
) -> Path:
    """Writes the test scores of each fold of a cross-validation as grouped bars, one colour per score, with the mean
    ± sample standard deviation across folds as a last group (error bars), their values in the legend.

    Args:
        folds: the folds' names (the x axis), e.g. "fold 1" or the subject a leave-one-subject-out fold tests.
        scores: `{score name: value per fold}`, e.g. `{"accuracy": [...], "macro-F1": [...], "UAR": [...]}`.
        chance: the scores' chance level (1 / number of classes), drawn as a dashed line.
    """
    names = list(scores)
    width = 0.8 / max(len(names), 1)
    positions = np.arange(len(folds) + 1, dtype=float)
    positions[-1] += 0.5  # the summary group stands apart from the folds
    figure, axes = plt.subplots(figsize=(min(16.0, max(8.0, 1.0 + 0.4 * (len(folds) + 1) * max(len(names), 1))), 4.4))
    lowest = 0.0
    for index, name in enumerate(names):
        values = np.asarray(scores[name], dtype=float)
        mean, std = values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0
        offset = (index - (len(names) - 1) / 2) * width
        color = f"C{index}"
        axes.bar(positions[:-1] + offset, values, width, color=color, label=f"{name}: {mean:.3f} ± {std:.3f}")
        axes.bar(positions[-1] + offset, mean, width, color=color, yerr=std, capsize=3, edgecolor="black")
        lowest = min(lowest, values.min())
    if chance is not None:
        axes.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
    # Many folds (leave one subject out): names written upwards so that they do not overlap.
    axes.set_xticks(positions, [*folds, "mean ± std"], rotation=90 if len(folds) > 10 else 0)
    axes.set_ylabel("test score")
    axes.set_ylim(-1.0 if lowest < 0 else 0.0, 1.05)  # a CCC may fall below 0
    axes.set_title(title, fontsize=10)
    # Beside the axes: inside, it would hide bars whatever their height.
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)
