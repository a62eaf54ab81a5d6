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
"""Facial expression recognition metrics as an `evaluate` module: accuracy, macro-F1, unweighted average recall
(UAR), per-class recall and the confusion matrix. Loaded offline with `evaluate.load(<path of this folder>)`."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
Classification metrics for facial expression recognition, where classes are imbalanced (few "disgust" or "fear"
faces) and accuracy alone rewards predicting the frequent ones.

- accuracy: fraction of correct predictions.
- uar: unweighted average recall — the mean of per-class recalls (scikit-learn's `recall_score(average="macro")`).
- macro_f1: the mean of per-class F1 scores (scikit-learn's `f1_score(average="macro")`).
- per_class_recall: recall of every class `0 .. num_labels - 1`.
- confusion_matrix: `num_labels x num_labels` counts, rows the references, columns the predictions.

As in scikit-learn, `uar` and `macro_f1` average over the classes present in the references or the predictions:
a class that is only predicted counts with recall 0 and F1 0, a class in neither is left out. A class absent from
the references has a per-class recall of 0 (scikit-learn's `zero_division=0`).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class indices.
    references (`list` of `int`): true class indices.
    num_labels (`int`): number of classes; every index must be in `[0, num_labels)`.

Returns:
    `accuracy` (`float`), `macro_f1` (`float`), `uar` (`float`), `per_class_recall` (`list` of `num_labels`
    `float`), `confusion_matrix` (`list` of `num_labels` lists of `num_labels` `int`).

Examples:
    >>> fer_metrics = evaluate.load("vit_fer/metrics/fer_metrics")
    >>> results = fer_metrics.compute(predictions=[0, 1, 1], references=[0, 1, 0], num_labels=2)
    >>> results["uar"], results["confusion_matrix"]
    (0.75, [[1, 1], [0, 1]])
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FerMetrics(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions: list[int], references: list[int], num_labels: int) -> dict:
        if not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"`num_labels` must be a positive int, got {num_labels!r}.")
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if references.size == 0:
            raise ValueError("`predictions` and `references` are empty: there is nothing to score.")
        for argument, values in (("predictions", predictions), ("references", references)):
            outside = values[(values < 0) | (values >= num_labels)]
            if outside.size:
                raise ValueError(
                    f"`{argument}` must be class indices in [0, {num_labels}), got {sorted(set(outside.tolist()))}."
                )

        confusion = np.bincount(references * num_labels + predictions, minlength=num_labels**2).reshape(
            num_labels, num_labels
        )
        correct = np.diag(confusion)
        support = confusion.sum(axis=1)
        predicted = confusion.sum(axis=0)
        recall = np.divide(correct, support, out=np.zeros(num_labels), where=support > 0)
        # 2 TP + FP + FN = support + predicted, > 0 exactly for the classes that are averaged.
        averaged = support + predicted > 0
        f1 = 2 * correct[averaged] / (support + predicted)[averaged]
        return {
            "accuracy": float(correct.sum() / references.size),
            "macro_f1": float(f1.mean()),
            "uar": float(recall[averaged].mean()),
            "per_class_recall": recall.tolist(),
            "confusion_matrix": confusion.tolist(),
        }
