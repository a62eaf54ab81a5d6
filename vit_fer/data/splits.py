"""
Split names and their spellings, and the assignment of samples to train / validation / test: stratified by label,
or by whole subjects so that no person is in two splits; the folds of a cross-validation, subject-grouped and
stratified where possible; and the check that no subject is in two splits.
"""

from collections.abc import Iterable, Mapping, Sequence
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


LOSO = "loso"
"""`num_folds` of leave-one-subject-out cross-validation: one fold per subject."""


def fold_indices(
    labels: Sequence[int], *, groups: Sequence[Any] | None = None, num_folds: int | str = 5, seed: int = 42
) -> list[np.ndarray]:
    """
    Assigns samples to the folds of a cross-validation: every sample is in exactly one fold, a group (a subject)
    never spans two folds, and the folds' label proportions are kept as close to the data's as whole groups allow
    (the greedy assignment of scikit-learn's `StratifiedGroupKFold`: groups with the most uneven labels first, each
    to the fold it unbalances least, ties to the smaller fold).

    Args:
        labels (`Sequence[int]`): Label (stratum) of each sample.
        groups (`Sequence[str]`, *optional*): Subject of each sample. Without groups every sample is its own group
            (image-level folds, stratified by label).
        num_folds (`int` or `"loso"`, *optional*, defaults to 5): Number of folds, at least 2 and at most the
            number of groups; `"loso"` (leave one subject out) makes one fold per subject, in sorted order.
        seed (`int`, *optional*, defaults to 42): Seed of the shuffle that orders groups of equal label spread.

    Returns:
        One array of sample indices per fold (the fold's test part), sorted.
    """
    labels = np.asarray(labels)
    if num_folds == LOSO:
        if groups is None:
            raise ValueError(
                f"`num_folds={LOSO!r}` (leave one subject out) needs the subject of each sample, got groups=None."
            )
        unique, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        return [np.flatnonzero(inverse == group) for group in range(len(unique))]
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or num_folds < 2:
        raise ValueError(f"`num_folds` must be an integer of at least 2 or {LOSO!r}, got {num_folds!r}.")
    if groups is None:
        group_ids = np.arange(len(labels))
    else:
        group_ids = np.unique(np.asarray(groups, dtype=str), return_inverse=True)[1]
    num_groups = int(group_ids.max()) + 1 if len(group_ids) else 0
    if num_groups < num_folds:
        what = "subjects" if groups is not None else "samples"
        raise ValueError(f"{num_folds} folds need at least {num_folds} {what}, the data has {num_groups}.")
    classes, label_ids = np.unique(labels, return_inverse=True)
    counts = np.zeros((num_groups, len(classes)))
    np.add.at(counts, (group_ids, label_ids), 1)
    totals = counts.sum(axis=0)
    # Shuffled, then stably sorted by how uneven each group's labels are: the hardest groups are placed first.
    order = np.random.default_rng(seed).permutation(num_groups)
    order = order[np.argsort(-counts[order].std(axis=1), kind="stable")]
    fold_counts = np.zeros((num_folds, len(classes)))
    group_fold = np.empty(num_groups, dtype=int)
    for group in order:
        spreads = []
        for fold in range(num_folds):
            trial = fold_counts.copy()
            trial[fold] += counts[group]
            spreads.append((np.mean(np.std(trial / totals, axis=0)), trial[fold].sum()))
        best = min(range(num_folds), key=lambda fold: spreads[fold])
        fold_counts[best] += counts[group]
        group_fold[group] = best
    sample_fold = group_fold[group_ids]
    return [np.flatnonzero(sample_fold == fold) for fold in range(num_folds)]


def check_subject_disjoint(subjects: Mapping[str, Iterable[Any]], where: str) -> None:
    """
    Raises `ValueError` when a subject is in two of the splits `subjects` (`{split: subject of each sample}`): a
    person the model was trained on must not be validated or tested on (results are inflated otherwise).
    `where` names the splits' origin in the message (e.g. "The given splits (the `split` column)").
    """
    splits_of: dict[Any, list[str]] = {}
    for split, members in subjects.items():
        for subject in sorted(set(members), key=str):
            splits_of.setdefault(subject, []).append(split)
    leaking = {subject: splits for subject, splits in splits_of.items() if len(splits) > 1}
    if leaking:
        shown = ", ".join(f"{subject} in {' and '.join(splits)}" for subject, splits in list(leaking.items())[:5])
        more = f" and {len(leaking) - 5} more" if len(leaking) > 5 else ""
        raise ValueError(
            f"{where} put {len(leaking)} subject(s) in two splits ({shown}{more}): a person seen in training must not "
            "be validated or tested on. Give each subject one split, or leave the split out to have vit-fer split by "
            "subject."
        )
