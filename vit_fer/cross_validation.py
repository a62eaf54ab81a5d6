"""Cross-validation of a training run: the same training, with the same settings and seed, on each fold of
subject-disjoint folds (`vit_fer.data.load_fer_folds`), and a summary of the folds' test scores as mean ± std, the
field's protocol on small FER datasets (one split of a few tens of subjects says little).

The run's output folder holds one complete run folder per fold (`fold-1`, `fold-2`, ...: model, card, plots, results,
each tested on its fold's subjects only) and the summary: `cv_results.json`, `README.md` (a table per fold and mean ±
std) and `cv_results.png`. Each fold's `cross_validation.json` records which subjects it tested, and, once every fold
has run, the summary, which that fold's model card then reports.

The output folder's rules (`vit_fer.output_dir`) apply to the whole run: one run at a time holds it;
`--overwrite_output_dir` starts every fold afresh; `--resume_from_checkpoint true` continues an interrupted run,
reusing the folds that finished (logged) and resuming the interrupted one from its last checkpoint.
"""

import contextlib
import copy
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import datasets
import numpy as np

from .data.splits import LOSO
from .model_card import CROSS_VALIDATION_NAME, write_model_card
from .output_dir import OutputDirError, OutputDirLock, check_overwritable, hold_output_dir, remove_paths, run_files
from .plots import plot_cross_validation


logger = logging.getLogger(__name__)

RESULTS_NAME = "cv_results.json"
SUMMARY_NAME = "README.md"
PLOT_NAME = "cv_results.png"
FOLD_NAME = CROSS_VALIDATION_NAME
# (key of all_results.json without its split prefix, name in tables): those present in every fold are summarised.
SCORES = (
    ("accuracy", "accuracy"),
    ("macro_f1", "macro-F1"),
    ("uar", "UAR"),
    ("mAP", "mAP"),
    ("rmse", "RMSE"),
    ("ccc", "CCC"),
)


def parse_num_folds(value: str | int) -> int | str:
    """`--cross_validation`'s value: a number of folds (at least 2) or `"loso"`. Raises `ValueError` naming it."""
    text = str(value).strip().lower()
    if text == LOSO:
        return LOSO
    if text.isdigit() and int(text) >= 2:
        return int(text)
    raise ValueError(
        f"--cross_validation must be a number of folds (2 or more, e.g. 5) or {LOSO!r} (leave one subject out), "
        f"got {value!r}."
    )


def check_cross_validation_arguments(value: str | int, training_args) -> int | str:
    """Checks `--cross_validation` and the options it cannot go with, before anything is built; returns the number
    of folds (or `"loso"`)."""
    num_folds = parse_num_folds(value)
    # One repository, one Space: a cross-validation trains one model per fold.
    for name in ("push_to_hub", "write_space"):
        if getattr(training_args, name):
            raise ValueError(
                f"--{name} publishes one model, and --cross_validation trains one per fold: cross-validate "
                f"without --{name}, then train the model to publish without --cross_validation."
            )
    return num_folds


def fold_dir(output_dir: str | os.PathLike, number: int) -> Path:
    """The folder of fold `number` (counted from 1)."""
    return Path(output_dir) / f"fold-{number}"


def describe_scheme(folds: Sequence[datasets.DatasetDict], num_folds: int | str) -> str:
    """The cross-validation in words, e.g. "5-fold, subject-grouped, stratified by label (40 subjects)"."""
    subjects = {
        subject for fold in folds if "subject" in fold["test"].column_names for subject in fold["test"]["subject"]
    }
    if num_folds == LOSO:
        return f"leave-one-subject-out ({len(folds)} subjects, one fold each)"
    if not subjects:
        return f"{num_folds}-fold, image-level (the data has no subject ids), stratified by label"
    return f"{num_folds}-fold, subject-grouped, stratified by label ({len(subjects)} subjects)"


def _fold_record(number: int, fold: datasets.DatasetDict, scheme: str, num_folds: int) -> dict:
    test = fold["test"]
    return {
        "scheme": scheme,
        "fold": number,
        "num_folds": num_folds,
        "test_subjects": sorted(set(test["subject"])) if "subject" in test.column_names else None,
        "num_samples": {split: len(part) for split, part in fold.items()},
    }


def _finished(folder: Path, expected: dict) -> bool:
    """Whether `folder` holds a finished run of the fold `expected` describes. A folder holding another
    cross-validation's fold (other subjects, another number of folds), finished or not, is an error: its results
    and checkpoints must not be mixed in."""
    path = folder / FOLD_NAME
    if not path.is_file():
        return False
    recorded = json.loads(path.read_text())
    keys = ("scheme", "fold", "num_folds", "test_subjects", "num_samples")
    if any(recorded.get(key) != expected[key] for key in keys):
        raise OutputDirError(
            f"{folder} holds fold {recorded.get('fold')} of another cross-validation ({recorded.get('scheme')}; test "
            f"subjects {recorded.get('test_subjects')}), not fold {expected['fold']} of this one "
            f"({expected['scheme']}; test subjects {expected['test_subjects']}): the data, --seed or --cross_validation "
            "changed. Start afresh with --overwrite_output_dir, or choose another --output_dir."
        )
    return bool(recorded.get("finished")) and (folder / "all_results.json").is_file()


