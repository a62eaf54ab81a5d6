"""Cross-validation: subject-disjoint folds from load_fer_folds, the refusal of splits that leak a subject, and
train.py --cross_validation end to end (fold folders, summary, model cards, resume, bad arguments)."""

import csv
import json
import logging
import shutil

import numpy as np
import pytest
from test_data import subject_rows, write_manifest
from train_script import train, user_error

from vit_fer.data import fold_indices, load_fer_dataset, load_fer_folds


pytestmark = pytest.mark.end_to_end


TINY = [
    "--image_size", "32", "--patch_size", "8", "--hidden_size", "32", "--num_hidden_layers", "2",
    "--num_attention_heads", "4", "--intermediate_size", "64", "--mode", "rgb", "--num_train_epochs", "1",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
    "--learning_rate", "1e-3", "--logging_steps", "2", "--disable_tqdm", "true", "--seed", "7",
    "--test_reports", "false",
]  # fmt: skip


def error_line(error: str) -> str:
    """The error train.py printed, checked to be one line."""
    message = error[error.index("train.py: error: "):].strip()
    assert "\n" not in message, message
    return message


# Folds and splits (no training)


@pytest.mark.parametrize("num_folds", [3, "loso"])
def test_folds_are_subject_disjoint_and_test_every_subject_once(tmp_path, num_folds):
    write_manifest(tmp_path, subject_rows(tmp_path, num_subjects=7, per_subject=7))
    folds = load_fer_folds(tmp_path, num_folds=num_folds, validation_size=0.15, seed=3)

    assert len(folds) == (3 if num_folds == 3 else 7)
    tested = [subject for fold in folds for subject in sorted(set(fold["test"]["subject"]))]
    assert sorted(tested) == [f"p{index}" for index in range(7)]  # every subject tested, exactly once
    for fold in folds:
        assert list(fold) == ["train", "validation", "test"]
        subjects = {split: set(part["subject"]) for split, part in fold.items()}
        assert subjects["train"].isdisjoint(subjects["test"]) and subjects["validation"].isdisjoint(subjects["test"])
        assert subjects["train"].isdisjoint(subjects["validation"])
        assert sum(len(part) for part in fold.values()) == 49  # nothing dropped
    again = load_fer_folds(tmp_path, num_folds=num_folds, validation_size=0.15, seed=3)
    assert [fold["test"]["rgb"][:] for fold in again] == [fold["test"]["rgb"][:] for fold in folds]


def test_subject_grouped_folds_are_stratified_where_subjects_allow():
    # Subjects of one expression each, four per expression: whole subjects can balance every fold exactly.
    labels = [label for label in range(7) for _ in range(4 * 5)]
    groups = [f"{label}-{index // 5}" for label in range(7) for index in range(4 * 5)]
    folds = fold_indices(labels, groups=groups, num_folds=4, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(labels)))
    for members in folds:
        assert np.bincount(np.asarray(labels)[members], minlength=7).tolist() == [5] * 7
        assert len({groups[index] for index in members}) == 7  # whole subjects: 5 samples each


def test_kfold_without_subjects_warns_and_stratifies_images(tmp_path, caplog):
    rows = [{key: row[key] for key in ("rgb", "thermal", "label")} for row in subject_rows(tmp_path, 6, 7)]
    write_manifest(tmp_path, rows)
    with caplog.at_level(logging.WARNING, logger="vit_fer.data.loading"):
        folds = load_fer_folds(tmp_path, num_folds=3, validation_size=0.15)
    assert "no subject ids" in caplog.text and "image-level" in caplog.text
    assert sorted(path for fold in folds for path in fold["test"]["rgb"]) == sorted(
        str(tmp_path / row["rgb"]) for row in rows
    )
    for fold in folds:
        assert np.bincount(fold["test"]["label"][:], minlength=7).tolist() == [2] * 7

    with pytest.raises(ValueError, match=r"Leave-one-subject-out .*'subject'.* has none"):
        load_fer_folds(tmp_path, num_folds="loso")


def test_folds_replace_the_split_the_data_gives(tmp_path, caplog):
    rows = subject_rows(tmp_path, num_subjects=6)
    for row in rows:
        row["split"] = "test" if row["subject"] == "p0" else "train"
    write_manifest(tmp_path, rows)
    with caplog.at_level(logging.WARNING, logger="vit_fer.data.loading"):
        folds = load_fer_folds(tmp_path, num_folds=3, validation_size=0.15)
    assert "gives its own splits: they are set aside" in caplog.text
    assert sorted(subject for fold in folds for subject in set(fold["test"]["subject"])) == [f"p{i}" for i in range(6)]


