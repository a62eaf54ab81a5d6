"""`load_fer_dataset`: reads a source, checks its samples, splits them, and builds the `DatasetDict`."""

import dataclasses
import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..configuration_vit_fer import FER_LABELS
from .checks import check_duplicates, check_images, check_labels_and_splits, check_target_counts, probe_sample
from .files import MODALITIES, BadSample, report_bad_samples
from .layouts import (
    LAYOUTS,
    MANIFEST_NAMES,
    Record,
    detect_layout,
    folder_records,
    ktfe_records,
    manifest_records,
    modality_present,
    records_from_dataset,
    resolve_modalities,
)
from .splits import LOSO, SPLITS, check_subject_disjoint, fold_indices, split_indices
from .targets import label_stratum, parse_label_text, resolve_problem_type


logger = logging.getLogger(__name__)

DEFAULT_SHUFFLE_BUFFER_SIZE = 1000
# Shards of a streamed split: enough for DataLoader workers and processes to take whole shards each.
STREAM_SHARDS = 64
READING_ARGUMENTS = (
    "layout", "rgb_column", "thermal_column", "label_column", "subject_column", "split_column", "modalities",
    "label_names", "problem_type", "skip_bad_samples", "verify_images", "drop_duplicates", "streaming",
)  # fmt: skip
"""The arguments of [`load_fer_dataset`] that say how a source is read (the others, how it is split and served)."""


