"""Model cards: built from a training output folder (a real tiny model, its processor, the run's JSON files and
plots), parsed back with `ModelCard.load`, and the card's own usage snippet run where vit_fer cannot be imported.
Publishing is tested on the paths a machine without the Hub takes: offline, not logged in, Hub unreachable."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from transformers import AutoConfig, AutoModelForImageClassification
from tiny_models import VARIANTS

from vit_fer.cli import build_parser
from vit_fer.hub import repository_files
from vit_fer.image_processing_vit_fer import ViTFERImageProcessor
from vit_fer.configuration_vit_fer import MIN_TRANSFORMERS_VERSION
from vit_fer.model_card import (
    LAYOUT_TEMPLATE,
    SYNTHETIC_DATASET,
    TEMPLATE_DIR,
    build_model_card,
    card_context,
    count_parameters,
    source_url,
    write_model_card,
)


pytestmark = pytest.mark.end_to_end


BASE_CHECKPOINT = "google/vit-base-patch16-224-in21k"
SUBPROCESS_ENV = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HF_TOKEN")}


def write_run_folder(
    folder: Path, saved_model: Path, variant: str, seed: int = 0, base_checkpoint: str | None = BASE_CHECKPOINT
) -> dict:
    """What train.py leaves in its output folder, at toy size: the saved model (`saved_fer_model`), its processor,
    metrics, run config, plots. Returns all_results.json's content (random metrics, so that each value is distinct)."""
    shutil.copytree(saved_model, folder)
    # A processor unlike the default, so that the card visibly reads the saved one.
    processor = ViTFERImageProcessor(size=32, thermal_temperature_range=(25.0, 38.5), thermal_image_mean=0.4)
    processor.save_pretrained(folder)
    id2label = json.loads((folder / "config.json").read_text())["id2label"]
    labels = [id2label[str(index)] for index in range(len(id2label))]

    rng = np.random.default_rng(seed)
    results = {"epoch": 3.0, "train_runtime": 95.5, "train_loss": 1.21}
    for prefix in ("eval", "test"):
        for key in ("accuracy", "macro_f1", "uar", "loss", *(f"recall_{label}" for label in labels)):
            results[f"{prefix}_{key}"] = float(rng.uniform(0.05, 0.95))
        results[f"{prefix}_runtime"] = 1.5
    (folder / "all_results.json").write_text(json.dumps(results))
    (folder / "eval_results.json").write_text(json.dumps({k: v for k, v in results.items() if k.startswith("eval_")}))
    (folder / "test_results.json").write_text(json.dumps({k: v for k, v in results.items() if k.startswith("test_")}))
    mode = VARIANTS[variant]["mode"]
    run_config = {
        "model": {"model_name_or_path": base_checkpoint, "mode": mode, **VARIANTS[variant]},
        "data": {"dataset_dir": None, "dataset_name": None, "image_size": 32},
        "training": {
            "strategy": "progressive",
            "head_only_epochs": 1,
            "layers_per_stage": 2,
            "epochs_per_stage": 1,
            "learning_rate": 1e-3,
            "backbone_lr_multiplier": 0.1,
            "lr_scheduler_type": "cosine",
            "warmup_steps": 0.1,
            "num_train_epochs": 3,
            "per_device_train_batch_size": 8,
            "seed": 42,
            "bf16": False,
            "load_best_model_at_end": True,
            "metric_for_best_model": "macro_f1",
        },
        "hardware": "1 process(es), 2 CPU threads (x86_64), torch 2.13.0+cpu",
        "dataset_name": "synthetic RGB-thermal FER (vit-fer synthesize)",
        "vit_fer_version": "0.1.0",
    }
    (folder / "run_config.json").write_text(json.dumps(run_config))
    for name in ("confusion_matrix.png", "learning_curves.png"):
        figure, axes = plt.subplots(figsize=(1, 1))
        axes.plot([0, 1], [1, 0])
        figure.savefig(folder / name)
        plt.close(figure)
    return results


def _edit_json(path: Path, edit) -> None:
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))