def _write_json(path: Path, value: dict) -> None:
    # Whole or not at all (written beside, then renamed): the other processes of a run read it meanwhile.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=2))
    os.replace(partial, path)


def _earlier_folds(output_dir: Path) -> list[Path]:
    return sorted(
        (path for path in output_dir.glob("fold-*") if path.is_dir() and run_files(path)), key=lambda path: path.name
    )


def _prepare(training_args, protected: Iterable[str | os.PathLike], num_folds: int, main: bool) -> bool:
    """Checks the run's folder against `--resume_from_checkpoint` / `--overwrite_output_dir` and, in the main
    process, clears what an overwrite removes. Returns whether an earlier run is continued."""
    output_dir = Path(training_args.output_dir)
    earlier = _earlier_folds(output_dir)
    resume = training_args.resume_from_checkpoint
    resume = None if resume is None else str(resume).strip().lower()
    if resume in ("true", "yes", "1"):
        if not earlier:
            raise OutputDirError(
                f"--resume_from_checkpoint true: {output_dir} holds no fold of an earlier cross-validation run to "
                "continue (start without it)."
            )
        return True
    if resume not in (None, "false", "no", "0"):
        raise ValueError(
            "--resume_from_checkpoint with --cross_validation is `true` (continue the interrupted run: finished "
            f"folds are reused, the interrupted one resumes from its last checkpoint) or unset, got {resume!r}."
        )
    if training_args.overwrite_output_dir:
        check_overwritable(output_dir, protected)
        if main:
            # The summary, and the folds beyond this run's; each of its folds' folders is cleared by its own run.
            folds = {fold_dir(output_dir, number).name for number in range(1, num_folds + 1)}
            stale = [path for path in earlier if path.name not in folds]
            remove_paths([*run_files(output_dir), *(file for path in stale for file in run_files(path))])
        return False
    if earlier or any(path.is_dir() for path in run_files(output_dir)):
        raise OutputDirError(
            f"{output_dir} holds an earlier run ({', '.join(path.name for path in earlier) or 'checkpoints'}). "
            "Continue it with --resume_from_checkpoint true (finished folds are reused), start afresh with "
            "--overwrite_output_dir (deletes that run's files, nothing else), or choose another --output_dir."
        )
    return False


def run_cross_validation(
    folds: Sequence[datasets.DatasetDict],
    train_fold: Callable[[datasets.DatasetDict, object], dict],
    training_args,
    num_folds: int | str,
    protected: Iterable[str | os.PathLike] = (),
) -> dict:
    """
    Trains and tests on every fold, each in its own folder under `training_args.output_dir`, and writes the
    summary (see the module docstring).

    Args:
        folds (`Sequence[datasets.DatasetDict]`): The folds, from `vit_fer.data.load_fer_folds`.
        train_fold (`Callable`): Trains and evaluates one fold: `train_fold(dataset, fold_training_args)` with the
            run's training arguments pointed at the fold's folder; it writes a complete run folder there
            (`all_results.json` with the `test_*` metrics, model card, ...).
        training_args ([`FERTrainingArguments`]): The run's arguments; `output_dir` is the run's folder.
        num_folds (`int` or `"loso"`): What was asked (`--cross_validation`).
        protected: Paths `--overwrite_output_dir` must never touch (the data).

    Returns:
        The summary written to `cv_results.json`.
    """
    output_dir, protected = Path(training_args.output_dir), list(protected)
    scheme = describe_scheme(folds, num_folds)
    main = training_args.process_index == 0
    with OutputDirLock(output_dir) if main else contextlib.nullcontext():
        with training_args.main_process_first(local=False, desc="preparing the output folder"):
            resuming = _prepare(training_args, protected, len(folds), main)
        logger.info("Cross-validation: %s, into %s.", scheme, output_dir)
        for number, fold in enumerate(folds, start=1):
            folder = fold_dir(output_dir, number)
            expected = _fold_record(number, fold, scheme, len(folds))
            if resuming and _finished(folder, expected):
                logger.info("Fold %d of %d: finished by an earlier run, reused (%s).", number, len(folds), folder)
                continue
            tested = expected["test_subjects"]
            logger.info(
                "Fold %d of %d: training on %d samples, testing on %d%s.", number, len(folds), len(fold["train"]),
                len(fold["test"]), f" (subjects {', '.join(tested)})" if tested else "",
            )  # fmt: skip
            fold_args = copy.deepcopy(training_args)
            fold_args.output_dir = str(folder)
            fold_args.resume_from_checkpoint = "true" if resuming and any(folder.glob("checkpoint-*")) else None
            with hold_output_dir(fold_args, protected=protected):
                # Recorded first, so that resuming knows whose checkpoints the folder holds.
                if main:
                    _write_json(folder / FOLD_NAME, {**expected, "finished": False})
                train_fold(fold, fold_args)
            if main:
                _write_json(folder / FOLD_NAME, {**expected, "finished": True})
        return summarise(output_dir, len(folds)) if main else {}


