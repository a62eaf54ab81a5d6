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
"""Calibration metrics of class probabilities as an `evaluate` module: expected calibration error (ECE), negative
log-likelihood (NLL) and Brier score, plus the reliability-diagram bins. Loaded offline with
`evaluate.load(<path of this folder>)`."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
How far predicted class probabilities can be taken at their word.

- ece: expected calibration error (Guo et al., 2017) with `num_bins` equal-width confidence bins over [0, 1]:
  the sample-weighted mean of |accuracy - mean confidence| per bin, the confidence being the top probability.
- nll: mean negative log-likelihood of the true class (natural log; probabilities are floored at 1e-12).
- brier: mean over samples of the squared distance between the probability vector and the one-hot truth, summed
  over classes (Brier, 1950; 0 is perfect, 2 the worst).
- bin_accuracy, bin_confidence, bin_count: per bin, for reliability diagrams (accuracy and confidence are 0 in an
  empty bin, whose count is 0).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): class probabilities per sample; each row sums to 1.
    references (`list` of `int`): true class indices.
    num_bins (`int`, *optional*, defaults to 15): number of equal-width confidence bins of the ECE.

Returns:
    `ece`, `nll`, `brier` (`float`), `bin_accuracy`, `bin_confidence` (`list` of `float`), `bin_count`
    (`list` of `int`).

Examples:
    >>> calibration = evaluate.load("vit_fer/metrics/calibration")
    >>> results = calibration.compute(predictions=[[0.9, 0.1], [0.6, 0.4]], references=[0, 1], num_bins=10)
    >>> round(results["ece"], 3)
    0.35
"""

_CITATION = """
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={ICML},
  year={2017}
}
"""

_ROW_SUM_TOLERANCE = 1e-3


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Calibration(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions: list[list[float]], references: list[int], num_bins: int = 15) -> dict:
        if not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"`num_bins` must be a positive int, got {num_bins!r}.")
        references = np.asarray(references, dtype=np.int64)
        if references.size == 0:
            raise ValueError("`predictions` and `references` are empty: there is nothing to score.")
        lengths = {len(row) for row in predictions}
        if len(lengths) != 1:
            raise ValueError(f"Every row of `predictions` must have one probability per class, got lengths {lengths}.")
        probabilities = np.asarray(predictions, dtype=np.float64)
        num_labels = probabilities.shape[1]
        sums = probabilities.sum(axis=1)
        if not np.isfinite(probabilities).all() or probabilities.min() < 0 or np.abs(sums - 1).max() > _ROW_SUM_TOLERANCE:
            raise ValueError(
                "`predictions` must hold probabilities (finite, non-negative, rows summing to 1 — apply a softmax to "
                f"logits), got row sums from {sums.min():.4g} to {sums.max():.4g}."
            )
        outside = references[(references < 0) | (references >= num_labels)]
        if outside.size:
            raise ValueError(f"`references` must be class indices in [0, {num_labels}), got {sorted(set(outside.tolist()))}.")

        confidence = probabilities.max(axis=1)
        correct = (probabilities.argmax(axis=1) == references).astype(np.float64)
        # Bins (i/n, (i+1)/n]; a confidence of exactly 0 cannot occur (the top of a probability vector is >= 1/k).
        bins = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
        count = np.bincount(bins, minlength=num_bins)
        accuracy_sum = np.bincount(bins, weights=correct, minlength=num_bins)
        confidence_sum = np.bincount(bins, weights=confidence, minlength=num_bins)
        bin_accuracy = np.divide(accuracy_sum, count, out=np.zeros(num_bins), where=count > 0)
        bin_confidence = np.divide(confidence_sum, count, out=np.zeros(num_bins), where=count > 0)
        ece = float(np.sum(np.abs(accuracy_sum - confidence_sum)) / references.size)

        true_probability = probabilities[np.arange(references.size), references]
        one_hot = np.eye(num_labels)[references]
        return {
            "ece": ece,
            "nll": float(-np.log(np.maximum(true_probability, 1e-12)).mean()),
            "brier": float(((probabilities - one_hot) ** 2).sum(axis=1).mean()),
            "bin_accuracy": bin_accuracy.tolist(),
            "bin_confidence": bin_confidence.tolist(),
            "bin_count": count.tolist(),
        }
