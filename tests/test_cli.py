"""The `vit-fer` command line (synthesize, predict, the command registry) and the prediction pipeline."""

import argparse
import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

from vit_fer.cli import COMMANDS, Command, main, register_command
from vit_fer.configuration_vit_fer import FER_LABELS
from vit_fer.inference import load_fer_pipeline
from vit_fer.thermal import load_rgb_file, load_thermal_file


def first_pair(folder: Path, label: str = "happy") -> tuple[Path, Path]:
    rgb = sorted((folder / "rgb" / label).iterdir())[0]
    return rgb, folder / "thermal" / label / f"{rgb.stem}.png"


def reference_prediction(model_dir: Path, rgb: Path | None, thermal: Path | None):
    """What the saved model says, computed by hand from the Auto classes."""
    model = AutoModelForImageClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=True)
    features = processor(
        images=load_rgb_file(rgb) if rgb else None, thermal_images=load_thermal_file(thermal) if thermal else None
    )
    if rgb and thermal:
        inputs = dict(features)
    else:
        inputs = {"pixel_values": features["pixel_values" if rgb else "thermal_pixel_values"]}
    with torch.no_grad():
        outputs = model(**inputs)
    return outputs.logits[0].softmax(-1), outputs.modality_weights


def test_synthesize_writes_the_benchmark(tmp_path, capsys):
    arguments = ["synthesize", "--num_samples", "9", "--seed", "3", "--image_size", "20"]
    assert main([*arguments, "--output_dir", str(tmp_path / "a")]) == 0
    assert "Wrote 9 RGB + thermal pairs" in capsys.readouterr().out
    main([*arguments, "--output_dir", str(tmp_path / "b")])
    with open(tmp_path / "a" / "manifest.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 9
    for row in rows:
        for column in ("rgb", "thermal"):
            assert (tmp_path / "a" / row[column]).read_bytes() == (tmp_path / "b" / row[column]).read_bytes()


def test_predict_json_matches_the_model(saved_fer_model, synthetic_dataset_dir, capsys):
    model_dir = saved_fer_model("late-attention")
    rgb, thermal = first_pair(synthetic_dataset_dir)
    main(
        ["predict", "--model", str(model_dir), "--rgb", str(rgb), "--thermal", str(thermal), "--top_k", "3", "--json"]
    )
    (result,) = json.loads(capsys.readouterr().out)
    assert result["inputs"] == {"rgb": str(rgb), "thermal": str(thermal)}

    probabilities, weights = reference_prediction(model_dir, rgb, thermal)
    scores, indices = probabilities.topk(3)
    assert [p["label"] for p in result["predictions"]] == [FER_LABELS[i] for i in indices]
    torch.testing.assert_close(torch.tensor([p["score"] for p in result["predictions"]]), scores)
    torch.testing.assert_close(torch.tensor(list(result["modality_weights"].values())), weights[0])
    assert list(result["modality_weights"]) == ["rgb", "thermal"]


def test_predict_text_output(saved_fer_model, synthetic_dataset_dir, capsys):
    rgb, thermal = first_pair(synthetic_dataset_dir, "sad")
    main(["predict", "--model", str(saved_fer_model("late-attention")), "--rgb", str(rgb), "--thermal", str(thermal)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"rgb: {rgb} + thermal: {thermal}"
    assert len(lines) == 1 + 3 + 1  # header, top 3 (default), modality weights
    assert all(line.split()[0] in FER_LABELS for line in lines[1:4])
    assert lines[4].startswith("  modality weights: rgb ")


def test_predict_reports_unpaired_files(saved_fer_model, tmp_path, capsys):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "thermal").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "rgb" / "alone.jpg")
    assert main(["predict", "--model", str(saved_fer_model("late-attention")), "--input_dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "alone.jpg has no thermal image" in error
    # The option the message suggests exists in this command: with it, the pair that is complete gets its result.
    assert "--skip_bad_samples on the command line (train.py, vit-fer predict)" in error
    Image.new("RGB", (8, 8)).save(tmp_path / "rgb" / "pair.jpg")
    Image.new("L", (8, 8)).save(tmp_path / "thermal" / "pair.png")
    model = str(saved_fer_model("late-attention"))
    assert main(["predict", "--model", model, "--input_dir", str(tmp_path), "--json", "--skip_bad_samples"]) == 0
    assert [Path(item["inputs"]["rgb"]).name for item in json.loads(capsys.readouterr().out)] == ["pair.jpg"]


def test_predict_a_folder_of_pairs(saved_fer_model, synthetic_dataset_dir, capsys):
    main(
        [
            "predict",
            "--model",
            str(saved_fer_model("late-attention")),
            "--input_dir",
            str(synthetic_dataset_dir),
            "--json",
            "--top_k",
            "1",
        ]
    )
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 42
    for result in results:
        assert Path(result["inputs"]["rgb"]).stem == Path(result["inputs"]["thermal"]).stem
        assert len(result["predictions"]) == 1


@pytest.mark.parametrize("variant", ["mid-bottleneck", "mid-add"])
def test_predict_with_a_mid_fusion_model(variant, saved_fer_model, synthetic_dataset_dir, capsys):
    model_dir = saved_fer_model(variant)
    model = AutoModelForImageClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=True)
    rgb, thermal = first_pair(synthetic_dataset_dir)
    for given in ({"rgb": rgb, "thermal": thermal}, {"rgb": rgb}, {"thermal": thermal}):
        options = [argument for name, path in given.items() for argument in (f"--{name}", str(path))]
        main(["predict", "--model", str(model_dir), *options, "--json", "--top_k", "7"])
        (result,) = json.loads(capsys.readouterr().out)
        # A mid-fusion model reads each modality under its own name, either one alone.
        features = processor(
            images=load_rgb_file(given["rgb"]) if "rgb" in given else None,
            thermal_images=load_thermal_file(given["thermal"]) if "thermal" in given else None,
        )
        with torch.no_grad():
            probabilities = model(**features).logits[0].softmax(-1)
        scores = {p["label"]: p["score"] for p in result["predictions"]}
        torch.testing.assert_close(torch.tensor([scores[label] for label in FER_LABELS]), probabilities)


def test_predict_with_a_thermal_only_model(saved_fer_model, synthetic_dataset_dir, capsys):
    model_dir = saved_fer_model("thermal")
    _, thermal = first_pair(synthetic_dataset_dir)
    main(["predict", "--model", str(model_dir), "--thermal", str(thermal), "--json", "--top_k", "7"])
    (result,) = json.loads(capsys.readouterr().out)
    probabilities, _ = reference_prediction(model_dir, None, thermal)
    scores = {p["label"]: p["score"] for p in result["predictions"]}
    torch.testing.assert_close(torch.tensor([scores[label] for label in FER_LABELS]), probabilities)
    assert "modality_weights" not in result

    rgb, _ = first_pair(synthetic_dataset_dir)
    assert main(["predict", "--model", str(model_dir), "--rgb", str(rgb)]) == 2
    assert "vit-fer predict: error: This ViTForFER reads ['thermal']" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [[], ["--rgb", "a.jpg", "--input_dir", "."]])
def test_predict_needs_either_images_or_a_folder(saved_fer_model, extra, capsys):
    assert main(["predict", "--model", str(saved_fer_model("late-attention")), *extra]) == 2
    assert "vit-fer predict: error: give --rgb and/or --thermal, or --input_dir" in capsys.readouterr().err


def test_pipeline_takes_batches_and_bare_images(saved_fer_model, synthetic_dataset_dir):
    pairs = [first_pair(synthetic_dataset_dir, label) for label in ("angry", "fear")]
    classifier = load_fer_pipeline(saved_fer_model("late-attention"))
    results = classifier([{"rgb": str(rgb), "thermal": str(thermal)} for rgb, thermal in pairs], top_k=2)
    assert len(results) == 2 and all(len(result["predictions"]) == 2 for result in results)
    thermal_classifier = load_fer_pipeline(saved_fer_model("thermal"))
    bare = thermal_classifier(load_thermal_file(pairs[0][1]), top_k=1)
    keyed = thermal_classifier({"thermal": str(pairs[0][1])}, top_k=1)
    assert bare == keyed


def test_command_registry_is_extensible(capsys):
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", required=True)

    def run(args: argparse.Namespace) -> int:
        print(f"hello {args.name}")
        return 0

    register_command(Command("hello", "Say hello.", add_arguments, run))
    try:
        assert main(["hello", "--name", "thermal"]) == 0
        assert capsys.readouterr().out == "hello thermal\n"
        with pytest.raises(ValueError, match="already registered"):
            register_command(Command("hello", "Again.", add_arguments, run))
    finally:
        COMMANDS.pop("hello")


@pytest.mark.parametrize(
    "model, message",
    [
        ("{tmp}/no/such/run", "--model {tmp}/no/such/run does not exist."),
        ("./run", "--model ./run does not exist."),
        ("{tmp}", "--model {tmp} is not a saved vit-fer model (no readable config.json)"),
        ("{vit}", "--model {vit} is not a saved vit-fer model (a 'vit' model)"),
        ("someone/vit-fer-model", "--model someone/vit-fer-model: no such folder here, and no loadable Hub model"),
    ],
    ids=["missing-path", "missing-relative", "empty-folder", "plain-vit", "hub-id-offline"],
)
def test_predict_names_a_model_path_that_is_not_a_vit_fer_model(
    model, message, tiny_vit_dir, synthetic_dataset_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    rgb, thermal = first_pair(synthetic_dataset_dir)
    model = model.format(tmp=tmp_path, vit=tiny_vit_dir)
    assert main(["predict", "--model", model, "--rgb", str(rgb), "--thermal", str(thermal)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"vit-fer predict: error: {message.format(tmp=tmp_path, vit=tiny_vit_dir)}"), lines
    assert len(lines) == 1 and "Traceback" not in lines[0]


def test_a_failing_file_in_a_folder_is_named_and_the_other_pairs_get_results(
    saved_fer_model, synthetic_dataset_dir, tmp_path, capsys
):
    for modality in ("rgb", "thermal"):
        (tmp_path / modality).mkdir()
    pairs = [first_pair(synthetic_dataset_dir, label) for label in ("angry", "fear", "happy")]
    for index, (rgb, thermal) in enumerate(pairs):
        (tmp_path / "rgb" / f"face{index}{rgb.suffix}").write_bytes(rgb.read_bytes())
        (tmp_path / "thermal" / f"face{index}{thermal.suffix}").write_bytes(thermal.read_bytes())
    broken = tmp_path / "rgb" / f"face1{pairs[1][0].suffix}"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated mid-file, as an interrupted copy leaves it

    status = main(["predict", "--model", str(saved_fer_model("late-attention")), "--input_dir", str(tmp_path), "--json"])
    captured = capsys.readouterr()
    assert status == 2
    results = json.loads(captured.out)
    assert [Path(result["inputs"]["rgb"]).stem for result in results] == ["face0", "face1", "face2"]
    assert "error" in results[1] and str(broken) in results[1]["error"]
    assert all(len(results[index]["predictions"]) == 3 for index in (0, 2))
    assert f"vit-fer predict: error: {broken}" in captured.err
