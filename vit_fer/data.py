"""Loading users' RGB + thermal FER data into a `datasets.DatasetDict`, with checked pairs and leak-free splits.

Supported sources (`layout=`):

- `"folder"`: `root/rgb/<label>/<name>.*` beside `root/thermal/<label>/<name>.*`, paired by label and name
  (sub-folders below the label are allowed and part of the name). Optional split folders:
  `root/<split>/rgb/<label>/...` with `<split>` among train / validation (val, valid, dev) / test.
- `"manifest"`: a CSV or JSONL file (or a folder holding `manifest.csv` / `manifest.jsonl`) with one row per
  sample: RGB path, thermal path, label, optional subject, optional split. Paths are relative to the manifest.
- `"ktfe"`: the original implementation's layout, `root/RGB/R_<Emotion>_<id>_<source>.<ext>` beside
  `root/Thermal/T_<Emotion>_<id>_<source>.<ext>`, paired by id and source. Augmented copies (folders
  `RgbAug`/`ThermalAug` or `augmented/RGB`/`augmented/Thermal`, or names starting with `aug_`) go to the training
  split only, and only when their original is there too: a copy of a test image would leak it into training.
- `"dataset"`: a `datasets.Dataset`/`DatasetDict` (or a name for `datasets.load_dataset`) with image columns.

The result has columns `rgb` and/or `thermal` (file paths for the file layouts, the dataset's own image values
otherwise; a column exists only for a modality the data has), `label` (a `ClassLabel` of `FER_LABELS`) and, when
known, `subject`. Images are decoded lazily by the transforms of `vit_fer.transforms`.
"""

import csv
import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image

from .configuration_vit_fer import FER_LABELS
from .thermal import ImageFileError, is_image_file, probe_image_file


logger = logging.getLogger(__name__)

MODALITIES = ("rgb", "thermal")
SPLITS = ("train", "validation", "test")
LAYOUTS = ("auto", "folder", "manifest", "ktfe", "dataset")
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")

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
_SPLIT_LOOKUP = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
_KTFE_NAME = re.compile(r"^(?P<aug>aug_)?(?P<modality>[RT])_(?P<emotion>[A-Za-z]+)_(?P<id>[^_]+)_(?P<source>.+)$")
_KTFE_AUGMENTED_DIRS = {"rgb": ("RgbAug", "augmented/RGB"), "thermal": ("ThermalAug", "augmented/Thermal")}
_MAX_LISTED = 10


def canonical_label(name: Any) -> str | None:
    """The `FER_LABELS` entry that `name` spells (case-insensitive, usual aliases), or `None`."""
    return _LABEL_LOOKUP.get(re.sub(r"[^a-z]", "", str(name).lower()))


class BadDataError(ValueError):
    """Samples that cannot be used (unpaired, unreadable, unlabelled, ...); the message lists them."""


@dataclass(frozen=True)
class BadSample:
    """One unusable sample: `problem` is its kind (e.g. "unpaired"), `detail` names the files and the cause."""

    problem: str
    detail: str


@dataclass
class _Record:
    label: str | None
    rgb: Any = None
    thermal: Any = None
    subject: str | None = None
    split: str | None = None
    # Key shared by an original capture and its augmented copies, which must not leave its split.
    group: Any = None
    augmented: bool = False


def _describe(bad: list[BadSample], source: str) -> str:
    counts = Counter(sample.problem for sample in bad)
    summary = ", ".join(f"{count} {problem}" for problem, count in counts.most_common())
    lines = [f"{len(bad)} bad samples in {source} ({summary}):"]
    lines += [f"  - {sample.problem}: {sample.detail}" for sample in bad[:_MAX_LISTED]]
    if len(bad) > _MAX_LISTED:
        lines.append(f"  ... and {len(bad) - _MAX_LISTED} more")
    return "\n".join(lines)


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


