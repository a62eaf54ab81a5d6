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

from collections.abc import Callable, Mapping
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


def build_compute_metrics(id2label: Mapping[int, str]) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `compute_metrics` for `Trainer`: argmax of the logits, scored by [`load_fer_metric`].

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
        results = metric.compute(
            predictions=logits.argmax(axis=-1), references=eval_prediction.label_ids, num_labels=num_labels
        )
        calibrated = calibration.compute(
            predictions=softmax(logits), references=eval_prediction.label_ids, num_bins=CALIBRATION_BINS
        )
        return {
            "accuracy": results["accuracy"],
            "macro_f1": results["macro_f1"],
            "uar": results["uar"],
            **dict(zip(recall_keys, results["per_class_recall"])),
            **{key: calibrated[key] for key in ("ece", "nll", "brier")},
        }

    return compute_metrics