def summarise(output_dir: str | os.PathLike, num_folds: int) -> dict:
    """
    Writes the summary of the finished folds `fold-1` ... `fold-{num_folds}` of `output_dir`: `cv_results.json`
    (each fold's test scores, read from its `all_results.json`, and their mean and sample standard deviation),
    `README.md` with the table, `cv_results.png`; and records the summary in each fold's `cross_validation.json`
    and model card. Returns the summary.
    """
    output_dir = Path(output_dir)
    folders = [fold_dir(output_dir, number) for number in range(1, num_folds + 1)]
    records = [json.loads((folder / FOLD_NAME).read_text()) for folder in folders]
    results = [json.loads((folder / "all_results.json").read_text()) for folder in folders]
    scores = [(key, name) for key, name in SCORES if all(f"test_{key}" in result for result in results)]
    per_fold = [
        {
            "fold": record["fold"],
            "folder": folder.name,
            "test_subjects": record["test_subjects"],
            "num_test_samples": record["num_samples"]["test"],
            **{key: result[f"test_{key}"] for key, _ in scores},
        }
        for folder, record, result in zip(folders, records, results, strict=True)
    ]
    # The sample standard deviation across folds (ddof=1), as the field reports it; undefined for one fold.
    summary = {
        key: {
            "mean": float(np.mean([fold[key] for fold in per_fold])),
            "std": float(np.std([fold[key] for fold in per_fold], ddof=1)) if len(per_fold) > 1 else math.nan,
        }
        for key, _ in scores
    }
    cv_results = {"scheme": records[0]["scheme"], "num_folds": num_folds, "folds": per_fold, "summary": summary}
    (output_dir / RESULTS_NAME).write_text(json.dumps(cv_results, indent=2))
    names = dict(scores)
    loso = records[0]["scheme"].startswith("leave-one-subject-out")
    labels = json.loads((folders[0] / "config.json").read_text())["id2label"]
    plot_cross_validation(
        [" ".join(fold["test_subjects"]) if loso else f"fold {fold['fold']}" for fold in per_fold],
        {names[key]: [fold[key] for fold in per_fold] for key, _ in scores},
        output_dir / PLOT_NAME,
        title=f"{output_dir.name}, test scores per fold\n{cv_results['scheme']}",
        chance=1 / len(labels) if "accuracy" in names else None,
    )
    (output_dir / SUMMARY_NAME).write_text(summary_markdown(cv_results, output_dir))
    for folder, record in zip(folders, records, strict=True):
        _write_json(folder / FOLD_NAME, {**record, "summary": summary})
        write_model_card(folder)
    logger.info("Cross-validation summary in %s: %s", output_dir / RESULTS_NAME, format_summary(summary, names))
    return cv_results


def format_summary(summary: dict, names: dict[str, str]) -> str:
    return ", ".join(f"{names.get(key, key)} {value['mean']:.3f} ± {value['std']:.3f}" for key, value in summary.items())


def score_table(cv_results: dict) -> str:
    """The markdown table of the folds' test scores and their mean ± std."""
    names = dict(SCORES)
    keys = list(cv_results["summary"])
    subjects = any(fold["test_subjects"] for fold in cv_results["folds"])
    header = ["fold", *(["test subjects"] if subjects else []), "test samples", *(names[key] for key in keys)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for fold in cv_results["folds"]:
        cells = [f"[{fold['fold']}]({fold['folder']}/)"]
        if subjects:
            cells.append(", ".join(fold["test_subjects"]))
        cells += [str(fold["num_test_samples"]), *(f"{fold[key]:.3f}" for key in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    mean = [f"**{value['mean']:.3f} ± {value['std']:.3f}**" for value in cv_results["summary"].values()]
    lines.append("| " + " | ".join(["**mean ± std**", *([""] if subjects else []), "", *mean]) + " |")
    return "\n".join(lines)


def summary_markdown(cv_results: dict, output_dir: Path) -> str:
    return f"""# Cross-validation: {output_dir.name}

{cv_results['scheme']}. Each fold is a complete training run in its own folder (model, model card, plots,
`all_results.json`), trained with the same settings and seed, its model chosen on a validation split carved from
the other folds and tested on its fold only. Scores on each fold's test split; mean ± sample standard deviation
across folds. Every number is in [`{RESULTS_NAME}`]({RESULTS_NAME}).

{score_table(cv_results)}

![Test scores per fold]({PLOT_NAME})
"""
