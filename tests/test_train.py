"""train.py end to end: each fine-tuning strategy on a tiny model and tiny synthetic data, its output folder, resume
after SIGKILL, bad arguments, and multi-process runs."""

import importlib.util
import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_script import user_error

from vit_fer.trainer import checkpoint_is_complete


pytestmark = pytest.mark.end_to_end(longest=True)


ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("train", ROOT / "train.py")
train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train)

TINY = [
    "--image_size", "32", "--patch_size", "8", "--hidden_size", "32", "--num_hidden_layers", "2",
    "--num_attention_heads", "4", "--intermediate_size", "64",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
    "--learning_rate", "1e-3", "--logging_steps", "2", "--disable_tqdm", "true", "--seed", "7",
]  # fmt: skip


def arguments(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [*TINY, "--dataset_dir", str(data_dir), "--output_dir", str(output_dir), *extra]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from vit_fer import synthesize_dataset

    folder = tmp_path_factory.mktemp("data") / "fer"
    return synthesize_dataset(folder, num_samples=70, image_size=32, seed=3, num_subjects=7, progress=False)


@pytest.mark.parametrize(
    "strategy",
    [
        ["--strategy", "full", "--mode", "rgb"],
        ["--strategy", "classifier_only", "--mode", "thermal"],
        ["--strategy", "classifier_only", "--cache_features", "--mode", "combined", "--fusion_strategy", "early"],
        ["--strategy", "progressive", "--head_only_epochs", "1", "--layers_per_stage", "1", "--mode", "combined",
         "--fusion_strategy", "late", "--fusion_type", "attention", "--modality_dropout", "0.2"],
        ["--strategy", "full", "--mode", "combined", "--fusion_strategy", "mid", "--fusion_layer", "1",
         "--fusion_type", "bottleneck", "--modality_dropout", "0.2"],
        # Each model class above also wrote its test reports; these runs leave them out (--test_reports false).
        ["--strategy", "classifier_only", "--mode", "combined", "--fusion_strategy", "mid", "--fusion_layer", "1",
         "--fusion_type", "cross_attention", "--test_reports", "false"],
        ["--strategy", "classifier_only", "--cache_features", "--mode", "combined", "--fusion_strategy", "mid",
         "--fusion_layer", "1", "--fusion_type", "add", "--test_reports", "false"],
        ["--strategy", "progressive", "--head_only_epochs", "1", "--layers_per_stage", "1", "--mode", "combined",
         "--fusion_strategy", "mid", "--fusion_layer", "1", "--fusion_type", "concat", "--test_reports", "false"],
    ],
    ids=[
        "full-rgb", "classifier-only-thermal", "cached-early", "progressive-late", "full-mid-bottleneck",
        "classifier-only-mid-cross_attention", "cached-mid-add", "progressive-mid-concat",
    ],
)  # fmt: skip
def test_train_writes_a_complete_evaluated_model_folder(data_dir, tmp_path, strategy):
    output_dir = tmp_path / "run"
    metrics = train.main(arguments(data_dir, output_dir, "--num_train_epochs", "3", *strategy))

    for key in ("eval_accuracy", "eval_macro_f1", "eval_uar", "test_accuracy", "test_macro_f1", "test_uar"):
        assert 0.0 <= metrics[key] <= 1.0, key
    saved = json.loads((output_dir / "all_results.json").read_text())
    assert saved["test_uar"] == pytest.approx(metrics["test_uar"])
    assert "eval_recall_fear" in saved and "test_recall_surprised" in saved
    for name in (
        "model.safetensors", "config.json", "modeling_vit_fer.py", "configuration_vit_fer.py",
        "preprocessor_config.json", "image_processing_vit_fer.py", "eval_results.json", "test_results.json",
        "confusion_matrix.png", "learning_curves.png", "README.md", "run_config.json", "reliability_diagram.png",
    ):  # fmt: skip
        assert (output_dir / name).is_file(), name
    card = (output_dir / "README.md").read_text()
    for shown in ("(reliability_diagram.png)", "| ECE (15 bins) |"):
        assert shown in card, shown
    # The test reports: overlays of test samples and the robustness report, shown in the card; or none of them.
    reports = "--test_reports" not in strategy
    assert len(list((output_dir / "explanations").glob("*.png"))) == (3 if reports else 0)
    for name in ("robustness.json", "robustness.png"):
        assert (output_dir / name).is_file() == reports, name
    assert ("(explanations/" in card) == reports and ("(robustness.png)" in card) == reports
    config = json.loads((output_dir / "config.json").read_text())
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForImageClassification"}
    # The temperature fitted on validation travels in the config; test calibration is reported before and after.
    assert config["calibration_temperature"] == pytest.approx(metrics["calibration_temperature"])
    assert {"test_ece", "test_calibrated_ece", "eval_nll", "test_calibrated_brier"} <= set(saved)

    # The folder holds the best checkpoint on validation, in weights that load back exactly.
    state = json.loads(next(output_dir.glob("checkpoint-*/trainer_state.json")).read_text())
    best = load_file(Path(state["best_model_checkpoint"]) / "model.safetensors")
    final = load_file(output_dir / "model.safetensors")
    assert best.keys() == final.keys()
    assert all(torch.equal(best[key], final[key]) for key in best)


def test_classifier_only_leaves_the_backbone_untouched(data_dir, tmp_path):
    train.main(arguments(data_dir, tmp_path / "a", "--num_train_epochs", "1", "--strategy", "classifier_only",
                         "--seed", "11", "--test_reports", "false"))  # fmt: skip
    train.main(arguments(data_dir, tmp_path / "b", "--num_train_epochs", "2", "--strategy", "classifier_only",
                         "--seed", "11", "--test_reports", "false"))  # fmt: skip
    first, second = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    backbone = [key for key in first if key.startswith("vit.")]
    head = [key for key in first if key.startswith("classifier.")]
    assert backbone and all(torch.equal(first[key], second[key]) for key in backbone)
    assert not all(torch.equal(first[key], second[key]) for key in head)


def test_resume_after_sigkill_matches_an_uninterrupted_run(data_dir, tmp_path):
    """The run killed is a real train.py process; the resumed and the uninterrupted runs call train.py's main in
    this process (the same code after the interpreter starts), with the same number of torch threads."""
    run_arguments = arguments(data_dir, tmp_path / "interrupted", "--num_train_epochs", "6", "--mode", "combined",
                              "--fusion_strategy", "late", "--save_total_limit", "3",
                              "--test_reports", "false")  # fmt: skip
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *run_arguments], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 240
    # Killed once a checkpoint is complete (its trainer_state.json, written last, whole), perhaps while it writes the
    # next one: the resumed run must continue from the last complete checkpoint.
    while not any(checkpoint_is_complete(path) for path in (tmp_path / "interrupted").glob("checkpoint-*")):
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "interrupted" / "all_results.json").exists(), "the run ended before it was killed"

    train.main([*run_arguments, "--resume_from_checkpoint", "true"])
    uninterrupted_dir = tmp_path / "uninterrupted"
    run_arguments[run_arguments.index(str(tmp_path / "interrupted"))] = str(uninterrupted_dir)
    train.main(run_arguments)

    expected = json.loads((uninterrupted_dir / "all_results.json").read_text())
    actual = json.loads((tmp_path / "interrupted" / "all_results.json").read_text())
    for key in ("eval_loss", "eval_macro_f1", "test_loss", "test_accuracy", "test_uar"):
        assert actual[key] == pytest.approx(expected[key], abs=1e-6), key
    # The summary covers the whole run, not the part after the resume.
    assert actual["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
    assert actual["train_runtime"] > 0 and actual["train_steps_per_second"] > 0

    # Nothing left to train: the summary is still the run's, not 0.0.
    train.main([*run_arguments, "--resume_from_checkpoint", "true"])
    final = json.loads((uninterrupted_dir / "all_results.json").read_text())
    assert final["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mode", "depth"], "`mode` must be one of"),
        (["--strategy", "linear_probe"], "`strategy` must be one of"),
        (["--mode", "rgb", "--fusion_type", "concat"], "apply to mode='combined' only"),
        (["--mode", "rgb", "--modality_dropout", "0.2"], "late only"),
        (["--mode", "combined", "--fusion_strategy", "mid", "--fusion_layer", "feature"], "a layer index from 0"),
        (["--strategy", "full", "--cache_features"], "`cache_features` needs a frozen backbone"),
        (["--metric_for_best_model", "test_accuracy"], "validation metrics"),
        (["--write_space"], "`write_space` needs `hub_model_id`"),
        (["--write_space", "--hub_model_id", "no-namespace"], "namespace/name"),
    ],
)
def test_bad_arguments_stop_before_training(data_dir, tmp_path, extra, message, capsys):
    assert message in user_error(capsys, arguments(data_dir, tmp_path / "run", *extra))
    assert not (tmp_path / "run").exists()


