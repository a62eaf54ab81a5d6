"""Checks of the records a source yields: known labels and splits, readable images with values fit for their role,
pairs of one size, no file in two samples."""

import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from ..configuration_vit_fer import FER_LABELS
from ..thermal import ImageFileError, check_image_values, probe_image_file
from .files import MODALITIES, BadDataError, BadSample, canonical_label, label_name
from .layouts import Record
from .splits import SPLIT_LOOKUP, SPLITS
from .targets import label_vector


logger = logging.getLogger(__name__)


def check_labels_and_splits(
    records: list[Record], bad: list[BadSample], label_names: Sequence[str] | None, problem_type: str | None = None
) -> list[Record]:
    """The records whose label is one of the FER labels (aliases and class indices mapped to it) — or, for a
    `problem_type` with vector labels, a valid vector (see `vit_fer.data.targets`) — and whose split, if given, is a
    known one; the others go to `bad`."""
    kept = []
    for record in records:
        files = ", ".join(str(getattr(record, m)) for m in MODALITIES if getattr(record, m) is not None)
        files = files or str(record.where)  # a dataset row that streaming reads later
        if record.label is None:
            bad.append(BadSample("unknown label", f"{files}: no label (empty label, or not in a label folder)"))
            continue
        if problem_type is not None:
            try:
                record.label = label_vector(record.label, problem_type)
            except ValueError as error:
                bad.append(BadSample("bad label", f"{files}: {error}"))
                continue
        else:
            label = canonical_label(label_name(record.label, label_names))
            if label is None:
                bad.append(BadSample("unknown label", f"{files}: {record.label!r} is none of {FER_LABELS}"))
                continue
            record.label = label
        if record.split is not None:
            split = SPLIT_LOOKUP.get(str(record.split).lower())
            if split is None:
                bad.append(BadSample("unknown split", f"{files}: {record.split!r} is none of {SPLITS}"))
                continue
            record.split = split
        kept.append(record)
    return kept


def check_target_counts(records: list[Record], bad: list[BadSample]) -> list[Record]:
    """Regression records with as many targets as most records have; the others go to `bad`."""
    counts = [len(record.label) for record in records]
    if not counts:
        return records
    expected = max(set(counts), key=counts.count)
    for record in records:
        if len(record.label) != expected:
            files = ", ".join(str(getattr(record, m)) for m in MODALITIES if getattr(record, m) is not None)
            found = len(record.label)
            bad.append(BadSample("bad label", f"{files}: {found} regression targets, the others have {expected}"))
    return [record for record in records if len(record.label) == expected]


def _image_size(value: Any, modality: str, full_decode: bool) -> tuple[int, int]:
    """(width, height) of a path, an undecoded `datasets.Image` value, a PIL image or an array; with `full_decode`,
    after checking its values for its role (see `check_image_values`)."""
    if isinstance(value, (str, os.PathLike)):
        return probe_image_file(value, full_decode=full_decode, modality=modality)
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        if value.get("bytes") is None:
            return probe_image_file(value["path"], full_decode=full_decode, modality=modality)
        where = value.get("path") or "embedded image"
        try:
            with PIL.Image.open(BytesIO(value["bytes"])) as image:
                if full_decode:
                    image.load()
                    check_image_values(image, modality, where)
                return image.size
        except (OSError, SyntaxError, ValueError) as error:
            if isinstance(error, ImageFileError):
                raise
            raise ImageFileError(f"{where}: unreadable or truncated ({error}).") from error
    if full_decode:
        check_image_values(value, modality, "an image of the dataset")
    if isinstance(value, PIL.Image.Image):
        return value.size
    array = np.asarray(value)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        return array.shape[2], array.shape[1]
    return array.shape[1], array.shape[0]


def probe_sample(images: Mapping[str, Any], full_decode: bool, where: str | None = None) -> BadSample | None:
    """The problem of one sample's `{modality: image}` (unreadable, empty, not finite, wrong bit depth, transparency,
    size mismatch across modalities), or `None`; `where` (a manifest row) prefixes the detail."""
    sizes = {}
    for modality, value in images.items():
        try:
            sizes[modality] = _image_size(value, modality, full_decode)
        except ImageFileError as error:
            return BadSample(error.reason, _at(where, str(error)))
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{modality} {images[modality]} is {w}x{h}" for modality, (w, h) in sizes.items())
        return BadSample("size mismatch", _at(where, detail))
    return None


def check_images(
    records: list[Record], modalities: Sequence[str], full_decode: bool, bad: list[BadSample]
) -> list[Record]:
    """The records whose images are readable (fully decoded and their values checked for their role with
    `full_decode`, headers only otherwise) and of one size across modalities; the others go to `bad`, counted by
    reason (see [`probe_sample`])."""

    def probe(record: Record) -> BadSample | None:
        return probe_sample({m: getattr(record, m) for m in modalities}, full_decode, record.where)

    # Decoding releases the GIL, so threads overlap the per-file work.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
        problems = list(pool.map(probe, records))
    bad += [problem for problem in problems if problem is not None]
    return [record for record, problem in zip(records, problems, strict=True) if problem is None]


def _at(where: str | None, detail: str) -> str:
    return f"{where}: {detail}" if where else detail


def _describe_record(record: Record) -> str:
    files = ", ".join(str(getattr(record, m)) for m in MODALITIES if getattr(record, m) is not None)
    return record.where or files


def check_duplicates(records: list[Record], modalities: Sequence[str], drop_duplicates: bool) -> list[Record]:
    """
    The records without repeats: a sample whose file (of any modality) an earlier sample already has — a repeated
    manifest row, or one file paired twice — could land in train and in test. Refused (`BadDataError` with the
    count, how many of them in another split, and examples), or with `drop_duplicates` left out with a warning and
    the count, keeping the first of each.
    """
    first: dict[tuple[str, str], Record] = {}
    kept, repeats = [], []
    for record in records:
        files = [
            (modality, str(Path(getattr(record, modality)).resolve()))
            for modality in modalities
            if isinstance(getattr(record, modality), (str, os.PathLike))
        ]
        earlier = next((first[file] for file in files if file in first), None)
        if earlier is not None:
            repeats.append((record, earlier))
            continue
        first.update(dict.fromkeys(files, record))
        kept.append(record)
    if not repeats:
        return kept
    across = sum(record.split != earlier.split for record, earlier in repeats)
    examples = "; ".join(f"{_describe_record(r)} repeats {_describe_record(e)}" for r, e in repeats[:3])
    summary = (
        f"{len(repeats)} samples repeat a file of an earlier sample ({across} of them given another split), e.g. "
        f"{examples}"
    )
    if not drop_duplicates:
        raise BadDataError(
            f"{summary}. A repeated file can land in both train and test. Remove the repeats, or pass "
            "`drop_duplicates=True` (train.py --drop_duplicates) to keep the first of each."
        )
    logger.warning("Dropped %s.", summary)
    return kept