def _label_keyed(files: Mapping[str, Path], bad: list[BadSample]) -> dict[tuple[str | None, str], Path]:
    """Re-keys `label/name` files by (label, name), the label spelt canonically where known, so that
    `rgb/Surprise/x.jpg` pairs with `thermal/surprised/x.png`. Files outside a label folder get label `None`."""
    keyed = {}
    for key, path in files.items():
        folder, _, name = key.partition("/")
        label_key = (canonical_label(folder) or folder, name) if name else (None, key)
        if label_key in keyed:
            bad.append(BadSample("duplicate", f"{keyed[label_key]} and {path} are one label and name"))
            continue
        keyed[label_key] = path
    return keyed


def _split_dirs(root: Path) -> dict[str, Path]:
    """The split folders of a folder layout (train / validation / test, usual aliases, any case)."""
    return {_SPLIT_LOOKUP[c.name.lower()]: c for c in root.iterdir() if c.is_dir() and c.name.lower() in _SPLIT_LOOKUP}


def _folder_records(root: Path, modalities: Sequence[str], bad: list[BadSample]) -> list[_Record]:
    split_dirs = _split_dirs(root)
    parts = split_dirs.items() if split_dirs else [(None, root)]
    records = []
    for split, base in parts:
        files = {}
        for modality in modalities:
            folder = find_child_dir(base, modality)
            if folder is None:
                raise ValueError(
                    f"Folder layout: {base} has no {modality!r} folder (expected {base}/{modality}/<label>/)."
                )
            files[modality] = _label_keyed(scan_modality_folder(folder, modality, bad), bad)
        records += [
            _Record(label=label, split=split, **{m: str(p) for m, p in paths.items()})
            for (label, _), paths in pair_files(files, bad)
        ]
    return records