def load_fer_dataset(
    path_or_dataset: str | os.PathLike | datasets.Dataset | datasets.DatasetDict,
    *,
    layout: str = "auto",
    rgb_column: str = "rgb",
    thermal_column: str = "thermal",
    label_column: str = "label",
    subject_column: str = "subject",
    split_column: str = "split",
    modalities: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    problem_type: str | None = None,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
    split_by_subject: bool | None = None,
    skip_bad_samples: bool = False,
    verify_images: bool = True,
    drop_duplicates: bool = False,
    streaming: bool = False,
    shuffle_buffer_size: int = DEFAULT_SHUFFLE_BUFFER_SIZE,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """
    Loads RGB, thermal or paired RGB + thermal FER data into a `DatasetDict` with splits train / validation /
    test (a split is left out when it would be empty), or with `streaming=True` an `IterableDatasetDict` of the same
    splits whose images are read only as the samples are iterated.

    Args:
        path_or_dataset (`str`, `os.PathLike`, `datasets.Dataset` or `datasets.DatasetDict`):
            A folder (folder, manifest or KTFE layout), a manifest file, a dataset, or a dataset name for
            `datasets.load_dataset` (with `layout="dataset"`).
        layout (`str`, *optional*, defaults to `"auto"`):
            One of `"auto"`, `"folder"`, `"manifest"`, `"ktfe"`, `"dataset"` (see the `vit_fer.data` docstring).
            `"auto"` picks the manifest when a folder holds `manifest.csv`/`manifest.jsonl`.
        rgb_column, thermal_column, label_column, subject_column, split_column (`str`, *optional*):
            Column names in manifests and datasets.
        modalities (`Sequence[str]`, *optional*):
            Modalities to load (`("rgb",)`, `("thermal",)` or both); defaults to every modality the data has.
            Files of a modality not loaded are not read and need no partner.
        label_names (`Sequence[str]`, *optional*):
            Names of integer labels (in manifests, or in a dataset label column that is not a `ClassLabel`).
        problem_type (`str`, *optional*):
            What the label column holds, as transformers' `problem_type`: `"single_label_classification"` (class
            names or indices; or probability vectors: soft labels), `"multi_label_classification"` (lists of class
            names, or multi-hot vectors) or `"regression"` (numbers). Inferred from the labels when unset (see
            `vit_fer.data.targets`).
        validation_size (`float`, *optional*, defaults to 0.1):
            Fraction of the data for validation when the data gives no validation split.
        test_size (`float`, *optional*, defaults to 0.1):
            Fraction of the data for test when the data gives no test split.
        seed (`int`, *optional*, defaults to 42):
            Seed of the split.
        split_by_subject (`bool`, *optional*):
            Keep each subject in one split, so no person is both trained and tested on. Defaults to `True` when
            subject ids exist; a stratified split by label is used otherwise.
        skip_bad_samples (`bool`, *optional*, defaults to `False`):
            Leave out bad samples (unpaired, unreadable or truncated files, images that are empty, not finite, of
            the wrong bit depth for their role or transparent, a number where a path belongs, unknown labels, pairs
            of different sizes) with a logged count by reason, instead of raising `BadDataError` listing them with
            their files (and manifest rows).
        verify_images (`bool`, *optional*, defaults to `True`):
            Decode every image once to catch truncated files and check its values; `False` reads only headers
            (faster, and still checks that the files open, are not empty and that pairs have equal sizes).
        drop_duplicates (`bool`, *optional*, defaults to `False`):
            A file in two samples (a repeated manifest row, the same file in two splits) raises `BadDataError`; with
            `True` the repeats are left out, keeping the first, with a warning and their count.
        streaming (`bool`, *optional*, defaults to `False`):
            Return `datasets.IterableDataset` splits. The listing (paths, labels, subjects; a dataset's label and
            subject columns) is read and split as without streaming, so the splits hold the same samples and stay
            subject-disjoint; the images are read, and checked as `verify_images` says, only when a sample is
            iterated. A bad image then raises `BadDataError` naming its file, or with `skip_bad_samples` is left out
            and counted in a warning after each pass over a shard. The train split is shuffled: its listing once
            with `seed`, then through a buffer (see `shuffle_buffer_size`) whose draws change with
            `IterableDataset.set_epoch` (the `Trainer` calls it every epoch). A dataset given by name is loaded with
            `datasets.load_dataset` (memory-mapped Arrow files) and streamed from there.
        shuffle_buffer_size (`int`, *optional*, defaults to 1000):
            With `streaming`: samples (paths or undecoded images, not tensors) held by the train split's shuffle
            buffer; larger mixes better and holds more memory.

    Returns:
        `datasets.DatasetDict`, or `datasets.IterableDatasetDict` with `streaming=True`
    """
    reading = {name: value for name, value in locals().items() if name in READING_ARGUMENTS}
    if streaming and shuffle_buffer_size < 1:
        raise ValueError(f"`shuffle_buffer_size` must be a positive integer, got {shuffle_buffer_size}.")
    records, image_features, problem_type, source, source_name = _read_records(path_or_dataset, reading)
    given = f"The {split_column!r} column or split folders of {source_name}"
    indices, has_subject = _split_records(
        records, validation_size, test_size, seed, split_by_subject, problem_type, given
    )
    if streaming:
        features = _features(image_features, has_subject, problem_type, records)
        columns = {modality: reading[f"{modality}_column"] for modality in image_features}
        stream = SampleStream(
            source, columns, verify_images, skip_bad_samples, source_name, has_subject, problem_type,
        )
        return datasets.IterableDatasetDict(
            {
                split: stream.split([records[i] for i in indices[split]], split, features, seed, shuffle_buffer_size)
                for split in SPLITS
                if indices.get(split)
            }
        )
    return _dataset_dict(records, indices, image_features, has_subject, problem_type)


def load_fer_folds(
    path_or_dataset: str | os.PathLike | datasets.Dataset | datasets.DatasetDict,
    *,
    num_folds: int | str = 5,
    validation_size: float = 0.1,
    seed: int = 42,
    **options,
) -> list[datasets.DatasetDict]:
    """
    Loads FER data as [`load_fer_dataset`] does (same sources, checks and arguments), split into the folds of a
    cross-validation: one `DatasetDict` per fold, whose `test` split is that fold and whose `validation` split
    (`validation_size` of the data) is carved, by subject, from the other folds, the rest being `train`.

    Folds are subject-grouped when the data has subject ids (no person in two folds, nor in two splits of a fold)
    and stratified by label as far as whole subjects allow (see `vit_fer.data.splits.fold_indices`). Without subject
    ids, k-fold falls back to image-level stratified folds with a logged warning, and leave-one-subject-out is an
    error. A split the data gives (a `split` column, split folders) is set aside, with a logged warning: each
    sample is tested once, in its fold.

    Args:
        num_folds (`int` or `"loso"`, *optional*, defaults to 5):
            The number of folds (at least 2, at most the number of subjects), or `"loso"`: leave one subject out,
            one fold per subject.
        validation_size (`float`, *optional*, defaults to 0.1):
            Fraction of the data for each fold's validation split.
        seed (`int`, *optional*, defaults to 42):
            Seed of the folds and of the validation splits.
        options:
            The other arguments of [`load_fer_dataset`] that say how the data is read: `layout`, the column names,
            `modalities`, `label_names`, `problem_type`, `skip_bad_samples`, `verify_images`, `drop_duplicates`
            (not `streaming`: every fold is built from the whole listing).

    Returns:
        `list[datasets.DatasetDict]`: the folds in order, each with splits train / validation / test (validation
        left out when `validation_size` is 0).
    """
    unknown = sorted(set(options) - (set(READING_ARGUMENTS) - {"streaming"}))
    if unknown:
        raise TypeError(f"load_fer_folds() got unexpected keyword arguments {unknown}.")
    defaults = inspect.signature(load_fer_dataset).parameters
    reading = {name: options.get(name, defaults[name].default) for name in READING_ARGUMENTS}
    records, image_features, problem_type, _, source_name = _read_records(path_or_dataset, reading)
    subject_column = reading["subject_column"]
    has_subject = any(record.subject is not None for record in records)
    if num_folds == LOSO and not has_subject:
        raise ValueError(
            f"Leave-one-subject-out cross-validation (num_folds={LOSO!r}, train.py --cross_validation {LOSO}) needs "
            f"a subject id for every sample, in the column {subject_column!r} (subject_column) of a manifest or "
            f"dataset; {source_name} has none. Add the subject ids, or use k-fold cross-validation (e.g. 5 folds)."
        )
    if not has_subject:
        logger.warning(
            "%s has no subject ids (column %r): the %s folds are image-level, stratified by label, so the same person "
            "can be in training and test, which inflates the scores. Add subject ids for subject-disjoint folds.",
            source_name, subject_column, num_folds,
        )  # fmt: skip
    if any(record.split is not None for record in records):
        logger.warning("%s gives its own splits: they are set aside, each fold's test part replaces the test split.",
                       source_name)  # fmt: skip
    # Augmented copies never decide a fold: they follow their original into training, or are left out.
    primary = [index for index, record in enumerate(records) if not record.augmented]
    folds = fold_indices(
        [label_stratum(records[index].label, problem_type) for index in primary],
        groups=[records[index].subject for index in primary] if has_subject else None,
        num_folds=num_folds,
        seed=seed,
    )
    datasets_by_fold = []
    for number, members in enumerate(folds, start=1):
        tested = {primary[index] for index in members}
        fold_records = [
            dataclasses.replace(record, split="test" if index in tested else "train")
            for index, record in enumerate(records)
        ]
        logger.info("Fold %d of %d: %d test samples.", number, len(folds), len(tested))
        indices, _ = _split_records(fold_records, validation_size, 0.0, seed, None, problem_type, f"Fold {number}")
        datasets_by_fold.append(_dataset_dict(fold_records, indices, image_features, has_subject, problem_type))
    return datasets_by_fold


def _read_records(
    path_or_dataset: str | os.PathLike | datasets.Dataset | datasets.DatasetDict, reading: Mapping[str, Any]
) -> tuple[list[Record], dict[str, Any], str | None, Any, str]:
    """The checked records of a source read with `reading` ([`READING_ARGUMENTS`] of [`load_fer_dataset`]), the
    features of its image columns, its problem type (`None`: class labels), the dataset it came from (`None` for
    files) and its name for messages."""
    columns = {key: reading[f"{key}_column"] for key in ("rgb", "thermal", "label", "subject", "split")}
    layout, modalities, label_names = reading["layout"], reading["modalities"], reading["label_names"]
    problem_type, streaming = reading["problem_type"], reading["streaming"]
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}, got {layout!r}.")
    bad: list[BadSample] = []
    source = None
    if isinstance(path_or_dataset, (datasets.Dataset, datasets.DatasetDict)) or layout == "dataset":
        source = path_or_dataset
        if not isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
            source = datasets.load_dataset(str(source))
        records, image_features = records_from_dataset(source, columns, modalities, bad, read_images=not streaming)
        source_name = "the dataset"
    else:
        # Absolute paths keep the dataset usable from any working directory.
        path = Path(path_or_dataset).absolute()
        if not path.exists():
            raise FileNotFoundError(f"`path_or_dataset` {path} does not exist.")
        source_name = str(path)
        if path.is_file():
            if layout not in ("auto", "manifest"):
                raise ValueError(f"`layout={layout!r}` needs a folder, got the file {path}.")
            layout = "manifest"
        elif layout == "auto":
            layout = detect_layout(path)
        if layout == "manifest":
            manifest = (
                path if path.is_file() else next((path / n for n in MANIFEST_NAMES if (path / n).is_file()), None)
            )
            if manifest is None:
                raise ValueError(f"Manifest layout: {path} holds none of {MANIFEST_NAMES}.")
            records, modalities = manifest_records(manifest, columns, modalities, bad)
        else:
            present = [m for m in MODALITIES if modality_present(path, m, layout)]
            modalities = resolve_modalities(modalities, present, str(path))
            scan = folder_records if layout == "folder" else ktfe_records
            records = scan(path, modalities, bad)
        image_features = {m: datasets.Value("string") for m in modalities}

    for record in records:
        record.label = parse_label_text(record.label)
    problem_type = resolve_problem_type([record.label for record in records], problem_type)
    records = check_labels_and_splits(records, bad, label_names, problem_type)
    if problem_type == "regression":
        records = check_target_counts(records, bad)
    records = check_duplicates(records, list(image_features), reading["drop_duplicates"])
    if not streaming:  # streaming checks each sample's images when it reads them
        records = check_images(records, list(image_features), reading["verify_images"], bad)
    report_bad_samples(bad, source_name, reading["skip_bad_samples"])
    if not records:
        raise ValueError(f"No usable samples in {source_name}.")
    return records, image_features, problem_type, source, source_name