def test_dataset_with_labels_the_model_does_not_know(data_dir, tmp_path, capsys):
    rows = (data_dir / "manifest.csv").read_text().splitlines()
    header, first = rows[0], rows[1].split(",")
    first[2] = "contempt"  # the label column
    manifest = tmp_path / "manifest.csv"
    rebased = [",".join(str(data_dir / value) if index < 2 else value for index, value in enumerate(row.split(",")))
               for row in [",".join(first), *rows[2:]]]  # fmt: skip
    manifest.write_text("\n".join([header, *rebased]))
    assert "contempt" in user_error(capsys, arguments(manifest, tmp_path / "run"))


def test_arguments_from_a_yaml_file(data_dir, tmp_path):
    config = tmp_path / "args.yaml"
    config.write_text(
        "\n".join(f"{key}: {value}" for key, value in {
            "dataset_dir": data_dir, "output_dir": tmp_path / "run", "image_size": 32, "patch_size": 8,
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
            "num_train_epochs": 1, "mode": "thermal", "strategy": "classifier_only",
        }.items())  # fmt: skip
    )
    model_args, data_args, training_args = train.parse_arguments([str(config)])
    assert (model_args.mode, training_args.strategy, data_args.image_size) == ("thermal", "classifier_only", 32)


def test_attention_implementation_reaches_every_encoder(data_dir, tmp_path):
    model_args, data_args, training_args = train.parse_arguments(
        arguments(data_dir, tmp_path / "run", "--mode", "combined", "--fusion_strategy", "late",
                  "--attn_implementation", "eager")
    )  # fmt: skip
    model = train.build_model(model_args, data_args, training_args)
    assert [encoder.config._attn_implementation for encoder in model.backbone_modules()] == ["eager", "eager"]


