"""Labels beyond one class per sample — lists of class names, probability vectors, numbers — parsed and checked for
the `problem_type` they serve, which is chosen by transformers' rule for image classifiers.

- `"multi_label_classification"`: a list of class names (`["happy", "surprised"]`; in a CSV cell also
  `happy;surprised`), or a multi-hot vector over the FER labels with values in [0, 1].
- `"single_label_classification"` with vectors: soft labels, a probability vector over the FER labels (e.g. FER+
  vote distributions; non-negative, summing to 1). Class names in the same column count as one-hot vectors.
- `"regression"`: a number, or a list of numbers (e.g. valence and arousal), the same count for every sample.

Without an explicit problem type: class names or indices alone are single-label classification (the usual
`ClassLabel` column); lists of class names are multi-label; numbers follow transformers' rule for float labels —
one value per sample is regression, several are multi-label. Soft labels and multi-target regression therefore need
the problem type given, as for transformers' models.
"""

import json
import math
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np

from ..configuration_vit_fer import FER_LABELS
from .files import canonical_label


PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


def parse_label_text(value: Any) -> Any:
    """A label as a CSV cell spells it, read as the JSONL value it stands for: `[...]` is a JSON list,
    `a;b` a list of names, `0.25` a number; class names and digit strings (class indices) stay as they are."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value
    if ";" in text:
        return [part.strip() for part in text.split(";") if part.strip()]
    if not text.isdigit():
        try:
            return float(text)
        except ValueError:
            return value
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_vector(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) or (_is_number(value) and not float(value).is_integer())


def resolve_problem_type(labels: Sequence[Any], problem_type: str | None) -> str | None:
    """The problem type the (parsed) `labels` serve, or `None` for plain class labels (a `ClassLabel` column)."""
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise ValueError(f"`problem_type` must be one of {PROBLEM_TYPES}, got {problem_type!r}.")
    present = [label for label in labels if label is not None]
    vectors = [label for label in present if _is_vector(label)]
    if problem_type == "regression":
        return problem_type
    if not vectors:
        return None if problem_type in (None, "single_label_classification") else problem_type
    if problem_type is not None:
        return problem_type
    if any(isinstance(label, str) for vector in vectors if not _is_number(vector) for label in vector):
        return "multi_label_classification"
    lengths = {1 if _is_number(vector) else len(vector) for vector in vectors}
    return "regression" if lengths == {1} else "multi_label_classification"


def label_vector(label: Any, problem_type: str) -> list[float]:
    """`label` as the float vector the model's loss takes for `problem_type`; a `ValueError` says what is wrong."""
    if problem_type == "regression":
        values = [label] if not isinstance(label, (list, tuple, np.ndarray)) else list(label)
        try:
            numbers = [float(value) for value in values]
        except (TypeError, ValueError):
            raise ValueError(f"{label!r} is not a number or a list of numbers (regression targets)") from None
        if not numbers or not all(math.isfinite(number) for number in numbers):
            raise ValueError(f"{label!r} holds no number, or a NaN or infinite one")
        return numbers
    values = [label] if isinstance(label, str) or _is_number(label) and float(label).is_integer() else label
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise ValueError(f"{label!r} is neither a class name nor a list of them, nor a vector over {FER_LABELS}")
    values = list(values)
    if all(isinstance(value, str) for value in values):
        names = [canonical_label(value) for value in values]
        unknown = [value for value, name in zip(values, names) if name is None]
        if unknown or not names:
            raise ValueError(f"{label!r}: {unknown or 'no class'} is none of {FER_LABELS}")
        if problem_type == "single_label_classification" and len(set(names)) > 1:
            raise ValueError(f"{label!r} names several classes; soft labels are probability vectors")
        return [float(name in names) for name in FER_LABELS]
    if len(values) == 1 and _is_number(values[0]) and float(values[0]).is_integer():  # a class index
        index = int(values[0])
        if not 0 <= index < len(FER_LABELS):
            raise ValueError(f"class index {index} is outside [0, {len(FER_LABELS)})")
        return [float(i == index) for i in range(len(FER_LABELS))]
    if len(values) != len(FER_LABELS) or not all(_is_number(value) for value in values):
        raise ValueError(f"{label!r} is not a vector of {len(FER_LABELS)} numbers, one per class of {FER_LABELS}")
    vector = [float(value) for value in values]
    if not all(0.0 <= value <= 1.0 for value in vector):
        raise ValueError(f"{label!r} has values outside [0, 1]")
    if problem_type == "single_label_classification" and abs(sum(vector) - 1.0) > 1e-3:
        raise ValueError(f"{label!r} sums to {sum(vector):.4f}; class probabilities (soft labels) sum to 1")
    return vector


def label_stratum(label: Any, problem_type: str | None) -> int:
    """The class a sample counts for when splits are stratified: its class, the most probable or first present
    one; regression samples are not stratified."""
    if problem_type is None:
        return FER_LABELS.index(label)
    if problem_type == "regression":
        return 0
    return int(np.argmax(label))


def dataset_problem_type(label_feature: datasets.ClassLabel | datasets.List, problem_type: str | None = None) -> str:
    """The problem type of a `load_fer_dataset` label column: single-label for a `ClassLabel`; for float vectors
    the one given, else transformers' rule (one value: regression; several: multi-label)."""
    if isinstance(label_feature, datasets.ClassLabel):
        return "single_label_classification"
    return problem_type or ("regression" if label_feature.length == 1 else "multi_label_classification")
