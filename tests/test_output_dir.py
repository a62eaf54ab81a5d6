"""train.py's output folder as users hit it: --overwrite_output_dir removes only an earlier run's files and refuses
the current directory or the dataset's folder; a second run into a folder in use stops at once, a dead run's lock is
taken over; an unwritable folder is refused before any work; --resume_from_checkpoint true / false."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_script import ROOT, train, user_error

from vit_fer.output_dir import OutputDirError, resolve_resume


pytestmark = pytest.mark.end_to_end


TINY = [
    "--image_size", "32", "--patch_size", "8", "--hidden_size", "32", "--num_hidden_layers", "2",
    "--num_attention_heads", "4", "--intermediate_size", "64", "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "16", "--learning_rate", "1e-3", "--logging_steps", "2", "--disable_tqdm", "true",
    "--seed", "7", "--mode", "rgb", "--test_reports", "false",
]  # fmt: skip


def arguments(data_dir: Path, output_dir: Path | str, *extra: str) -> list[str]:
    return [*TINY, "--dataset_dir", str(data_dir), "--output_dir", str(output_dir), *extra]


def test_overwrite_removes_the_earlier_run_and_nothing_else(synthetic_dataset_dir, tmp_path, capsys):
    output_dir = tmp_path / "project"
    train.main(arguments(synthetic_dataset_dir, output_dir, "--num_train_epochs", "2"))
    earlier = sorted(path.name for path in output_dir.glob("checkpoint-*"))
    assert len(earlier) == 2
    (output_dir / "notes.txt").write_text("my notes")
    (output_dir / "data").mkdir()
    (output_dir / "data" / "face.png").write_bytes(b"not ours")
    (output_dir / "analysis.py").write_text("print('mine')")

    message = user_error(capsys, arguments(synthetic_dataset_dir, output_dir, "--num_train_epochs", "1"))
    assert "holds checkpoints of an earlier run" in message

    train.main(arguments(synthetic_dataset_dir, output_dir, "--num_train_epochs", "1", "--overwrite_output_dir"))
    assert (output_dir / "notes.txt").read_text() == "my notes"
    assert (output_dir / "data" / "face.png").read_bytes() == b"not ours"
    assert (output_dir / "analysis.py").is_file()
    assert sorted(path.name for path in output_dir.glob("checkpoint-*")) == earlier[:1]
    assert not (output_dir / ".vit-fer-run.lock").exists()


def test_overwrite_refuses_the_current_directory_and_the_datasets_folder(
    synthetic_dataset_dir, tmp_path, capsys, monkeypatch
):
    project = tmp_path / "project"
    (project / "checkpoint-4").mkdir(parents=True)
    (project / "notes.txt").write_text("my notes")
    monkeypatch.chdir(project)
    message = user_error(capsys, arguments(synthetic_dataset_dir, ".", "--overwrite_output_dir"))
    assert "is the current directory" in message
    (project / "notebooks").mkdir()
    monkeypatch.chdir(project / "notebooks")
    message = user_error(capsys, arguments(synthetic_dataset_dir, project, "--overwrite_output_dir"))
    assert "is the current directory (or holds it)" in message

    # The dataset inside the output folder.
    data = project / "data"
    shutil.copytree(synthetic_dataset_dir, data)
    monkeypatch.chdir(tmp_path)
    message = user_error(capsys, arguments(data, project, "--overwrite_output_dir"))
    assert "holds the dataset" in message
    assert (project / "notes.txt").is_file() and (project / "checkpoint-4").is_dir()


def test_a_second_run_into_the_same_folder_stops_at_once_and_a_dead_runs_lock_is_taken_over(
    synthetic_dataset_dir, tmp_path, capsys, caplog
):
    output_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), *arguments(synthetic_dataset_dir, output_dir,
                                                                 "--num_train_epochs", "50")]  # fmt: skip
    first = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (output_dir / ".vit-fer-run.lock").exists():
            assert first.poll() is None, first.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the first run never locked its folder"
            time.sleep(0.05)
        started = time.monotonic()
        message = user_error(capsys, arguments(synthetic_dataset_dir, output_dir, "--num_train_epochs", "1"))
        assert time.monotonic() - started < 30
        assert f"in use by another run (process {first.pid} on " in message
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    # The killed run's lock stays behind; its process is gone, so the next run takes the folder over.
    assert (output_dir / ".vit-fer-run.lock").exists()
    with caplog.at_level(logging.WARNING, logger="vit_fer.output_dir"):
        train.main(arguments(synthetic_dataset_dir, output_dir, "--num_train_epochs", "1", "--overwrite_output_dir"))
    assert f"from process {first.pid}" in caplog.text
    assert (output_dir / "all_results.json").is_file()


def test_an_unwritable_output_folder_is_refused_before_any_work(synthetic_dataset_dir, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the folder should go")
    message = user_error(capsys, arguments(synthetic_dataset_dir, blocker / "run"))
    assert f"--output_dir {blocker / 'run'} is not a writable folder" in message
    assert blocker.read_text() == "a file where the folder should go"


# A run killed while writing its first checkpoint leaves a folder without trainer_state.json (written last), or with
# the file created but empty or cut short (the Trainer writes it in place).
CUT_SHORT_STATE = '{\n  "best_global_step": 5,\n  "best_metric": 0.1'


@pytest.mark.parametrize("state", [None, "", CUT_SHORT_STATE], ids=["none", "empty", "cut-short"])
def test_resume_true_with_only_an_incomplete_checkpoint_starts_from_scratch(
    synthetic_dataset_dir, tmp_path, caplog, state
):
    output_dir = tmp_path / "run"
    partial = output_dir / "checkpoint-5"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"\0" * 100)
    if state is not None:
        (partial / "trainer_state.json").write_text(state)
    with caplog.at_level(logging.WARNING, logger="vit_fer.output_dir"):
        metrics = train.main(
            arguments(synthetic_dataset_dir, output_dir, "--num_train_epochs", "1", "--resume_from_checkpoint", "true")
        )
    assert "holds only incomplete checkpoints" in caplog.text and "starting from scratch" in caplog.text
    assert metrics["train_loss"] > 0
    assert not partial.exists() or json.loads((partial / "trainer_state.json").read_text())


def test_resume_true_skips_a_checkpoint_whose_state_was_cut_short(tmp_path):
    """Killed while the Trainer wrote checkpoint-4's trainer_state.json: the run resumes from checkpoint-2, which the
    Trainer deletes only once a newer checkpoint is complete."""
    output_dir = tmp_path / "run"
    for step, state in ((2, json.dumps({"global_step": 2})), (4, CUT_SHORT_STATE)):
        (output_dir / f"checkpoint-{step}").mkdir(parents=True)
        (output_dir / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert resolve_resume(output_dir, "true", overwrite_output_dir=False) == (str(output_dir / "checkpoint-2"), [])
    with pytest.raises(OutputDirError, match="checkpoint-4 is not a complete checkpoint folder"):
        resolve_resume(output_dir, str(output_dir / "checkpoint-4"), overwrite_output_dir=False)


def test_resume_false_means_no_resumption(synthetic_dataset_dir, tmp_path, capsys):
    output_dir = tmp_path / "run"
    train.main(arguments(synthetic_dataset_dir, output_dir, "--num_train_epochs", "1"))
    message = user_error(
        capsys, arguments(synthetic_dataset_dir, output_dir, "--num_train_epochs", "1", "--resume_from_checkpoint", "false")
    )
    assert "holds checkpoints of an earlier run" in message
    message = user_error(capsys, arguments(synthetic_dataset_dir, tmp_path / "new", "--resume_from_checkpoint", "true"))
    assert "holds no checkpoint to resume from" in message