@pytest.mark.parametrize("streaming", [False, True], ids=["in-memory", "streaming"])
def test_a_split_column_putting_a_subject_in_train_and_test_is_refused(tmp_path, streaming):
    rows = subject_rows(tmp_path, num_subjects=4)
    for row in rows:
        row["split"] = {"p0": "validation", "p1": "test"}.get(row["subject"], "train")
    rows[-1]["split"] = "test"  # one sample of p3 (a training subject) in test
    write_manifest(tmp_path, rows)
    with pytest.raises(ValueError, match=r"'split' column .*1 subject\(s\) in two splits \(p3 in train and test\)"):
        load_fer_dataset(tmp_path, streaming=streaming)
    # An explicit image-level split stays possible.
    dataset = load_fer_dataset(tmp_path, split_by_subject=False)
    assert "p3" in dataset["test"]["subject"] and "p3" in dataset["train"]["subject"]


# train.py --cross_validation


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from vit_fer import synthesize_dataset

    folder = tmp_path_factory.mktemp("data") / "fer"
    return synthesize_dataset(folder, num_samples=42, image_size=32, seed=3, num_subjects=6, progress=False)


def cv_arguments(data_dir, output_dir, num_folds="3") -> list[str]:
    return [*TINY, "--dataset_dir", str(data_dir), "--output_dir", str(output_dir), "--cross_validation", num_folds]


@pytest.fixture(scope="module")
def cv_run(data_dir, tmp_path_factory):
    """A finished 3-fold cross-validation of the tiny model: its folder and what train.main returned."""
    output_dir = tmp_path_factory.mktemp("cv") / "run"
    return output_dir, train.main(cv_arguments(data_dir, output_dir))


def test_kfold_writes_fold_folders_and_a_summary(cv_run):
    output_dir, returned = cv_run
    cv_results = json.loads((output_dir / "cv_results.json").read_text())
    assert cv_results == json.loads(json.dumps(returned))
    assert cv_results["scheme"] == "3-fold, subject-grouped, stratified by label (6 subjects)"
    assert sorted(path.name for path in output_dir.glob("fold-*")) == ["fold-1", "fold-2", "fold-3"]
    tested = []
    for number, fold in enumerate(cv_results["folds"], start=1):
        folder = output_dir / f"fold-{number}"
        results = json.loads((folder / "all_results.json").read_text())
        for key in ("accuracy", "macro_f1", "uar"):
            assert fold[key] == results[f"test_{key}"], (number, key)
        for name in ("model.safetensors", "config.json", "README.md", "confusion_matrix.png", "run_config.json"):
            assert (folder / name).is_file(), (number, name)
        assert json.loads((folder / "run_config.json").read_text())["data"]["cross_validation"] == "3"
        # Each fold's model card says it is one fold and reports the folds' mean ± std.
        card = (folder / "README.md").read_text()
        assert f"fold {number} of 3 of a" in card
        mean, std = cv_results["summary"]["uar"]["mean"], cv_results["summary"]["uar"]["std"]
        assert f"| UAR | {mean:.4f} ± {std:.4f} |" in card
        assert json.loads((folder / "cross_validation.json").read_text())["test_subjects"] == fold["test_subjects"]
        tested += fold["test_subjects"]
    assert sorted(tested) == [f"s{index:03d}" for index in range(6)]  # every subject tested exactly once
    accuracies = [fold["accuracy"] for fold in cv_results["folds"]]
    assert cv_results["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert cv_results["summary"]["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
    readme = (output_dir / "README.md").read_text()
    assert f"| **mean ± std** |  |  | **{np.mean(accuracies):.3f} ± {np.std(accuracies, ddof=1):.3f}** |" in readme
    assert "(cv_results.png)" in readme and (output_dir / "cv_results.png").is_file()


def test_an_interrupted_cross_validation_resumes_reusing_finished_folds(cv_run, data_dir, tmp_path, caplog, capsys):
    output_dir = tmp_path / "run"
    shutil.copytree(cv_run[0], output_dir)
    argv = cv_arguments(data_dir, output_dir)
    # Starting again in the folder of an earlier run, without saying what to do with it, is refused.
    assert "--resume_from_checkpoint true" in error_line(user_error(capsys, argv))

    # Interrupted in fold 3, after its checkpoint and before its results: folds 1 and 2 are reused as they are.
    (output_dir / "fold-3" / "all_results.json").unlink()
    record = json.loads((output_dir / "fold-3" / "cross_validation.json").read_text())
    record.pop("summary")
    (output_dir / "fold-3" / "cross_validation.json").write_text(json.dumps({**record, "finished": False}))
    weights = {number: (output_dir / f"fold-{number}" / "model.safetensors").read_bytes() for number in (1, 2)}
    (output_dir / "fold-1" / "model.safetensors").touch()
    stamp = (output_dir / "fold-1" / "model.safetensors").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="vit_fer.cross_validation"):
        resumed = train.main([*argv, "--resume_from_checkpoint", "true"])
    assert "Fold 1 of 3: finished by an earlier run, reused" in caplog.text
    assert "Fold 2 of 3: finished by an earlier run, reused" in caplog.text
    assert "Fold 3 of 3: training" in caplog.text
    assert (output_dir / "fold-1" / "model.safetensors").stat().st_mtime_ns == stamp
    assert all((output_dir / f"fold-{n}" / "model.safetensors").read_bytes() == weights[n] for n in weights)
    for before, after in zip(cv_run[1]["folds"], resumed["folds"], strict=True):
        assert after["uar"] == pytest.approx(before["uar"], abs=1e-6)

    # Another cross-validation's folds are never mixed in: here, another seed makes other folds.
    seed = argv.index("--seed") + 1
    other = [*argv[:seed], "11", *argv[seed + 1:], "--resume_from_checkpoint", "true"]
    assert "holds fold 1 of another cross-validation" in error_line(user_error(capsys, other))