def _dataset_dict(
    records: list[Record],
    indices: Mapping[str, Sequence[int]],
    image_features: Mapping[str, Any],
    has_subject: bool,
    problem_type: str | None,
) -> datasets.DatasetDict:
    features = _features(image_features, has_subject, problem_type, records)
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_list(
                [_example(records[i], _images(records[i], image_features), has_subject, problem_type)
                 for i in indices[split]],
                features=features,
            )
            for split in SPLITS
            if indices.get(split)
        }
    )


def _split_records(
    records: list[Record],
    validation_size: float,
    test_size: float,
    seed: int,
    split_by_subject: bool | None,
    problem_type: str | None,
    given_splits: str,
) -> tuple[dict[str, list[int]], bool]:
    """The record indices of each split — their given splits (`given_splits` names them in messages), the missing
    ones carved from train, by subject when `split_by_subject` (default: when subject ids exist) — and whether the
    records have subject ids."""
    subjects = [r.subject for r in records]
    has_subject = any(s is not None for s in subjects)
    if has_subject and not all(s is not None for s in subjects):
        raise ValueError(
            f"{sum(s is None for s in subjects)} of {len(records)} samples have no subject id: give every sample one "
            "or none, so a subject-wise split is possible."
        )
    if split_by_subject and not has_subject:
        raise ValueError("`split_by_subject=True` needs subject ids, and the data has none.")
    by_subject = has_subject if split_by_subject is None else split_by_subject
    given = [r.split for r in records]
    if any(s is not None for s in given) and not all(s is not None for s in given):
        raise ValueError("Some samples have a split and others none: give every sample a split or none.")

    # Augmented copies never decide a split: they follow their original into train, or are left out.
    primary = [i for i, r in enumerate(records) if not r.augmented]
    assignment = split_indices(
        [label_stratum(records[i].label, problem_type) for i in primary],
        groups=[records[i].subject for i in primary] if by_subject else None,
        given=[records[i].split for i in primary] if given[0] is not None else None,
        validation_size=validation_size,
        test_size=test_size,
        seed=seed,
    )
    indices = {split: [primary[i] for i in members] for split, members in assignment.items()}
    held_out_groups = {records[i].group for split in ("validation", "test") for i in indices.get(split, [])}
    held_out_subjects = {records[i].subject for split in ("validation", "test") for i in indices.get(split, [])}
    copies = [i for i, r in enumerate(records) if r.augmented]
    leaking = [
        i
        for i in copies
        if records[i].group in held_out_groups or (by_subject and records[i].subject in held_out_subjects)
    ]
    if leaking:
        logger.warning(
            "Left out %d augmented copies whose originals are in validation or test (they would leak them into "
            "training).",
            len(leaking),
        )
    indices.setdefault("train", []).extend(sorted(set(copies) - set(leaking)))

    if by_subject:
        # Whatever decided them (the data's own splits, a fold, vit-fer's split): no person in two splits.
        check_subject_disjoint(
            {split: [records[i].subject for i in members] for split, members in indices.items()},
            given_splits if given[0] is not None else "The split",
        )
    if problem_type is None:  # class labels (vector labels have no one class per sample)
        _report_missing_classes(records, indices)
    return indices, has_subject


