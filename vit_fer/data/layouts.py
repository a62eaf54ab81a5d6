"""
Readers of the source layouts (folder, KTFE, manifest, `datasets` dataset) into `Record`s, one per sample, and
the detection of a folder's layout.
"""

import csv
import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from ..thermal import is_image_file
from .files import (
    MODALITIES,
    BadSample,
    canonical_label,
    find_child_dir,
    label_name,
    pair_files,
    scan_modality_folder,
)
from .splits import SPLIT_LOOKUP, SPLITS


LAYOUTS = ("auto", "folder", "manifest", "ktfe", "dataset")
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")
_KTFE_NAME = re.compile(r"^(?P<aug>aug_)?(?P<modality>[RT])_(?P<emotion>[A-Za-z]+)_(?P<id>[^_]+)_(?P<source>.+)$")
_KTFE_AUGMENTED_DIRS = {"rgb": ("RgbAug", "augmented/RGB"), "thermal": ("ThermalAug", "augmented/Thermal")}


@dataclass
class Record:
    """One sample as a layout reader found it, before its label and images are checked."""

    label: str | None
    rgb: Any = None
    thermal: Any = None
    subject: str | None = None
    split: str | None = None
    # Key shared by an original capture and its augmented copies, which must not leave its split.
    group: Any = None
    augmented: bool = False
    # Where the sample was found when that is not its files (a manifest row), for messages.
    where: str | None = None
    # A dataset's (split name, row index) whose images are read when the sample is streamed.
    row: tuple[str | None, int] | None = None


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
    return {SPLIT_LOOKUP[c.name.lower()]: c for c in root.iterdir() if c.is_dir() and c.name.lower() in SPLIT_LOOKUP}


def folder_records(root: Path, modalities: Sequence[str], bad: list[BadSample]) -> list[Record]:
    """The samples of the folder layout (`root/[<split>/]<modality>/<label>/...`), paired by label and name."""
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
            Record(label=label, split=split, **{m: str(p) for m, p in paths.items()})
            for (label, _), paths in pair_files(files, bad)
        ]
    return records


def ktfe_records(root: Path, modalities: Sequence[str], bad: list[BadSample]) -> list[Record]:
    """The samples of the KTFE layout, paired by id and source; augmented copies are grouped with their original."""
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

    def make_record(key: tuple, paths: dict[str, Path]) -> Record:
        augmented, sample_id, source = key
        names = emotions[key]
        if len(names) > 1:
            bad.append(BadSample("label mismatch", f"{', '.join(map(str, paths.values()))} disagree: {sorted(names)}"))
        return Record(
            label=next(iter(names)) if len(names) == 1 else None,
            group=(sample_id, source.split("_", 1)[0]),
            augmented=augmented,
            **{m: str(p) for m, p in paths.items()},
        )

    records = [make_record(key, paths) for key, paths in pair_files(files, bad)]
    return [record for record in records if record.label is not None]


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, which would become part of the first
        # column's name (and that column be lost).
        with open(path, newline="", encoding="utf-8-sig") as file:
            return list(csv.DictReader(file))
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        with open(path, encoding="utf-8-sig") as file:
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


def manifest_records(path: Path, columns: Mapping[str, str], modalities: Sequence[str] | None, bad: list[BadSample]):
    """The rows of a CSV / JSONL manifest as samples (paths relative to the manifest), and the modalities read."""
    rows = _read_manifest(path)
    if not rows:
        raise ValueError(f"Manifest {path} has no rows.")
    present = [m for m in MODALITIES if any(_blank_to_none(row.get(columns[m])) for row in rows)]
    if columns["label"] not in rows[0]:
        raise ValueError(f"Manifest {path} has no label column {columns['label']!r}; its columns: {sorted(rows[0])}.")
    modalities = resolve_modalities(modalities, present, str(path))
    records = []
    for number, row in enumerate(rows, start=2 if path.suffix.lower() == ".csv" else 1):
        where = f"{path.name} row {number}"
        values = {m: _blank_to_none(row.get(columns[m])) for m in modalities}
        missing = [m for m, value in values.items() if value is None]
        if missing:
            bad.append(BadSample("unpaired", f"{where} has no {' or '.join(missing)} path"))
            continue
        not_paths = [f"{columns[m]} is {value!r}" for m, value in values.items() if not isinstance(value, str)]
        if not_paths:
            bad.append(BadSample("not a path", f"{where}: {', '.join(not_paths)}, not a file path"))
            continue
        resolved = {m: (path.parent / value) for m, value in values.items()}
        absent = [str(p) for p in resolved.values() if not p.is_file()]
        if absent:
            bad.append(BadSample("missing file", f"{where}: {', '.join(absent)} does not exist"))
            continue
        records.append(
            Record(
                label=_blank_to_none(row.get(columns["label"])),
                subject=_blank_to_none(row.get(columns["subject"])),
                split=_blank_to_none(row.get(columns["split"])),
                where=where,
                **{m: str(p) for m, p in resolved.items()},
            )
        )
    return records, modalities