def _ktfe_records(root: Path, modalities: Sequence[str], bad: list[BadSample]) -> list[_Record]:
    files: dict[str, dict[tuple, Path]] = {}
    emotions: dict[tuple, set[str]] = defaultdict(set)
    for modality in modalities:
        folders = [(find_child_dir(root, modality), False)]
        for relative in _KTFE_AUGMENTED_DIRS[modality]:
            candidate = root / relative
            if candidate.is_dir():
                folders.append((candidate, True))
        if folders[0][0] is None:
            raise ValueError(f"KTFE layout: {root} has no {'RGB' if modality == 'rgb' else 'Thermal'} folder.")
        files[modality] = {}
        prefix = "R" if modality == "rgb" else "T"
        for folder, augmented_folder in folders:
            for path in sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p, modality)):
                match = _KTFE_NAME.match(path.stem)
                if match is None or match["modality"] != prefix:
                    bad.append(BadSample("bad name", f"{path} does not follow {prefix}_<Emotion>_<id>_<source>.<ext>"))
                    continue
                key = (augmented_folder or bool(match["aug"]), match["id"], match["source"])
                if key in files[modality]:
                    bad.append(BadSample("duplicate", f"{files[modality][key]} and {path} share id and source"))
                    continue
                files[modality][key] = path
                emotions[key].add(match["emotion"])

    def make_record(key: tuple, paths: dict[str, Path]) -> _Record:
        augmented, sample_id, source = key
        names = emotions[key]
        if len(names) > 1:
            bad.append(BadSample("label mismatch", f"{', '.join(map(str, paths.values()))} disagree: {sorted(names)}"))
        return _Record(
            label=next(iter(names)) if len(names) == 1 else None,
            group=(sample_id, source.split("_", 1)[0]),
            augmented=augmented,
            **{m: str(p) for m, p in paths.items()},
        )

    records = [make_record(key, paths) for key, paths in pair_files(files, bad)]
    return [record for record in records if record.label is not None]


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as file:
            return list(csv.DictReader(file))
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        with open(path) as file:
            for number, line in enumerate(file, start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise ValueError(f"{path}:{number} is not a JSON object ({error}).") from error
                    if not isinstance(row, dict):
                        raise ValueError(f"{path}:{number} is not a JSON object (JSON Lines: one object per line).")
                    rows.append(row)
        return rows
    raise ValueError(f"A manifest must be a .csv or .jsonl file, got {path}.")


def _manifest_records(path: Path, columns: Mapping[str, str], modalities: Sequence[str] | None, bad: list[BadSample]):
    rows = _read_manifest(path)
    if not rows:
        raise ValueError(f"Manifest {path} has no rows.")
    present = [m for m in MODALITIES if any(_blank_to_none(row.get(columns[m])) for row in rows)]
    if columns["label"] not in rows[0]:
        raise ValueError(f"Manifest {path} has no label column {columns['label']!r}; its columns: {sorted(rows[0])}.")
    modalities = _resolve_modalities(modalities, present, str(path))
    records = []
    for number, row in enumerate(rows, start=2 if path.suffix.lower() == ".csv" else 1):
        where = f"{path.name} row {number}"
        values = {m: _blank_to_none(row.get(columns[m])) for m in modalities}
        missing = [m for m, value in values.items() if value is None]
        if missing:
            bad.append(BadSample("unpaired", f"{where} has no {' or '.join(missing)} path"))
            continue
        resolved = {m: (path.parent / value) for m, value in values.items()}
        absent = [str(p) for p in resolved.values() if not p.is_file()]
        if absent:
            bad.append(BadSample("missing file", f"{where}: {', '.join(absent)} does not exist"))
            continue
        records.append(
            _Record(
                label=_blank_to_none(row.get(columns["label"])),
                subject=_blank_to_none(row.get(columns["subject"])),
                split=_blank_to_none(row.get(columns["split"])),
                **{m: str(p) for m, p in resolved.items()},
            )
        )
    return records, modalities


def _blank_to_none(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value.strip() if isinstance(value, str) else value


def _resolve_modalities(requested: Sequence[str] | None, present: Sequence[str], source: str) -> tuple[str, ...]:
    if requested is None:
        if not present:
            raise ValueError(f"{source} holds neither RGB nor thermal images.")
        return tuple(present)
    requested = tuple(requested)
    unknown = [m for m in requested if m not in MODALITIES]
    if unknown or not requested:
        raise ValueError(f"`modalities` must be a non-empty subset of {MODALITIES}, got {requested}.")
    absent = [m for m in requested if m not in present]
    if absent:
        raise ValueError(f"`modalities` asks for {absent}, but {source} has only {list(present)}.")
    return tuple(m for m in MODALITIES if m in requested)


def _label_name(label: Any, label_names: Sequence[str] | None) -> Any:
    """Integer labels (or digit strings from a CSV) through `label_names`; names pass unchanged."""
    is_integer = isinstance(label, (int, np.integer)) and not isinstance(label, bool)
    if not (is_integer or (isinstance(label, str) and label.isdigit())):
        return label
    if label_names is None:
        raise ValueError(
            f"Labels are integers (e.g. {label!r}) without names: pass `label_names` (e.g. vit_fer.FER_LABELS if "
            "they index it), or use a ClassLabel column."
        )
    index = int(label)
    return label_names[index] if 0 <= index < len(label_names) else f"#{index}"


def _check_labels_and_splits(
    records: list[_Record], bad: list[BadSample], label_names: Sequence[str] | None
) -> list[_Record]:
    kept = []
    for record in records:
        files = ", ".join(str(getattr(record, m)) for m in MODALITIES if getattr(record, m) is not None)
        if record.label is None:
            bad.append(BadSample("unknown label", f"{files}: no label (empty label, or not in a label folder)"))
            continue
        label = canonical_label(_label_name(record.label, label_names))
        if label is None:
            bad.append(BadSample("unknown label", f"{files}: {record.label!r} is none of {FER_LABELS}"))
            continue
        record.label = label
        if record.split is not None:
            split = _SPLIT_LOOKUP.get(str(record.split).lower())
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


def _check_images(
    records: list[_Record], modalities: Sequence[str], full_decode: bool, bad: list[BadSample]
) -> list[_Record]:
    def probe(record: _Record) -> BadSample | None:
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


def report_bad_samples(bad: list[BadSample], source: str, skip_bad_samples: bool = False) -> None:
    """Raises `BadDataError` listing `bad` (the first ones and a count), or logs that they are skipped."""
    if not bad:
        return
    message = _describe(bad, source)
    if not skip_bad_samples:
        raise BadDataError(message + "\nFix or remove these files, or pass `skip_bad_samples=True` to leave them out.")
    logger.warning("Skipping %s", message)


def _detect_layout(root: Path) -> str:
    if any((root / name).is_file() for name in MANIFEST_NAMES):
        return "manifest"
    for base in [root, *_split_dirs(root).values()]:
        for modality in MODALITIES:
            folder = find_child_dir(base, modality)
            if folder is None:
                continue
            children = list(folder.iterdir())
            if any(c.is_dir() for c in children):
                return "folder"
            if any(c.is_file() and _KTFE_NAME.match(c.stem) for c in children):
                return "ktfe"
    raise ValueError(
        f"Cannot tell the layout of {root}: expected {'/'.join(MANIFEST_NAMES)}, rgb|thermal/<label>/<files> "
        "(folder layout) or RGB|Thermal/R_|T_<Emotion>_<id>_<source>.<ext> (KTFE layout); pass `layout=`."
    )


def _dataset_from_records(
    records: list[_Record], image_features: Mapping[str, Any], has_subject: bool
) -> datasets.Dataset:
    columns: dict[str, list] = {m: [getattr(r, m) for r in records] for m in image_features}
    features = dict(image_features)
    columns["label"] = [FER_LABELS.index(r.label) for r in records]
    features["label"] = datasets.ClassLabel(names=list(FER_LABELS))
    if has_subject:
        columns["subject"] = [r.subject for r in records]
        features["subject"] = datasets.Value("string")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def _records_from_dataset(
    source: datasets.Dataset | datasets.DatasetDict,
    columns: Mapping[str, str],
    modalities: Sequence[str] | None,
    bad: list[BadSample],
) -> tuple[list[_Record], dict[str, Any]]:
    """Records of a `datasets` dataset, and the features its image columns get back in the result."""
    parts = source.items() if isinstance(source, datasets.DatasetDict) else [(None, source)]
    records, image_features = [], None
    for split_name, dataset in parts:
        split = None
        if split_name is not None:
            split = _SPLIT_LOOKUP.get(split_name.lower())
            if split is None:
                raise ValueError(f"DatasetDict split {split_name!r} is none of {SPLITS} (or their usual aliases).")
        if columns["label"] not in dataset.column_names:
            raise ValueError(
                f"The dataset has no label column {columns['label']!r}; its columns: {dataset.column_names}."
            )
        if image_features is None:
            present = [m for m in MODALITIES if columns[m] in dataset.column_names]
            chosen = _resolve_modalities(modalities, present, f"the dataset (columns {dataset.column_names})")
            image_features = {m: dataset.features[columns[m]] for m in chosen}
        label_feature = dataset.features[columns["label"]]
        for modality, feature in image_features.items():
            if isinstance(feature, datasets.Image):
                # Undecoded: the checks read headers only, and the result decodes lazily.
                dataset = dataset.cast_column(columns[modality], datasets.Image(decode=False))
        # `[:]` reads a whole column at once (indexing a `Column` row by row queries the table each time).
        images = {m: dataset[columns[m]][:] for m in image_features}
        labels = dataset[columns["label"]][:]
        subjects = (
            dataset[columns["subject"]][:] if columns["subject"] in dataset.column_names else [None] * len(labels)
        )
        for index, label in enumerate(labels):
            if isinstance(label_feature, datasets.ClassLabel):
                label = _label_name(label, label_feature.names)
            missing = [m for m in image_features if images[m][index] is None]
            if missing:
                bad.append(
                    BadSample("unpaired", f"row {index} of split {split_name} has no {' or '.join(missing)} image")
                )
                continue
            subject = None if subjects[index] is None else str(subjects[index])
            records.append(
                _Record(label=label, subject=subject, split=split, **{m: images[m][index] for m in image_features})
            )
    return records, image_features


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
    validation_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
    split_by_subject: bool | None = None,
    skip_bad_samples: bool = False,
    verify_images: bool = True,
) -> datasets.DatasetDict:
    """
    Loads RGB, thermal or paired RGB + thermal FER data into a `DatasetDict` with splits train / validation /
    test (a split is left out when it would be empty).

    Args:
        path_or_dataset (`str`, `os.PathLike`, `datasets.Dataset` or `datasets.DatasetDict`):
            A folder (folder, manifest or KTFE layout), a manifest file, a dataset, or a dataset name for
            `datasets.load_dataset` (with `layout="dataset"`).
        layout (`str`, *optional*, defaults to `"auto"`):
            One of `"auto"`, `"folder"`, `"manifest"`, `"ktfe"`, `"dataset"` (see the module docstring). `"auto"`
            picks the manifest when a folder holds `manifest.csv`/`manifest.jsonl`.
        rgb_column, thermal_column, label_column, subject_column, split_column (`str`, *optional*):
            Column names in manifests and datasets.
        modalities (`Sequence[str]`, *optional*):
            Modalities to load (`("rgb",)`, `("thermal",)` or both); defaults to every modality the data has.
            Files of a modality not loaded are not read and need no partner.
        label_names (`Sequence[str]`, *optional*):
            Names of integer labels (in manifests, or in a dataset label column that is not a `ClassLabel`).
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
            Leave out bad samples (unpaired, unreadable or truncated files, unknown labels, pairs of different
            sizes) with a logged count, instead of raising `BadDataError` listing them.
        verify_images (`bool`, *optional*, defaults to `True`):
            Decode every image once to catch truncated files; `False` reads only headers (faster, and still checks
            that the files open and that pairs have equal sizes).

    Returns:
        `datasets.DatasetDict`
    """
    columns = {
        "rgb": rgb_column,
        "thermal": thermal_column,
        "label": label_column,
        "subject": subject_column,
        "split": split_column,
    }
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}, got {layout!r}.")
    bad: list[BadSample] = []
    if isinstance(path_or_dataset, (datasets.Dataset, datasets.DatasetDict)) or layout == "dataset":
        source = path_or_dataset
        if not isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
            source = datasets.load_dataset(str(source))
        records, image_features = _records_from_dataset(source, columns, modalities, bad)
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
            layout = _detect_layout(path)
        if layout == "manifest":
            manifest = (
                path if path.is_file() else next((path / n for n in MANIFEST_NAMES if (path / n).is_file()), None)
            )
            if manifest is None:
                raise ValueError(f"Manifest layout: {path} holds none of {MANIFEST_NAMES}.")
            records, modalities = _manifest_records(manifest, columns, modalities, bad)
        else:
            present = [m for m in MODALITIES if _modality_present(path, m, layout)]
            modalities = _resolve_modalities(modalities, present, str(path))
            scan = _folder_records if layout == "folder" else _ktfe_records
            records = scan(path, modalities, bad)
        image_features = {m: datasets.Value("string") for m in modalities}

    records = _check_labels_and_splits(records, bad, label_names)
    records = _check_images(records, list(image_features), verify_images, bad)
    report_bad_samples(bad, source_name, skip_bad_samples)
    if not records:
        raise ValueError(f"No usable samples in {source_name}.")
    return _split_records(records, image_features, validation_size, test_size, seed, split_by_subject)


def _modality_present(root: Path, modality: str, layout: str) -> bool:
    bases = [root, *_split_dirs(root).values()] if layout == "folder" else [root]
    return any(find_child_dir(base, modality) is not None for base in bases)


def _split_records(
    records: list[_Record],
    image_features: Mapping[str, Any],
    validation_size: float,
    test_size: float,
    seed: int,
    split_by_subject: bool | None,
) -> datasets.DatasetDict:
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
        [FER_LABELS.index(records[i].label) for i in primary],
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

    if by_subject and given[0] is not None:
        train_subjects = {records[i].subject for i in indices.get("train", [])}
        overlap = train_subjects & held_out_subjects
        if overlap:
            logger.warning("The given splits share %d subjects between train and validation/test.", len(overlap))
    return datasets.DatasetDict(
        {
            split: _dataset_from_records([records[i] for i in indices[split]], image_features, has_subject)
            for split in SPLITS
            if indices.get(split)
        }
    )
