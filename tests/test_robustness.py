"""The robustness report: what each corruption does to the images, what each architecture is scored on, and
`vit-fer evaluate` on a saved model."""

import json

import numpy as np
import pytest
from PIL import Image

from vit_fer.cli import main
from vit_fer.data import load_fer_dataset
from vit_fer.image_processing_vit_fer import ViTFERImageProcessor
from vit_fer.inference import load_fer_pipeline
from vit_fer.robustness import CORRUPTIONS, robustness_report


CORRUPTION = {corruption.name: corruption for corruption in CORRUPTIONS}
PER_DEGREE = 1 / 20  # the default window: 20-40 °C


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    return {"rgb": rng.uniform(0.2, 0.6, (3, 16, 16)).astype(np.float32),
            "thermal": np.repeat(rng.uniform(0.3, 0.7, (1, 16, 16)), 3, axis=0).astype(np.float32)}  # fmt: skip


def test_thermal_offset_and_noise_are_in_degrees(pair):
    rng = np.random.default_rng(0)
    shifted = CORRUPTION["thermal_offset"].apply(pair, 2.0, PER_DEGREE, rng)
    np.testing.assert_allclose(shifted["thermal"], pair["thermal"] + 0.1, atol=1e-6)  # +2 °C in a 20 °C window
    assert shifted["rgb"] is pair["rgb"]
    noisy = CORRUPTION["thermal_noise"].apply(pair, 1.0, PER_DEGREE, rng)
    assert np.std(noisy["thermal"] - pair["thermal"]) == pytest.approx(PER_DEGREE, rel=0.15)
    # One temperature per pixel: the 3 replicated channels get the same noise.
    np.testing.assert_array_equal(noisy["thermal"][0], noisy["thermal"][2])


def test_rgb_brightness_blur_and_misregistration(pair):
    rng = np.random.default_rng(0)
    brighter = CORRUPTION["rgb_brightness"].apply(pair, 1.5, PER_DEGREE, rng)["rgb"]
    np.testing.assert_allclose(brighter, np.clip(pair["rgb"] * 1.5, 0, 1), atol=1e-6)
    blurred = CORRUPTION["rgb_blur"].apply(pair, 2.0, PER_DEGREE, rng)["rgb"]
    assert blurred.shape == pair["rgb"].shape and blurred.std() < 0.5 * pair["rgb"].std()
    moved = CORRUPTION["misregistration"].apply(pair, 4, PER_DEGREE, rng)
    np.testing.assert_array_equal(moved["thermal"][:, :, 4:], pair["thermal"][:, :, :-4])
    np.testing.assert_array_equal(moved["rgb"], pair["rgb"])


@pytest.fixture(scope="module")
def test_split(synthetic_dataset_dir):
    return load_fer_dataset(synthetic_dataset_dir, validation_size=0.2, test_size=0.3)["test"]


def test_report_of_a_late_fusion_model(saved_fer_model, test_split, tmp_path):
    classifier = load_fer_pipeline(saved_fer_model("late-attention"))
    report = robustness_report(classifier.model, classifier.image_processor, test_split, tmp_path)
    assert json.loads((tmp_path / "robustness.json").read_text()) == report
    assert Image.open(tmp_path / "robustness.png").size[0] > 800
    # Clean accuracy is the pipeline's accuracy on the same files.
    predictions = [classifier({"rgb": s["rgb"], "thermal": s["thermal"]}, top_k=1)["predictions"][0]["label"]
                   for s in test_split]  # fmt: skip
    names = test_split.features["label"].names
    accuracy = np.mean([p == names[label] for p, label in zip(predictions, test_split["label"])])
    assert report["clean"]["accuracy"] == pytest.approx(accuracy)
    assert set(report["missing_modality"]) == {"rgb", "thermal"}
    assert all("accuracy" in result for result in report["missing_modality"].values())
    assert set(report["corruptions"]) == set(CORRUPTION)
    for result in report["corruptions"].values():
        assert len(result["accuracy"]) == len(result["severities"]) >= 3


def test_early_fusion_says_why_it_cannot_lose_a_modality(saved_fer_model, test_split):
    classifier = load_fer_pipeline(saved_fer_model("early-concat"))
    report = robustness_report(classifier.model, classifier.image_processor, test_split)
    for result in report["missing_modality"].values():
        assert "needs both modalities" in result["skipped"]


def test_a_thermal_model_gets_thermal_corruptions_only(saved_fer_model, test_split):
    classifier = load_fer_pipeline(saved_fer_model("thermal"))
    report = robustness_report(classifier.model, classifier.image_processor, test_split)
    assert set(report["corruptions"]) == {"thermal_noise", "thermal_offset"}
    assert "single-modality" in report["missing_modality"]["thermal"]["skipped"]


def test_evaluate_command(saved_fer_model, synthetic_dataset_dir, tmp_path, capsys):
    # `vit-fer evaluate` as the console script runs it: its main, in this process.
    status = main(["evaluate", "--model", str(saved_fer_model("mid-bottleneck")), "--data", str(synthetic_dataset_dir),
                   "--output_dir", str(tmp_path)])  # fmt: skip
    output = capsys.readouterr()
    assert status == 0, output.err[-2000:]
    assert "misregistration 8" in output.out and "thermal missing" in output.out
    report = json.loads((tmp_path / "robustness.json").read_text())
    assert report["num_samples"] > 0 and (tmp_path / "robustness.png").is_file()
