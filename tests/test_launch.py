"""Multi-process launches of train.py on CPU: torchrun without --use_cpu / --ddp_backend trains one distributed model
over gloo — the same model one process trains with the same global batch, progressive unfreezing and modality dropout
included — and the default synthetic data is generated once, by one process, however the runs were launched."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_script import train


pytestmark = pytest.mark.end_to_end


ROOT = Path(__file__).resolve().parents[1]
TINY_SYNTHETIC = [
    "--image_size", "32", "--patch_size", "8", "--hidden_size", "32", "--num_hidden_layers", "2",
    "--num_attention_heads", "4", "--intermediate_size", "64", "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "16", "--num_train_epochs", "1", "--disable_tqdm", "true",
    "--synthetic_num_samples", "200", "--mode", "combined", "--fusion_strategy", "late",
]  # fmt: skip
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def synthetic_folders(root: Path) -> list[str]:
    return sorted(path.name for path in root.iterdir() if not path.name.endswith(".lock"))


def test_a_backend_that_needs_gpus_stops_with_the_flags_to_add(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(ROOT / "train.py"), *TINY_SYNTHETIC, "--synthetic_dir", str(tmp_path / "data"),
        "--output_dir", str(tmp_path / "run"), "--ddp_backend", "nccl",
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=tmp_path, env=ENVIRONMENT, capture_output=True, text=True, timeout=600)
    assert completed.returncode != 0
    assert "add --use_cpu --ddp_backend gloo" in completed.stderr
    assert not (tmp_path / "data").exists()


# Progressive unfreezing (head only, then the top layer, then the whole encoders) of a late-fusion model trained with
# modality dropout, for 3 epochs of 5 steps on the 100 training pairs of the split, with a global batch of 20.
PROGRESSIVE_WITH_MODALITY_DROPOUT = [
    "--image_size", "32", "--patch_size", "8", "--hidden_size", "32", "--num_hidden_layers", "2",
    "--num_attention_heads", "4", "--intermediate_size", "64", "--synthetic_num_samples", "200",
    "--mode", "combined", "--fusion_strategy", "late", "--fusion_type", "attention", "--modality_dropout", "0.5",
    "--strategy", "progressive", "--head_only_epochs", "1", "--layers_per_stage", "1", "--num_train_epochs", "3",
    "--learning_rate", "1e-3", "--backbone_lr_multiplier", "1", "--per_device_eval_batch_size", "32",
    "--logging_steps", "1", "--save_strategy", "no", "--load_best_model_at_end", "false", "--disable_tqdm", "true",
    # nn.Dropout draws its masks per process (as in transformers' models), unlike modality dropout: off here.
    "--classifier_dropout", "0",
]  # fmt: skip
SNAPSHOTS = ("epoch0", "epoch1", "epoch2", "final")


def start_recorded_run(tmp_path: Path, name: str, processes: int, batch_size: int) -> subprocess.Popen:
    """tests/recorded_train.py: train.py's main, recording each process's weights and unfreezing stages."""
    launcher = [sys.executable]
    if processes > 1:  # --standalone: a free port for the rendezvous
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [
        *launcher, str(ROOT / "tests" / "recorded_train.py"), str(tmp_path / name / "record"),
        *PROGRESSIVE_WITH_MODALITY_DROPOUT, "--per_device_train_batch_size", str(batch_size),
        "--synthetic_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / name / "run"),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=tmp_path, env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def read_record(folder: Path, rank: int) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    record = json.loads((folder / f"rank{rank}.json").read_text())
    weights = {name: load_file(folder / f"rank{rank}-{name}.safetensors") for name in SNAPSHOTS}
    return record, weights


def run_metrics(folder: Path) -> dict[str, float]:
    """The validation and test metrics train.py saved, without timings — and without the Trainer's `*_loss`: with
    several processes the last evaluation batch is padded with repeated samples, which the Trainer's loss (a batch
    mean) counts (transformers issue #16716); `*_nll`, the same quantity computed from the gathered predictions, is
    compared instead."""
    metrics = {}
    for split in ("eval", "test"):
        metrics.update(json.loads((folder / f"{split}_results.json").read_text()))
    return {key: value for key, value in metrics.items()
            if not key.endswith(("_loss", "_runtime", "_per_second"))}  # fmt: skip


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Two runs started together on the same synthetic data folder, which neither finds: torchrun
    --nproc_per_node 2 without --use_cpu / --ddp_backend ("two", 2 × 10 per batch) and a plain `python` run ("one",
    1 × 20). Returns their folder and each run's stderr. Every test below reads these three processes' results:
    launching them costs more than all the checks together."""
    root = tmp_path_factory.mktemp("launch")
    runs = {"two": start_recorded_run(root, "two", 2, 10), "one": start_recorded_run(root, "one", 1, 20)}
    stderr = {}
    for name, run in runs.items():
        stderr[name] = run.communicate(timeout=900)[1]
        assert run.returncode == 0, stderr[name][-4000:]
    return root, stderr


def test_torchrun_on_cpu_without_flags_trains_one_distributed_model(launched):
    root, stderr = launched
    assert "distributed training on CPU over gloo" in stderr["two"]
    run_config = json.loads((root / "two" / "run" / "run_config.json").read_text())
    assert run_config["hardware"].startswith("2 process")
    assert run_config["training"]["ddp_backend"] == "gloo"


def test_separate_runs_started_together_generate_the_synthetic_data_once(launched):
    """Three processes (torchrun's two and the plain run) asked for the same default synthetic data at once: one
    generated it, the others waited and read it."""
    root, _ = launched
    assert synthetic_folders(root / "data") == ["synthetic-fer-200-32px-seed0"]
    manifests = [json.loads((root / name / "run" / "run_config.json").read_text()) for name in ("one", "two")]
    assert manifests[0]["dataset_name"] == manifests[1]["dataset_name"]


def test_two_processes_train_the_model_one_process_trains_with_the_same_global_batch(launched):
    """torchrun --nproc_per_node 2, progressive unfreezing with modality dropout: both processes hold the same weights
    at every epoch and at the end, release the same encoder units at the same steps, keep frozen units unchanged —
    and train what one process trains with the same global batch (2 × 10 against 1 × 20) and seed.

    The runs draw the same random numbers: the model's modality dropout draws the masks of the global batch in every
    process ([`drop_modalities`]), and the augmentation, whose draws are made per sample in each process, is off
    (tests/recorded_train.py). What remains is floating-point: the gradients are averaged over two half-batches and
    an all-reduce instead of one batch, which moves weights by about 1e-7 per step; the tolerances are 100 times
    what 15 steps gave."""
    tmp_path, _ = launched
    (record0, weights0), (record1, weights1) = (read_record(tmp_path / "two" / "record", rank) for rank in (0, 1))
    single, single_weights = read_record(tmp_path / "one" / "record", 0)
    assert (record0["world_size"], record1["world_size"], single["world_size"]) == (2, 2, 1)

    # Identical replicas: bitwise, at every epoch start and after the last step.
    for snapshot in SNAPSHOTS:
        assert weights0[snapshot].keys() == weights1[snapshot].keys()
        differing = [key for key in weights0[snapshot] if not torch.equal(weights0[snapshot][key], weights1[snapshot][key])]
        assert not differing, f"{snapshot}: the processes hold different {differing[:5]}"

    # The same stages at the same steps on every process, and in the single process: the documented schedule.
    assert record0["epochs"] == record1["epochs"] == single["epochs"]
    assert [(epoch["global_step"], epoch["frozen_units"]) for epoch in record0["epochs"]] == [
        (0, ["embeddings", "layernorm", "layers.0", "layers.1"]),
        (5, ["embeddings", "layers.0"]),
        (10, []),
    ]
    # Frozen units stay exactly as they were during their epochs, on every process; the others train.
    units = record0["units"]
    for record, weights in ((record0, weights0), (record1, weights1)):
        for epoch, (before, after) in zip(record["epochs"], zip(SNAPSHOTS, SNAPSHOTS[1:])):
            for unit, names in units.items():
                unchanged = all(torch.equal(weights[before][name], weights[after][name]) for name in names)
                assert unchanged == (unit in epoch["frozen_units"]), (before, unit)

    # One process with the same global batch: the same start, the same per-step losses and rates, the same weights
    # and metrics to floating-point differences.
    for key, initial in single_weights["epoch0"].items():
        assert torch.equal(weights0["epoch0"][key], initial)
    steps = [(entry["step"], entry["loss"], entry["learning_rate"]) for entry in single["log_history"] if "loss" in entry]
    distributed = [(entry["step"], entry["loss"], entry["learning_rate"]) for entry in record0["log_history"] if "loss" in entry]
    assert len(steps) == 15
    assert [(step, rate) for step, _, rate in distributed] == [(step, rate) for step, _, rate in steps]
    assert [loss for _, loss, _ in distributed] == pytest.approx([loss for _, loss, _ in steps], rel=1e-5)
    for key, value in single_weights["final"].items():
        torch.testing.assert_close(weights0["final"][key], value, rtol=0, atol=1e-5)
    one, two = run_metrics(tmp_path / "one" / "run"), run_metrics(tmp_path / "two" / "run")
    assert one.keys() == two.keys() and "test_macro_f1" in one
    assert two == pytest.approx(one, abs=1e-5)


@pytest.mark.skipif(torch.accelerator.is_available(), reason="FSDP shards across accelerators")
def test_fsdp_without_accelerators_stops_instead_of_training_unsharded(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        train.main([*TINY_SYNTHETIC, "--fsdp", "full_shard auto_wrap", "--output_dir", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert "`fsdp` needs accelerators (GPUs), and this machine has none" in capsys.readouterr().err