def test_overwrite_starts_every_fold_afresh_and_keeps_other_files(cv_run, data_dir, tmp_path):
    output_dir = tmp_path / "run"
    shutil.copytree(cv_run[0], output_dir)
    (output_dir / "notes.txt").write_text("mine")
    (output_dir / "fold-1" / "model.safetensors").touch()
    stamp = (output_dir / "fold-1" / "model.safetensors").stat().st_mtime_ns
    summary = train.main([*cv_arguments(data_dir, output_dir, num_folds="2"), "--overwrite_output_dir"])

    assert (output_dir / "notes.txt").read_text() == "mine"
    assert (output_dir / "fold-1" / "model.safetensors").stat().st_mtime_ns != stamp  # trained again
    assert [fold["folder"] for fold in summary["folds"]] == ["fold-1", "fold-2"]
    assert not (output_dir / "fold-3" / "model.safetensors").exists()  # the earlier run's third fold is cleared


def test_leave_one_subject_out_tests_each_subject_alone(tmp_path):
    from vit_fer import synthesize_dataset

    data_dir = synthesize_dataset(tmp_path / "data", num_samples=21, image_size=32, seed=5, num_subjects=3,
                                  progress=False)  # fmt: skip
    output_dir = tmp_path / "loso"
    summary = train.main([*TINY, "--dataset_dir", str(data_dir), "--output_dir", str(output_dir),
                          "--cross_validation", "loso", "--validation_size", "0.3"])  # fmt: skip

    assert summary["scheme"] == "leave-one-subject-out (3 subjects, one fold each)"
    assert [fold["test_subjects"] for fold in summary["folds"]] == [["s000"], ["s001"], ["s002"]]
    for number, fold in enumerate(summary["folds"], start=1):
        results = json.loads((output_dir / f"fold-{number}" / "all_results.json").read_text())
        assert fold["uar"] == results["test_uar"] and fold["num_test_samples"] == 7
    assert "| [2](fold-2/) | s001 | 7 |" in (output_dir / "README.md").read_text()


def copy_manifest(data_dir, columns=("rgb", "thermal", "label", "subject")) -> list[dict]:
    """The rows of the synthetic data's manifest with absolute paths, restricted to `columns`."""
    with open(data_dir / "manifest.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        row.update(rgb=str(data_dir / row["rgb"]), thermal=str(data_dir / row["thermal"]))
    return [{key: row[key] for key in columns} for row in rows]


def test_loso_without_subject_ids_is_refused(data_dir, tmp_path, capsys):
    manifest = write_manifest(tmp_path, copy_manifest(data_dir, columns=("rgb", "thermal", "label")))
    argv = [*TINY, "--dataset_dir", str(manifest), "--output_dir", str(tmp_path / "cv"), "--cross_validation", "loso"]
    message = error_line(user_error(capsys, argv))
    assert "Leave-one-subject-out" in message and "--cross_validation loso" in message
    assert "'subject'" in message and str(manifest) in message and "has none" in message
    assert not (tmp_path / "cv").exists()


def test_training_on_a_manifest_that_leaks_a_subject_is_refused(data_dir, tmp_path, capsys):
    rows = copy_manifest(data_dir)
    for row in rows:
        row["split"] = {"s000": "test", "s001": "validation"}.get(row["subject"], "train")
    next(row for row in rows if row["subject"] == "s002")["split"] = "test"
    manifest = write_manifest(tmp_path, rows)
    message = error_line(user_error(capsys, [*TINY, "--dataset_dir", str(manifest), "--output_dir",
                                             str(tmp_path / "run")]))  # fmt: skip
    assert "s002 in train and test" in message and "'split' column" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--cross_validation", "1"], "--cross_validation must be a number of folds (2 or more"),
        (["--cross_validation", "five"], "got 'five'"),
        (["--cross_validation", "3", "--push_to_hub"], "--push_to_hub publishes one model"),
        (["--cross_validation", "9"], "9 folds need at least 9 subjects, the data has 6"),
        (["--cross_validation", "3", "--validation_size", "0"], "The dataset has no ['validation'] split"),
    ],
)
def test_bad_cross_validation_arguments(data_dir, tmp_path, capsys, extra, message):
    argv = [*TINY, "--dataset_dir", str(data_dir), "--output_dir", str(tmp_path / "cv"), *extra]
    assert message in error_line(user_error(capsys, argv))
