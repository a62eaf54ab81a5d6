"""Multi-process launches of train.py on CPU: torchrun without --use_cpu / --ddp_backend trains one distributed model
over gloo, and the default synthetic data is generated once, by one process, however the runs were launched."""

import json
import os
import subprocess
import sys
from pathlib import Path


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


def test_torchrun_on_cpu_without_flags_trains_one_distributed_model(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29571",
        str(ROOT / "train.py"), *TINY_SYNTHETIC, "--synthetic_dir", str(tmp_path / "data"),
        "--output_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=tmp_path, env=ENVIRONMENT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "distributed training on CPU over gloo" in completed.stderr
    run_config = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert run_config["hardware"].startswith("2 process")
    assert run_config["training"]["ddp_backend"] == "gloo"
    assert synthetic_folders(tmp_path / "data") == ["synthetic-fer-200-32px-seed0"]


def test_a_backend_that_needs_gpus_stops_with_the_flags_to_add(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29572",
        str(ROOT / "train.py"), *TINY_SYNTHETIC, "--synthetic_dir", str(tmp_path / "data"),
        "--output_dir", str(tmp_path / "run"), "--ddp_backend", "nccl",
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=tmp_path, env=ENVIRONMENT, capture_output=True, text=True, timeout=600)
    assert completed.returncode != 0
    assert "add --use_cpu --ddp_backend gloo" in completed.stderr
    assert not (tmp_path / "data").exists()


def test_separate_runs_started_together_generate_the_synthetic_data_once(tmp_path):
    processes = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *TINY_SYNTHETIC, "--synthetic_dir", str(tmp_path / "data"),
             "--output_dir", str(tmp_path / f"run{index}"), "--max_steps", "1"],
            cwd=tmp_path, env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for index in range(2)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-4000:]
    assert synthetic_folders(tmp_path / "data") == ["synthetic-fer-200-32px-seed0"]
    manifests = [json.loads((tmp_path / f"run{index}" / "run_config.json").read_text()) for index in range(2)]
    assert manifests[0]["dataset_name"] == manifests[1]["dataset_name"]