def test_two_processes_with_progressive_unfreezing_stay_in_sync_under_accelerate(data_dir, tmp_path):
    """Under DDP a parameter frozen when the model is wrapped is never synchronised: train.py must end with identical
    weights on both ranks (it checks them itself and fails otherwise). torchrun's launch of the same design is
    tests/test_launch.py's test_two_processes_train_the_model_one_process_trains_with_the_same_global_batch."""
    script_arguments = arguments(
        data_dir, tmp_path / "run", "--num_train_epochs", "3", "--strategy", "progressive", "--head_only_epochs", "1",
        "--layers_per_stage", "1", "--mode", "combined", "--fusion_strategy", "late", "--modality_dropout", "0.3",
        "--use_cpu", "--ddp_backend", "gloo", "--test_reports", "false",
    )  # fmt: skip
    # accelerate's multi-process launcher is its `--multi_gpu` one; `--use_cpu` keeps train.py on the CPU.
    prefix = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", "29562"]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([*prefix, str(ROOT / "train.py"), *script_arguments], cwd=tmp_path, env=environment,
                               capture_output=True, text=True, timeout=600)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    run_config = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert run_config["hardware"].startswith("2 process")
    assert json.loads((tmp_path / "run" / "all_results.json").read_text())["test_accuracy"] >= 0


CLASSIFY_PAIR = """
import json, sys
sys.modules["vit_fer"] = None  # a Hub user's machine: no vit_fer package
import numpy as np, torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

folder, rgb, thermal = sys.argv[1:4]
model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
inputs = processor(images=Image.open(rgb), thermal_images=Image.open(thermal), return_tensors="pt")
with torch.no_grad():
    probabilities = model(**inputs).logits.softmax(-1)[0]
print(json.dumps({"class": type(processor).__name__, "label": model.config.id2label[int(probabilities.argmax())],
                  "total": float(probabilities.sum())}))
"""


