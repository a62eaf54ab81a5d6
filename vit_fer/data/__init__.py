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
known, `subject`. Images are decoded lazily by the transforms of `vit_fer.transforms`. With `streaming=True` the
splits are `datasets.IterableDataset`s of the same rows, whose images are read and checked only as they are iterated.
"""

from .files import (
    LABEL_ALIASES,
    MODALITIES,
    BadDataError,
    BadSample,
    canonical_label,
    find_child_dir,
    pair_files,
    report_bad_samples,
    scan_modality_folder,
)
from .layouts import LAYOUTS, MANIFEST_NAMES
from .loading import load_fer_dataset, load_fer_folds
from .splits import LOSO, SPLITS, check_subject_disjoint, fold_indices, split_indices


__all__ = [
    "LABEL_ALIASES",
    "LAYOUTS",
    "MANIFEST_NAMES",
    "MODALITIES",
    "LOSO",
    "SPLITS",
    "BadDataError",
    "BadSample",
    "canonical_label",
    "check_subject_disjoint",
    "find_child_dir",
    "fold_indices",
    "load_fer_dataset",
    "load_fer_folds",
    "pair_files",
    "report_bad_samples",
    "scan_modality_folder",
    "split_indices",
]
