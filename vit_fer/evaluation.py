# Copyright 2026 The vit-fer authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The FER and calibration metrics of the package's `evaluate` modules, and the `compute_metrics` function the
`Trainer` calls."""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction


FER_METRIC_PATH = Path(__file__).parent / "metrics" / "fer_metrics"
CALIBRATION_METRIC_PATH = Path(__file__).parent / "metrics" / "calibration"
CALIBRATION_BINS = 15
"""Equal-width confidence bins of the expected calibration error (ECE) that vit-fer reports."""


def load_fer_metric() -> evaluate.EvaluationModule:
    """Loads the FER metrics (accuracy, macro_f1, uar, per_class_recall, confusion_matrix) shipped with vit-fer —
    the Hub's metrics are not needed. `compute(predictions=..., references=..., num_labels=...)` scores them."""
    return evaluate.load(str(FER_METRIC_PATH))


def load_calibration_metric() -> evaluate.EvaluationModule:
    """Loads the calibration metrics (ece, nll, brier and the reliability-diagram bins) shipped with vit-fer.
    `compute(predictions=<probabilities>, references=..., num_bins=15)` scores them."""
    return evaluate.load(str(CALIBRATION_METRIC_PATH))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of `logits` (last axis), computed stably in float64."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def multi_label_metrics(logits: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Multi-label scores: per-class F1 of the sigmoid probabilities thresholded at 0.5 (`f1_<label>`), their mean
    over the classes present in the references or predictions (`macro_f1`), per-class average precision of the
    ranking (`ap_<label>`) and its mean over the classes with a positive sample (`mAP`)."""
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    predicted, truth = probabilities >= 0.5, labels >= 0.5
    true_positives = (predicted & truth).sum(0)
    denominators = predicted.sum(0) + truth.sum(0)
    f1 = np.where(denominators > 0, 2 * true_positives / np.maximum(denominators, 1), 0.0)
    average_precision = []
    for column in range(labels.shape[1]):
        hits = truth[np.argsort(-probabilities[:, column], kind="stable"), column]
        # The precision at the rank of each positive, averaged over the positives.
        ranks = np.flatnonzero(hits) + 1
        average_precision.append((np.arange(1, len(ranks) + 1) / ranks).mean() if len(ranks) else np.nan)
    average_precision = np.asarray(average_precision)
    results = {
        "macro_f1": float(f1[denominators > 0].mean()) if (denominators > 0).any() else 0.0,
        "mAP": float(np.nanmean(average_precision)) if np.isfinite(average_precision).any() else 0.0,
    }
    results.update({f"f1_{name}": float(value) for name, value in zip(names, f1)})
    results.update({f"ap_{name}": float(value) for name, value in zip(names, average_precision) if np.isfinite(value)})
    return results


def soft_label_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Soft-label scores beyond the argmax ones: the cross-entropy of the predicted distribution against the target
    probabilities and their KL divergence KL(target ‖ predicted), in nats, averaged over samples."""
    shifted = logits - logits.max(-1, keepdims=True)
    log_predicted = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    cross_entropy = -(labels * log_predicted).sum(-1)
    entropy = -(labels * np.log(np.where(labels > 0, labels, 1.0))).sum(-1)
    return {"cross_entropy": float(cross_entropy.mean()), "kl_divergence": float((cross_entropy - entropy).mean())}


def regression_metrics(predictions: np.ndarray, targets: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Per target (`rmse_<name>`, `ccc_<name>`) and averaged over targets (`rmse`, `ccc`): root mean squared error
    and Lin's concordance correlation coefficient 2·cov / (var_p + var_t + (mean_p − mean_t)²), the usual score of
    valence / arousal."""
    predictions, targets = predictions.reshape(len(predictions), -1), targets.reshape(len(targets), -1)
    rmse = np.sqrt(((predictions - targets) ** 2).mean(0))
    covariance = ((predictions - predictions.mean(0)) * (targets - targets.mean(0))).mean(0)
    spread = predictions.var(0) + targets.var(0) + (predictions.mean(0) - targets.mean(0)) ** 2
    ccc = np.where(spread > 0, 2 * covariance / np.where(spread > 0, spread, 1.0), 0.0)
    results = {"rmse": float(rmse.mean()), "ccc": float(ccc.mean())}
    for name, value_rmse, value_ccc in zip(names, rmse, ccc):
        results.update({f"rmse_{name}": float(value_rmse), f"ccc_{name}": float(value_ccc)})
    return results


def build_compute_metrics(
    id2label: Mapping[int, str], problem_type: str | None = None
) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `compute_metrics` for `Trainer`: argmax of the logits, scored by [`load_fer_metric`] — for single-label
    classification (`problem_type` `None` or `"single_label_classification"`; with soft labels, i.e. class
    probabilities, against their argmax, plus [`soft_label_metrics`]). Multi-label classification is scored by
    [`multi_label_metrics`], regression by [`regression_metrics`] (one name per target from `id2label`).

    It returns scalars only, the values every Trainer logger records: `accuracy`, `macro_f1`, `uar`, one
    `recall_<label>` per class (e.g. `recall_disgust`), and the calibration of the softmax probabilities of the raw
    logits: `ece` (15 equal-width bins), `nll` and `brier` (see [`load_calibration_metric`]). The confusion matrix is not among them — TensorBoard and
    MLflow drop non-scalar values with a warning at each evaluation; compute it from `trainer.predict(...)` with
    [`load_fer_metric`].

    Args:
        id2label: the model's `config.id2label`, with keys `0 .. num_labels - 1`.
    """
    num_labels = len(id2label)
    if sorted(id2label) != list(range(num_labels)):
        raise ValueError(f"`id2label` keys must be 0 .. {num_labels - 1}, got {sorted(id2label)}.")
    recall_keys = [f"recall_{id2label[index]}" for index in range(num_labels)]
    if len(set(recall_keys)) != num_labels:
        raise ValueError(f"`id2label` names must be distinct, got {list(id2label.values())}.")
    metric = load_fer_metric()
    calibration = load_calibration_metric()

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        # Models returning more than logits (hidden states, modality weights) give the Trainer a tuple, logits first.
        if isinstance(logits, tuple):
            logits = logits[0]
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[1] != num_labels:
            raise ValueError(f"Expected logits of shape (num_samples, {num_labels}), got {logits.shape}.")
        if eval_prediction.label_ids is None:
            raise ValueError("The evaluation dataset has no labels: `label_ids` is None.")
        labels = np.asarray(eval_prediction.label_ids)
        names = [id2label[index] for index in range(num_labels)]
        if problem_type == "multi_label_classification":
            return multi_label_metrics(logits, labels, names)
        if problem_type == "regression":
            return regression_metrics(logits, labels, names)
        soft = labels.ndim == 2
        references = labels.argmax(-1) if soft else labels
        results = metric.compute(predictions=logits.argmax(axis=-1), references=references, num_labels=num_labels)
        calibrated = calibration.compute(predictions=softmax(logits), references=references, num_bins=CALIBRATION_BINS)
        return {
            "accuracy": results["accuracy"],
            "macro_f1": results["macro_f1"],
            "uar": results["uar"],
            **dict(zip(recall_keys, results["per_class_recall"])),
            **{key: calibrated[key] for key in ("ece", "nll", "brier")},
            **(soft_label_metrics(logits, labels) if soft else {}),
        }

    return compute_metrics
