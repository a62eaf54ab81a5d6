"""
Image files and the problems found in them: scanning and pairing modality folders, label spellings, and the
report of bad samples (`BadSample`, `BadDataError`).
"""

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..thermal import is_image_file


logger = logging.getLogger(__name__)

MODALITIES = ("rgb", "thermal")

LABEL_ALIASES: dict[str, tuple[str, ...]] = {
    "angry": ("angry", "anger", "mad", "rage"),
    "disgust": ("disgust", "disgusted", "disgusting"),
    "fear": ("fear", "fearful", "afraid", "scared"),
    "happy": ("happy", "happiness", "joy", "joyful", "smile", "smiling"),
    "neutral": ("neutral", "neutrality", "calm"),
    "sad": ("sad", "sadness", "unhappy", "sorrow"),
    "surprised": ("surprised", "surprise", "surprising"),
}
"""Label spellings accepted (case-insensitively) for each of `FER_LABELS`."""

_LABEL_LOOKUP = {alias: label for label, aliases in LABEL_ALIASES.items() for alias in aliases}
_MAX_LISTED = 10


def canonical_label(name: Any) -> str | None:
    """The `FER_LABELS` entry that `name` spells (case-insensitive, usual aliases), or `None`."""
    return _LABEL_LOOKUP.get(re.sub(r"[^a-z]", "", str(name).lower()))


def label_name(label: Any, label_names: Sequence[str] | None) -> Any:
    """Integer labels (or digit strings from a CSV) through `label_names`; names pass unchanged."""
    is_integer = isinstance(label, (int, np.integer)) and not isinstance(label, bool)
    if not (is_integer or (isinstance(label, str) and label.isdigit())):
        return label
    if label_names is None:
        raise ValueError(
            f"Labels are integers (e.g. {label!r}) without names: pass `label_names` (e.g. vit_fer.FER_LABELS if "
            "they index it; train.py: --dataset_label_names angry disgust ...), or use a ClassLabel column."
        )
    index = int(label)
    return label_names[index] if 0 <= index < len(label_names) else f"#{index}"


class BadDataError(ValueError):
    """Samples that cannot be used (unpaired, unreadable, unlabelled, ...); the message lists them."""


@dataclass(frozen=True)
class BadSample:
    """One unusable sample: `problem` is its kind (e.g. "unpaired"), `detail` names the files and the cause."""

    problem: str
    detail: str


def _describe(bad: list[BadSample], source: str) -> str:
    counts = Counter(sample.problem for sample in bad)
    summary = ", ".join(f"{count} {problem}" for problem, count in counts.most_common())
    lines = [f"{len(bad)} bad samples in {source} ({summary}):"]
    lines += [f"  - {sample.problem}: {sample.detail}" for sample in bad[:_MAX_LISTED]]
    if len(bad) > _MAX_LISTED:
        lines.append(f"  ... and {len(bad) - _MAX_LISTED} more")
    return "\n".join(lines)


def report_bad_samples(bad: list[BadSample], source: str, skip_bad_samples: bool = False) -> None:
    """Raises `BadDataError` listing `bad` (the first ones and a count), or logs that they are skipped."""
    if not bad:
        return
    message = _describe(bad, source)
    if not skip_bad_samples:
        raise BadDataError(
            message + "\nFix or remove these files, or leave them out: `skip_bad_samples=True` in Python, "
            "--skip_bad_samples on the command line (train.py, vit-fer predict)."
        )
    logger.warning("Skipping %s", message)


def find_child_dir(parent: Path, name: str) -> Path | None:
    """The sub-folder of `parent` named `name` up to case, or `None`."""
    matches = [child for child in parent.iterdir() if child.is_dir() and child.name.lower() == name.lower()]
    if len(matches) > 1:
        raise ValueError(
            f"{parent} holds several folders named {name!r} up to case: {sorted(m.name for m in matches)}."
        )
    return matches[0] if matches else None


def scan_modality_folder(folder: Path, modality: str, bad: list[BadSample]) -> dict[str, Path]:
    """
    Image files below `folder`, keyed by their path relative to it without extension (the pairing key). Several
    files with one key (`a.png` and `a.jpg`) are reported in `bad`; non-image files are skipped and counted.
    """
    found: dict[str, list[Path]] = defaultdict(list)
    ignored = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if is_image_file(path, modality):
            found[path.relative_to(folder).with_suffix("").as_posix()].append(path)
        else:
            ignored += 1
    if ignored:
        logger.info("Ignored %d non-image files in %s.", ignored, folder)
    files = {}
    for key, paths in found.items():
        if len(paths) > 1:
            bad.append(BadSample("duplicate", f"{', '.join(map(str, paths))} share the name {key!r}"))
        else:
            files[key] = paths[0]
    return files


def pair_files(files: Mapping[str, Mapping[Any, Any]], bad: list[BadSample]) -> list[tuple[Any, dict[str, Any]]]:
    """
    Pairs per-modality `{key: file}` maps into `(key, {modality: file})`, sorted by key; a key missing from a
    modality is reported in `bad` as unpaired.
    """
    keys = sorted(set().union(*(set(found) for found in files.values())), key=str)
    pairs = []
    for key in keys:
        missing = [modality for modality in files if key not in files[modality]]
        if missing:
            present = [str(files[m][key]) for m in files if m not in missing]
            bad.append(BadSample("unpaired", f"{', '.join(present)} has no {' or '.join(missing)} image"))
            continue
        pairs.append((key, {modality: files[modality][key] for modality in files}))
    return pairs