@pytest.fixture(scope="module")
def late_fusion_run(tmp_path_factory, saved_fer_model) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("late") / "late-attention-run"
    return folder, write_run_folder(folder, saved_fer_model("late-attention"), "late-attention")


@pytest.mark.parametrize(
    "variant", ["rgb", "thermal", "early-concat", "late-attention", "late-prediction-weighted", "mid-bottleneck"]
)
def test_card_metadata_and_model_index_match_the_run(variant, saved_fer_model, tmp_path):
    folder = tmp_path / f"{variant}-run"
    results = write_run_folder(folder, saved_fer_model(variant), variant)
    path = write_model_card(folder, repo_id="someone/vit-fer-test")
    assert path == folder / "README.md"

    card = ModelCard.load(path)
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-classification"
    assert data.license == "apache-2.0"
    assert data.base_model == BASE_CHECKPOINT
    assert {"vit", "facial-expression-recognition"} <= set(data.tags)
    reads_thermal = variant != "rgb"
    assert ("thermal" in data.tags) == reads_thermal
    if VARIANTS[variant]["mode"] == "combined":
        assert VARIANTS[variant]["fusion_strategy"] + "-fusion" in data.tags
    assert data.model_name == "vit-fer-test"
    assert data.transformers_version == f">={MIN_TRANSFORMERS_VERSION}"

    # Every (split, metric) of the model-index carries the value of all_results.json.
    reported = {(result.dataset_split, result.metric_type): result.metric_value for result in data.eval_results}
    expected = {}
    for prefix, split in (("eval", "validation"), ("test", "test")):
        expected[(split, "accuracy")] = results[f"{prefix}_accuracy"]
        expected[(split, "f1")] = results[f"{prefix}_macro_f1"]
        expected[(split, "recall")] = results[f"{prefix}_uar"]
    assert reported == expected
    assert {result.task_type for result in data.eval_results} == {"image-classification"}
    assert {result.dataset_name for result in data.eval_results} == {"synthetic RGB-thermal FER (vit-fer synthesize)"}

    text = card.text
    config = json.loads((folder / "config.json").read_text())
    for index, label in config["id2label"].items():
        assert f"| {label} | {results[f'eval_recall_{label}']:.4f} | {results[f'test_recall_{label}']:.4f} |" in text
    assert f"| UAR | {results['eval_uar']:.4f} | {results['test_uar']:.4f} |" in text
    assert "![Confusion matrix](confusion_matrix.png)" in text
    assert "![Learning curves](learning_curves.png)" in text
    assert f"{count_parameters(folder):,}" in text
    assert 'from_pretrained("someone/vit-fer-test", trust_remote_code=True)' in text
    # The thermal input description comes from the saved processor's configuration.
    assert ("25.0 °C → 0" in text and "38.5 °C → 1" in text) == reads_thermal
    assert ("pipeline(" in text) == (variant == "rgb")
    assert "Article 5(1)(f)" in text
    # Titled by the design and the repository; the source, a citation and the transformers it needs.
    title = text.lstrip().splitlines()[0]
    assert title.startswith("# someone/vit-fer-test: ") and title.endswith("for facial expression recognition")
    assert ("RGB + thermal" in title) == (VARIANTS[variant]["mode"] == "combined")
    assert f"[vit-fer]({source_url()})" in text and source_url().startswith("https://")
    assert "@software{vit_fer," in text and f"url     = {{{source_url()}}}" in text
    assert f'pip install "transformers>={MIN_TRANSFORMERS_VERSION}"' in text
    assert "{{" not in text and "{%" not in text