def _report_missing_classes(records: list[Record], indices: Mapping[str, Sequence[int]]) -> None:
    """Warns about classes of the data that a split lacks: its recall for them is undefined, and a model selected or
    tested on it says nothing about them."""
    present = {record.label for record in records}
    for split in SPLITS:
        if indices.get(split):
            missing = sorted(present - {records[i].label for i in indices[split]}, key=FER_LABELS.index)
            if missing:
                logger.warning("The %s split has no samples of %s (%d samples; the data has these classes).",
                               split, missing, len(indices[split]))


def _features(
    image_features: Mapping[str, Any], has_subject: bool, problem_type: str | None, records: Sequence[Record]
) -> datasets.Features:
    features = dict(image_features)
    if problem_type is None:
        features["label"] = datasets.ClassLabel(names=list(FER_LABELS))
    else:  # one float per class (multi-hot, probabilities) or per regression target
        features["label"] = datasets.List(datasets.Value("float32"), length=len(records[0].label))
    if has_subject:
        features["subject"] = datasets.Value("string")
    return datasets.Features(features)


def _images(record: Record, modalities: Sequence[str]) -> dict[str, Any]:
    return {modality: getattr(record, modality) for modality in modalities}


def _example(record: Record, images: Mapping[str, Any], has_subject: bool, problem_type: str | None) -> dict:
    """One row of a split: its images, the label (a `FER_LABELS` index, or the vector) and the subject."""
    example = dict(images)
    example["label"] = FER_LABELS.index(record.label) if problem_type is None else record.label
    if has_subject:
        example["subject"] = record.subject
    return example