def _blank_to_none(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value.strip() if isinstance(value, str) else value


def resolve_modalities(requested: Sequence[str] | None, present: Sequence[str], source: str) -> tuple[str, ...]:
    """The modalities to read: `requested` (checked against what `source` has), or all that are `present`."""
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


def detect_layout(root: Path) -> str:
    """Which file layout the folder `root` holds: "manifest", "folder" or "ktfe"."""
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


def modality_present(root: Path, modality: str, layout: str) -> bool:
    """Whether the folder `root` in `layout` has a folder of `modality` images."""
    bases = [root, *_split_dirs(root).values()] if layout == "folder" else [root]
    return any(find_child_dir(base, modality) is not None for base in bases)


def records_from_dataset(
    source: datasets.Dataset | datasets.DatasetDict,
    columns: Mapping[str, str],
    modalities: Sequence[str] | None,
    bad: list[BadSample],
    read_images: bool = True,
) -> tuple[list[Record], dict[str, Any]]:
    """Records of a `datasets` dataset, and the features its image columns get back in the result. Without
    `read_images` the records name their `row` instead of holding its images (streaming reads them later)."""
    parts = source.items() if isinstance(source, datasets.DatasetDict) else [(None, source)]
    records, image_features = [], None
    for split_name, dataset in parts:
        split = None
        if split_name is not None:
            split = SPLIT_LOOKUP.get(split_name.lower())
            if split is None:
                raise ValueError(f"DatasetDict split {split_name!r} is none of {SPLITS} (or their usual aliases).")
        if columns["label"] not in dataset.column_names:
            raise ValueError(
                f"The dataset has no label column {columns['label']!r}; its columns: {dataset.column_names}."
            )
        if image_features is None:
            present = [m for m in MODALITIES if columns[m] in dataset.column_names]
            chosen = resolve_modalities(modalities, present, f"the dataset (columns {dataset.column_names})")
            image_features = {m: dataset.features[columns[m]] for m in chosen}
        label_feature = dataset.features[columns["label"]]
        for modality, feature in image_features.items():
            if isinstance(feature, datasets.Image):
                # Undecoded: the checks read headers only, and the result decodes lazily.
                dataset = dataset.cast_column(columns[modality], datasets.Image(decode=False))
        # `[:]` reads a whole column at once (indexing a `Column` row by row queries the table each time).
        labels = dataset[columns["label"]][:]
        images = {m: dataset[columns[m]][:] if read_images else [None] * len(labels) for m in image_features}
        subjects = (
            dataset[columns["subject"]][:] if columns["subject"] in dataset.column_names else [None] * len(labels)
        )
        for index, label in enumerate(labels):
            if isinstance(label_feature, datasets.ClassLabel):
                label = label_name(label, label_feature.names)
            if not read_images:
                subject = None if subjects[index] is None else str(subjects[index])
                where = f"row {index} of split {split_name}" if split_name else f"row {index}"
                records.append(Record(label=label, subject=subject, split=split, where=where, row=(split_name, index)))
                continue
            missing = [m for m in image_features if images[m][index] is None]
            if missing:
                bad.append(
                    BadSample("unpaired", f"row {index} of split {split_name} has no {' or '.join(missing)} image")
                )
                continue
            subject = None if subjects[index] is None else str(subjects[index])
            records.append(
                Record(label=label, subject=subject, split=split, **{m: images[m][index] for m in image_features})
            )
    return records, image_features