@pytest.mark.parametrize(
    "variant, design, head_input",
    [
        ("mid-bottleneck", "reads its tokens plus 4 shared, learned bottleneck tokens", 32),
        ("mid-cross_attention", "through a cross-attention block", 32),
        ("mid-concat", "the two token sequences, each with a learned modality\nembedding, are concatenated", 64),
        ("mid-add", "summed position by\nposition", 32),
    ],
)
def test_mid_fusion_card_describes_the_design(variant, design, head_input, saved_fer_model, tmp_path):
    folder = tmp_path / f"{variant}-run"
    write_run_folder(folder, saved_fer_model(variant), variant)
    text = ModelCard.load(write_model_card(folder)).text
    head_width = AutoConfig.from_pretrained(folder).classifier_hidden_size  # hidden_size // 2, as in the original
    assert "`MidFusionViT`: mid fusion — one Vision Transformer stream per modality up to layer 1 of 2" in text
    assert design in text
    assert "| encoders (2, one per modality) |" in text
    assert f"Linear({head_input}, {head_width})" in text
    assert "{{" not in text and "{%" not in text


@pytest.mark.parametrize("variant", ["thermal", "early-add", "late-prediction-weighted", "mid-cross_attention"])
def test_templates_render_the_same_through_model_card_from_template(variant, saved_fer_model, tmp_path):
    folder = tmp_path / f"{variant}-run"
    write_run_folder(folder, saved_fer_model(variant), variant, base_checkpoint=None)
    card_data, context = card_context(folder)
    from_template = ModelCard.from_template(card_data, template_path=str(TEMPLATE_DIR / LAYOUT_TEMPLATE), **context)
    assert from_template.content == build_model_card(folder).content
    # No blank line inside a table, whatever the branches taken.
    assert not re.search(r"\|\n\n\|", from_template.text)


def test_parameter_count_is_the_models(late_fusion_run):
    model = AutoModelForImageClassification.from_pretrained(late_fusion_run[0])
    assert count_parameters(late_fusion_run[0]) == model.num_parameters()


def test_metadata_names_hub_repositories_only(saved_fer_model, tiny_vit_dir, tmp_path):
    local = tmp_path / "local-run"
    write_run_folder(local, saved_fer_model("rgb"), "rgb", base_checkpoint=str(tiny_vit_dir))
    card = build_model_card(local)
    assert card.data.base_model is None and card.data.datasets is None
    # The synthetic benchmark, then a local folder, are named for what they are (not the `imagefolder` builder).
    assert {(r.dataset_type, r.dataset_name) for r in card.data.eval_results} == {SYNTHETIC_DATASET}
    assert f"`{tiny_vit_dir}`" in card.text
    _edit_json(local / "run_config.json", lambda c: (c["data"].update(dataset_dir="/data/KTFE"), c.update(dataset_name="/data/KTFE")))
    assert {result.dataset_type for result in build_model_card(local).data.eval_results} == {"KTFE"}
    assert card.data.model_name == "local-run"  # the folder's name without a repo id

    _edit_json(local / "run_config.json", lambda c: c["data"].update(dataset_name="someone/thermal-faces"))
    card = build_model_card(local)
    assert card.data.datasets == ["someone/thermal-faces"]
    assert {result.dataset_type for result in card.data.eval_results} == {"someone/thermal-faces"}

    _edit_json(local / "run_config.json", lambda c: c["data"].update(dataset_name=str(tiny_vit_dir)))
    assert build_model_card(local).data.datasets is None

    scratch = tmp_path / "scratch-run"
    write_run_folder(scratch, saved_fer_model("rgb"), "rgb", base_checkpoint=None)
    card = build_model_card(scratch)
    assert card.data.base_model is None
    assert "trained from randomly initialised encoders" in card.text