def test_output_folder_is_a_complete_hub_repository(data_dir, tmp_path):
    from huggingface_hub import ModelCard

    output_dir = tmp_path / "run"
    train.main(arguments(data_dir, output_dir, "--num_train_epochs", "2", "--mode", "combined",
                         "--fusion_strategy", "late", "--fusion_type", "attention"))  # fmt: skip
    repository = tmp_path / "fresh" / "vit-fer-late"
    shutil.copytree(output_dir, repository, ignore=shutil.ignore_patterns("checkpoint-*", "training_args.bin"))

    manifest = (data_dir / "manifest.csv").read_text().splitlines()[1].split(",")
    completed = subprocess.run(
        [sys.executable, "-c", CLASSIFY_PAIR, str(repository), str(data_dir / manifest[0]), str(data_dir / manifest[1])],
        capture_output=True, text=True, cwd=tmp_path / "fresh", timeout=300,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "HF_MODULES_CACHE": str(tmp_path / "m")},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    prediction = json.loads(completed.stdout.strip().splitlines()[-1])
    assert prediction["class"] == "ViTFERImageProcessor"
    assert prediction["label"] in json.loads((repository / "config.json").read_text())["label2id"]
    assert prediction["total"] == pytest.approx(1.0, abs=1e-5)

    results = json.loads((repository / "all_results.json").read_text())
    card = ModelCard.load(repository / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-classification"
    assert "late-fusion" in card.data.tags
    reported = {(result.dataset_split, result.metric_type): result.metric_value for result in card.data.eval_results}
    for prefix, split in (("eval", "validation"), ("test", "test")):
        assert reported[(split, "accuracy")] == pytest.approx(results[f"{prefix}_accuracy"])
        assert reported[(split, "f1")] == pytest.approx(results[f"{prefix}_macro_f1"])
        assert reported[(split, "recall")] == pytest.approx(results[f"{prefix}_uar"])


def test_help_lists_vit_fer_options_first_grouped_and_examples_on_their_own_lines(capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    headings = [line.rstrip(":") for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings[-4:] == [
        "model (vit-fer)", "data (vit-fer)", "fine-tuning strategy (vit-fer)",
        "Trainer options (transformers.TrainingArguments; vit-fer's defaults where they differ)",
    ]  # fmt: skip
    groups = text.split("\n\n")
    trainer_group = next(index for index, part in enumerate(groups) if part.startswith("Trainer options"))
    for option in ("--mode", "--dataset_dir", "--strategy", "--backbone_lr_multiplier"):
        assert option in "\n\n".join(groups[:trainer_group]), option
    assert "--learning_rate" in "\n\n".join(groups[trainer_group:])
    # The examples keep their lines; the usage is one line, not every option.
    assert "\n    python train.py args.yaml" in text
    assert text.splitlines()[0].startswith("usage: python train.py") and "--mode" not in text.splitlines()[0]


def test_a_run_without_output_dir_gets_its_own_folder_named_after_its_design(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "demo").mkdir(parents=True)  # the demo's folder, which a user's own run must not touch
    train.main([*TINY, "--dataset_dir", str(data_dir), "--mode", "combined", "--fusion_strategy", "late",
                "--fusion_type", "attention", "--max_steps", "2", "--save_strategy", "no",
                "--load_best_model_at_end", "false", "--test_reports", "false"])  # fmt: skip
    folders = sorted(path.name for path in (tmp_path / "outputs").iterdir())
    assert folders[0] == "demo" and len(folders) == 2
    assert re.fullmatch(r"late-attention-\d{8}-\d{6}", folders[1])
    assert (tmp_path / "outputs" / folders[1] / "config.json").is_file()
    assert not any((tmp_path / "outputs" / "demo").iterdir())


def test_log_has_one_line_per_epoch_the_unfreezing_stages_and_no_repeated_noise(data_dir, tmp_path):
    """The run's output as a user redirecting it to a file sees it: per epoch one line with the metrics, each
    unfreezing stage once, no Trainer dictionaries, no per-checkpoint "Writing model shards" bar, no warnings."""
    command = [sys.executable, str(ROOT / "train.py"), *[a for a in TINY if a not in ("--disable_tqdm", "true")],
               "--dataset_dir", str(data_dir), "--output_dir", str(tmp_path / "run"), "--num_train_epochs", "3",
               "--strategy", "progressive", "--head_only_epochs", "1", "--layers_per_stage", "1"]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = [line for line in (completed.stdout + completed.stderr).replace("\r", "\n").splitlines() if line.strip()]
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/3", "2/3", "3/3"]
    assert all("val loss" in line and "macro-F1" in line and "UAR" in line for line in epoch_lines)
    stages = [line.split("callbacks: ", 1)[1] for line in lines if "vit_fer.callbacks" in line]
    assert stages == [
        "Epoch 1: training the head only, encoders frozen.",
        "Epoch 2: training the head and the top 1 of 2 encoder layers.",
        "Epoch 3: training the head and the whole encoder.",
    ]
    noise = [line for line in lines if "Warning" in line or "Writing model shards" in line or line.startswith("{'")]
    assert noise == []


def test_integer_labels_need_label_names_which_train_py_accepts(data_dir, tmp_path, capsys):
    from vit_fer import FER_LABELS

    rows = (data_dir / "manifest.csv").read_text().splitlines()
    header = rows[0].split(",")
    column = header.index("label")
    rebased = []
    for row in rows[1:]:
        values = row.split(",")
        values = [str(data_dir / value) if index < 2 else value for index, value in enumerate(values)]
        values[column] = str(FER_LABELS.index(values[column]))
        rebased.append(",".join(values))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join([rows[0], *rebased]))
    with pytest.raises(SystemExit):
        train.main(arguments(manifest, tmp_path / "run"))
    assert "train.py: --dataset_label_names angry disgust" in capsys.readouterr().err
    model_args, data_args, training_args = train.parse_arguments(
        arguments(manifest, tmp_path / "run", "--dataset_label_names", *FER_LABELS)
    )
    dataset = train.load_data(("rgb",), data_args, training_args)
    assert dataset["train"].features["label"].names == list(FER_LABELS)
