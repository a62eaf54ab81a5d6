"""
Split names and their spellings, and the assignment of samples to train / validation / test: stratified by label,
or by whole subjects so that no person is in two splits.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np


SPLITS = ("train", "validation", "test")
SPLIT_LOOKUP = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


def _split_sizes(total: int, validation_size: float, test_size: float) -> tuple[int, int]:
    return round(total * validation_size), round(total * test_size)


def _assign_by_label(labels: np.ndarray, rng: np.random.Generator, validation_size: float, test_size: float):
    assignment = np.empty(len(labels), dtype=object)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_validation, n_test = _split_sizes(len(members), validation_size, test_size)
        assignment[members[:n_test]] = "test"
        assignment[members[n_test : n_test + n_validation]] = "validation"
        assignment[members[n_test + n_validation :]] = "train"
    return assignment


def _assign_by_group(groups: np.ndarray, rng: np.random.Generator, validation_size: float, test_size: float):
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    n_validation, n_test = _split_sizes(len(groups), validation_size, test_size)
    targets = [(split, n) for split, n in (("test", n_test), ("validation", n_validation)) if n > 0]
    if len(unique) < len(targets) + 1:
        raise ValueError(
            f"A subject-wise split into {len(targets) + 1} parts needs as many subjects, the data has {len(unique)}: "
            "lower `validation_size`/`test_size` to 0, or pass `split_by_subject=False`."
        )
    group_split = np.empty(len(unique), dtype=object)
    order = rng.permutation(len(unique))
    position = 0
    for number, (split, target) in enumerate(targets):
        # Whole subjects until the target is reached (at least one), keeping one for each later split and train.
        reserve = len(targets) - number
        taken = 0
        while taken < target and position < len(order) - reserve:
            group_split[order[position]] = split
            taken += counts[order[position]]
            position += 1
    group_split[order[position:]] = "train"
    return group_split[inverse]


def split_indices(
    labels: Sequence[int],
    *,
    groups: Sequence[Any] | None = None,
    given: Sequence[str | None] | None = None,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
) -> dict[str, np.ndarray]:
    """
    Assigns samples to train / validation / test.

    Args:
        labels (`Sequence[int]`): Label of each sample (for stratification).
        groups (`Sequence[str]`, *optional*): Group of each sample (a subject id); a group never spans two
            splits. Without groups the split is stratified by label.
        given (`Sequence[str | None]`, *optional*): A split already given to each sample (all or none); splits it
            lacks are carved from its train part.
        validation_size (`float`, *optional*, defaults to 0.1): Fraction of samples for validation.
        test_size (`float`, *optional*, defaults to 0.1): Fraction of samples for test.
        seed (`int`, *optional*, defaults to 42): Seed of the shuffles.

    Returns:
        `{split: indices}` for each non-empty split, in the order train, validation, test.
    """
    for name, value in (("validation_size", validation_size), ("test_size", test_size)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1), got {value}.")
    if validation_size + test_size >= 1.0:
        raise ValueError(f"`validation_size + test_size` must be below 1, got {validation_size + test_size}.")
    labels = np.asarray(labels)
    assignment = np.full(len(labels), "train", dtype=object)
    if given is not None:
        assignment[:] = given
    todo = {"validation": validation_size, "test": test_size}
    if given is not None:
        todo = {split: size for split, size in todo.items() if split not in set(given)}
    pool = np.flatnonzero(assignment == "train")
    if todo and len(pool):
        # Fractions are of the whole data, so carving from a given train part keeps the requested proportions.
        scale = len(labels) / len(pool)
        sizes = {split: min(size * scale, 0.95) for split, size in todo.items()}
        rng = np.random.default_rng(seed)
        validation, test = sizes.get("validation", 0.0), sizes.get("test", 0.0)
        if groups is not None:
            carved = _assign_by_group(np.asarray(groups, dtype=str)[pool], rng, validation, test)
        else:
            carved = _assign_by_label(labels[pool], rng, validation, test)
        assignment[pool] = carved
    return {split: np.flatnonzero(assignment == split) for split in SPLITS if (assignment == split).any()}