@pytest.mark.parametrize(
    "file, edit, message",
    [
        ("all_results.json", lambda r: r.pop("test_recall_fear"), "test_recall_fear"),
        ("all_results.json", lambda r: r.update(eval_uar=float("nan")), "eval_uar"),
        ("all_results.json", lambda r: r.update(eval_accuracy="0.5"), "eval_accuracy"),
        ("run_config.json", lambda c: c["training"].update(strategy="lora"), "strategy"),
        ("run_config.json", lambda c: c.pop("hardware"), "hardware"),
        ("config.json", lambda c: c.update(architectures=["ViTForImageClassification"]), "architectures"),
    ],
)
def test_inconsistent_run_files_raise_naming_the_key(file, edit, message, late_fusion_run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(late_fusion_run[0], folder)
    _edit_json(folder / file, edit)
    with pytest.raises(ValueError, match=re.escape(message)):
        build_model_card(folder)


@pytest.mark.parametrize("results", [None, {"train_loss": 1.2, "epoch": 2.0}, {"eval_accuracy": 0.5, "eval_loss": 1.1}])
def test_card_of_a_folder_train_py_did_not_write(results, saved_fer_model, tmp_path):
    """A folder saved by the user's own Trainer script: the model, its processor, maybe the Trainer's metrics, no
    run_config.json. The card says what it cannot know instead of refusing."""
    folder = tmp_path / "my-trainer-run"
    shutil.copytree(saved_fer_model("late-attention"), folder)
    if results is not None:
        (folder / "all_results.json").write_text(json.dumps(results))
    args = build_parser().parse_args(["card", str(folder)])
    assert args.run(args) == 0
    card = ModelCard.load(folder / "README.md")
    assert card.text.lstrip().startswith("# Late-fusion ViT, RGB + thermal (attention feature fusion)")
    assert "records no training run" in card.text and "Not recorded in this folder" in card.text
    evaluated = results is not None and "eval_accuracy" in results
    assert ("no evaluation results" in card.text) != evaluated
    if evaluated:
        assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("accuracy", 0.5)]
        assert "| macro-F1 | – |" in card.text and "Recall per expression" not in card.text
    else:
        assert card.data.eval_results is None
    assert "{{" not in card.text and "{%" not in card.text

    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(SystemExit, match="preprocessor_config.json"):
        args.run(args)