class SampleStream:
    """
    The generator of a streamed split (`IterableDataset.from_generator`): reads each sample's images (files, or the
    row of a `datasets` dataset), checks them as the non-streaming loader does, and yields the rows that
    `load_fer_dataset` gives without streaming. A bad sample raises `BadDataError` naming its file, or with
    `skip_bad_samples` is left out and counted by reason in a warning at the end of its shard.
    """

    def __init__(
        self,
        source: datasets.Dataset | datasets.DatasetDict | None,
        image_columns: Mapping[str, str],
        verify_images: bool,
        skip_bad_samples: bool,
        source_name: str,
        has_subject: bool,
        problem_type: str | None,
    ):
        self.parts = None
        if source is not None:  # only the image columns, undecoded: the checks and the split's features decode
            parts = source.items() if isinstance(source, datasets.DatasetDict) else [(None, source)]
            self.parts = {name: _undecoded(part.select_columns(list(image_columns.values()))) for name, part in parts}
        self.image_columns = dict(image_columns)
        self.verify_images = verify_images
        self.skip_bad_samples = skip_bad_samples
        self.source_name = source_name
        self.has_subject = has_subject
        self.problem_type = problem_type

    def split(
        self, records: list[Record], split: str, features: datasets.Features, seed: int, shuffle_buffer_size: int
    ) -> datasets.IterableDataset:
        """The `IterableDataset` of one split's `records`, in shards (so that DataLoader workers and processes can
        each take whole shards); the train split shuffled (see `load_fer_dataset`)."""
        if split == "train":  # a folder lists one class after another: no buffer would mix that
            records = [records[i] for i in np.random.default_rng(seed).permutation(len(records))]
        chunks = np.array_split(np.arange(len(records)), min(len(records), STREAM_SHARDS))
        shards = [[records[i] for i in chunk] for chunk in chunks]
        dataset = datasets.IterableDataset.from_generator(
            self, features=features, gen_kwargs={"shards": shards}, split=datasets.NamedSplit(split)
        )
        return dataset.shuffle(seed=seed, buffer_size=shuffle_buffer_size) if split == "train" else dataset

    def __call__(self, shards: list[list[Record]]):
        for shard in shards:
            bad: list[BadSample] = []
            for record in shard:
                images = self._read(record)
                missing = [modality for modality, value in images.items() if value is None]
                if missing:
                    problem = BadSample("unpaired", f"{record.where} has no {' or '.join(missing)} image")
                else:
                    problem = probe_sample(images, self.verify_images, record.where)
                if problem is not None:
                    if not self.skip_bad_samples:
                        report_bad_samples([problem], self.source_name)  # raises BadDataError naming the file
                    bad.append(problem)
                    continue
                yield _example(record, images, self.has_subject, self.problem_type)
            report_bad_samples(bad, f"{self.source_name} (a pass over {len(shard)} streamed samples)", True)

    def _read(self, record: Record) -> dict[str, Any]:
        if record.row is None:
            return _images(record, list(self.image_columns))
        name, index = record.row
        row = self.parts[name][index]
        return {modality: row[column] for modality, column in self.image_columns.items()}


def _undecoded(part: datasets.Dataset) -> datasets.Dataset:
    for column, feature in part.features.items():
        if isinstance(feature, datasets.Image):
            part = part.cast_column(column, datasets.Image(decode=False))
    return part
