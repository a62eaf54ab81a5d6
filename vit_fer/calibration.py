"""Calibrated probabilities: temperature scaling fitted on validation logits, and the reliability diagram.

Temperature scaling (Guo et al., 2017) divides the logits by one scalar T > 0 before the softmax. It changes no
prediction (the argmax is the same) and only makes the reported probabilities mean what they say. T is fitted by
minimising the negative log-likelihood of the validation split and stored in the model's config
(`calibration_temperature`), so that every copy of the model — remote code included — carries it.
"""

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .evaluation import CALIBRATION_BINS, load_calibration_metric, softmax
from .plots import plt  # matplotlib set up for files only (no display)


RELIABILITY_DIAGRAM_NAME = "reliability_diagram.png"
TEMPERATURE_RANGE = (0.05, 20.0)
"""The temperatures `fit_temperature` may return."""

logger = logging.getLogger(__name__)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iterations: int = 100) -> float:
    """
    The temperature T minimising the mean negative log-likelihood of `softmax(logits / T)` on (`logits`, `labels`).

    Args:
        logits (`np.ndarray` of shape `(num_samples, num_labels)`): raw model logits of a held-out split (never the
            test split).
        labels (`np.ndarray` of shape `(num_samples,)`): true class indices.
        max_iterations (`int`, *optional*, defaults to 100): L-BFGS iterations on log T.

    Returns:
        `float`, T in `TEMPERATURE_RANGE` (above 1 softens over-confident probabilities, below 1 sharpens).
    """
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise ValueError(
            f"`logits` must be (num_samples, num_labels) and `labels` (num_samples,), got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}."
        )
    if not torch.isfinite(logits).all():
        raise ValueError("`logits` hold NaN or infinite values.")
    # Optimised in log space so that T stays positive.
    log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=0.1, max_iter=max_iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_temperature.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_temperature.detach().exp())
    # A validation split the model gets wrong with margin drives T to infinity (right with margin, towards 0); a
    # bounded T keeps the reported probabilities usable, and the warning says the split could not calibrate.
    low, high = TEMPERATURE_RANGE
    if not low <= temperature <= high:
        logger.warning(
            "The fitted temperature %.3g lies outside [%g, %g] (the validation predictions are all wrong or all right "
            "with a margin): using the bound. Calibrate on a larger, representative held-out split.", temperature, low, high
        )
    return min(max(temperature, low), high)


def calibration_scores(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> dict:
    """ECE (15 bins), NLL, Brier score and reliability bins of `softmax(logits / temperature)`."""
    return load_calibration_metric().compute(
        predictions=softmax(np.asarray(logits, dtype=np.float64) / temperature),
        references=np.asarray(labels),
        num_bins=CALIBRATION_BINS,
    )


def plot_reliability_diagram(
    scores: Mapping[str, Mapping], path: str | Path, title: str = "Reliability on the test split"
) -> Path:
    """
    Writes a reliability diagram: per confidence bin, the accuracy of the predictions against their mean
    confidence, one panel per entry of `scores` (e.g. `{"uncalibrated": ..., "calibrated (T = 1.6)": ...}`, each as
    [`calibration_scores`] returns it), with the diagonal of perfect calibration and the ECE in the panel title.
    """
    figure, axes = plt.subplots(1, len(scores), figsize=(4.2 * len(scores), 4.4), sharey=True, squeeze=False)
    for axis, (name, result) in zip(axes[0], scores.items(), strict=True):
        counts = np.asarray(result["bin_count"])
        num_bins = len(counts)
        edges = np.linspace(0.0, 1.0, num_bins + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        filled = counts > 0
        accuracy = np.asarray(result["bin_accuracy"])
        confidence = np.asarray(result["bin_confidence"])
        axis.bar(centres[filled], accuracy[filled], width=1.0 / num_bins, edgecolor="black", color="tab:blue",
                 label="accuracy in the bin")
        axis.plot(centres[filled], confidence[filled], "D", color="tab:red", markersize=5,
                  label="mean confidence in the bin")
        axis.vlines(centres[filled], accuracy[filled], confidence[filled], color="tab:red", linewidth=1.5)
        axis.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        for centre, count, height in zip(centres[filled], counts[filled], accuracy[filled]):
            # The number of samples at the foot of each bar, white on the bar where it is tall enough.
            axis.text(centre, 0.015, str(count), ha="center", va="bottom", fontsize=7,
                      color="white" if height > 0.08 else "black")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_xlabel("confidence (top class probability)")
        axis.set_title(f"{name}\nECE {result['ece']:.3f} · NLL {result['nll']:.3f} · Brier {result['brier']:.3f}",
                       fontsize=10)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(loc="upper left", fontsize=8)
    figure.suptitle(f"{title} ({CALIBRATION_BINS} bins; the number at a bar's foot: samples in the bin)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def _logits(predictions) -> np.ndarray:
    # Models returning more than logits (modality weights, ...) give the Trainer a tuple, logits first.
    return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)


def calibrate_after_training(model, validation, test, output_dir: str | Path | None = None) -> dict[str, float]:
    """
    The end-of-training calibration step of train.py: fits the temperature on `validation` (a `Trainer.predict`
    result), stores it in `model.config.calibration_temperature` (so `save_pretrained` writes it), scores `test`
    before and after, and writes `reliability_diagram.png` into `output_dir`.

    Returns:
        `{"calibration_temperature": T, "test_ece": ..., "test_calibrated_ece": ..., ...}` (ECE, NLL and Brier
        before and after; only the temperature when `test` is None).
    """
    temperature = fit_temperature(_logits(validation.predictions), validation.label_ids)
    model.config.calibration_temperature = temperature
    metrics = {"calibration_temperature": temperature}
    if test is None:
        return metrics
    before = calibration_scores(_logits(test.predictions), test.label_ids)
    after = calibration_scores(_logits(test.predictions), test.label_ids, temperature)
    for key in ("ece", "nll", "brier"):
        metrics[f"test_{key}"] = before[key]
        metrics[f"test_calibrated_{key}"] = after[key]
    if output_dir is not None:
        plot_reliability_diagram(
            {"uncalibrated (T = 1)": before, f"calibrated (T = {temperature:.2f}, fitted on validation)": after},
            Path(output_dir) / RELIABILITY_DIAGRAM_NAME,
        )
    return metrics