def test_card_command_writes_the_card(late_fusion_run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(late_fusion_run[0], folder)
    parser = build_parser()
    args = parser.parse_args(["card", str(folder), "--license", "cc-by-nc-4.0"])
    assert args.run(args) == 0
    assert ModelCard.load(folder / "README.md").data.license == "cc-by-nc-4.0"

    args = parser.parse_args(["card", str(tmp_path / "absent")])
    with pytest.raises(SystemExit, match="config.json"):
        args.run(args)


def test_repository_files_are_the_complete_repository(late_fusion_run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(late_fusion_run[0], folder)
    write_model_card(folder)
    # Training leftovers that must not reach the Hub.
    torch.save({"pickled": True}, folder / "training_args.bin")
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "config.json").write_text("{}")
    # The explanation overlays the card links to travel with it.
    (folder / "explanations").mkdir()
    shutil.copy(folder / "confusion_matrix.png", folder / "explanations" / "0000_fear.png")

    files = repository_files(folder)
    assert {
        "README.md",
        "config.json",
        "model.safetensors",
        "configuration_vit_fer.py",
        "modeling_vit_fer.py",
        "preprocessor_config.json",
        "image_processing_vit_fer.py",
        "all_results.json",
        "run_config.json",
        "confusion_matrix.png",
        "learning_curves.png",
    } <= set(files)
    assert "training_args.bin" not in files
    assert {name for name in files if "/" in name} == {"explanations/0000_fear.png"}  # no checkpoint files

    (folder / "image_processing_vit_fer.py").unlink()
    with pytest.raises(FileNotFoundError, match="image_processing_vit_fer.py"):
        repository_files(folder)


# `vit-fer publish FOLDER someone/vit-fer-test [EXTRA ...]` once per list of extra options given (JSON), in one fresh
# process (huggingface_hub reads the environment when imported): each call's exit status and what it wrote to stderr.
PUBLISH = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from vit_fer.cli import main
    results = []
    for extra in json.loads(sys.argv[2]):
        error = io.StringIO()
        with contextlib.redirect_stderr(error):
            try:
                status = main(["publish", sys.argv[1], "someone/vit-fer-test", *extra])
            except SystemExit as stop:  # as the interpreter ends: a message is printed, status 1; a number: the status
                status = 1 if isinstance(stop.code, str) else stop.code
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
        results.append({"status": status, "stderr": error.getvalue()})
    print(json.dumps(results))
    """
)


@pytest.mark.parametrize(
    "environment, message",
    [
        ({"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_placeholder"}, "offline mode is on"),
        ({"HF_HUB_OFFLINE": "0"}, "not logged in"),
        (
            {"HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_placeholder", "HF_ENDPOINT": "http://127.0.0.1:9"},
            "http://127.0.0.1:9 is unreachable",
        ),
    ],
    ids=["offline", "no-token", "unreachable"],
)
def test_publish_fails_clearly_without_the_hub_and_changes_nothing(environment, message, late_fusion_run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(late_fusion_run[0], folder)
    (folder / "README.md").write_text("# My hand-edited card\n")
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    completed = subprocess.run(
        [sys.executable, "-c", PUBLISH, str(folder), json.dumps([[], ["--write_card"]])],
        capture_output=True,
        text=True,
        # An empty HF_HOME: no stored token, whatever this machine has.
        env={**SUBPROCESS_ENV, "HF_HOME": str(tmp_path / "hf-home"), **environment},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    assert len(results) == 2  # without and with --write_card
    for result in results:
        assert result["status"] == 1
        last_line = result["stderr"].strip().splitlines()[-1]
        assert last_line.startswith("vit-fer publish: Cannot publish"), result["stderr"][-2000:]
        assert message in last_line, result["stderr"][-2000:]
    # The upload was never attempted: the hand-edited card and every other file are as they were.
    assert {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()} == before


def test_publish_of_an_incomplete_folder_is_refused_in_one_line(late_fusion_run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(late_fusion_run[0], folder)
    (folder / "model.safetensors").unlink()
    (folder / "README.md").write_text("# My hand-edited card\n")
    completed = subprocess.run([sys.executable, "-c", PUBLISH, str(folder), json.dumps([[]])], capture_output=True,
                               text=True, env={**SUBPROCESS_ENV, "HF_HOME": str(tmp_path / "hf-home")},
                               timeout=300)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    (result,) = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["status"] == 2
    assert result["stderr"].strip().splitlines()[-1].startswith("vit-fer publish: error: ")
    assert "safetensors" in result["stderr"] and "Traceback" not in result["stderr"] + completed.stderr
    assert (folder / "README.md").read_text() == "# My hand-edited card\n"


def test_card_usage_snippet_runs_without_vit_fer(saved_fer_model, tmp_path):
    """The card's "How to use" code, run verbatim on a copy of the folder in a process where vit_fer cannot be
    imported: the card's promise to a Hub user."""
    folder = tmp_path / "pair-run"
    write_run_folder(folder, saved_fer_model("early-concat"), "early-concat")
    card = build_model_card(folder)  # no repo id: the snippet reads path/to/<folder name>
    snippet = re.search(r"## How to use.*?```python\n(.*?)```", card.text, re.DOTALL).group(1)

    workdir = tmp_path / "user"
    shutil.copytree(folder, workdir / "path" / "to" / folder.name)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(workdir / "face.jpg")
    # 16-bit radiometric counts around 34 °C in centi-kelvin.
    Image.fromarray(rng.integers(30700, 30800, (48, 48), dtype=np.uint16)).save(workdir / "face_thermal.png")

    program = 'import sys\nsys.modules["vit_fer"] = None\n' + snippet
    completed = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        cwd=workdir,
        env={**SUBPROCESS_ENV, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    labels = json.loads((folder / "config.json").read_text())["id2label"].values()
    assert completed.stdout.strip().splitlines()[-1] in labels


def test_the_license_every_card_states_is_the_one_the_project_ships():
    """Cards and pyproject say Apache-2.0: the repository carries that license's full text."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "LICENSE").read_text()
    assert " ".join(text.split()[:4]) == "Apache License Version 2.0,"
    assert "TERMS AND CONDITIONS FOR USE" in text and "END OF TERMS AND CONDITIONS" in text
    assert re.search(r'^license = "Apache-2.0"$', (root / "pyproject.toml").read_text(), re.MULTILINE)
    assert build_parser().parse_args(["card", str(root)]).license == "apache-2.0"  # the cards' default
