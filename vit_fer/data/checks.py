"""Checks of the records a source yields: known labels and splits, readable images, pairs of one size."""

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from typing import Any

import numpy as np
import PIL.Image

from ..configuration_vit_fer import FER_LABELS
from ..thermal import ImageFileError, probe_image_file
from .files import MODALITIES, BadSample, canonical_label, label_name
from .layouts import Record
from .splits import SPLIT_LOOKUP, SPLITS


def check_labels_and_splits(
    records: list[Record], bad: list[BadSample], label_names: Sequence[str] | None
) -> list[Record]:
    """The records whose label is one of the FER labels (aliases and class indices mapped to it) and whose split,
    if given, is a known one; the others go to `bad`."""
    kept = []
    for record in records:
        files = ", ".join(str(getattr(record, m)) for m in MODALITIES if getattr(record, m) is not None)
        if record.label is None:
            bad.append(BadSample("unknown label", f"{files}: no label (empty label, or not in a label folder)"))
            continue
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


def _image_size(value: Any, full_decode: bool) -> tuple[int, int]:
    """(width, height) of a path, an undecoded `datasets.Image` value, a PIL image or an array."""
    if isinstance(value, (str, os.PathLike)):
        return probe_image_file(value, full_decode=full_decode)
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        if value.get("bytes") is None:
            return probe_image_file(value["path"], full_decode=full_decode)
        try:
            with PIL.Image.open(BytesIO(value["bytes"])) as image:
                if full_decode:
                    image.load()
                return image.size
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageFileError(
                f"{value.get('path') or 'embedded image'}: unreadable or truncated ({error})."
            ) from error
    if isinstance(value, PIL.Image.Image):
        return value.size
    array = np.asarray(value)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        return array.shape[2], array.shape[1]
    return array.shape[1], array.shape[0]


def check_images(
    records: list[Record], modalities: Sequence[str], full_decode: bool, bad: list[BadSample]
) -> list[Record]:
    """The records whose images are readable (fully decoded with `full_decode`, headers only otherwise) and of one
    size across modalities; the others go to `bad`."""

    def probe(record: Record) -> BadSample | None:
        sizes = {}
        for modality in modalities:
            value = getattr(record, modality)
            try:
                sizes[modality] = _image_size(value, full_decode)
            except ImageFileError as error:
                return BadSample("unreadable", str(error))
        if len(set(sizes.values())) > 1:
            detail = ", ".join(
                f"{modality} {getattr(record, modality)} is {w}x{h}" for modality, (w, h) in sizes.items()
            )
            return BadSample("size mismatch", detail)
        return None

    # Decoding releases the GIL, so threads overlap the per-file work.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
        problems = list(pool.map(probe, records))
    bad += [problem for problem in problems if problem is not None]
    return [record for record, problem in zip(records, problems, strict=True) if problem is None]
