"""Calibration: the shipped ECE / NLL / Brier metric, temperature scaling, and calibrated pipeline scores."""

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from PIL import Image

from vit_fer.calibration import TEMPERATURE_RANGE, calibration_scores, fit_temperature, plot_reliability_diagram
from vit_fer.configuration_vit_fer import ViTFERConfig
from vit_fer.evaluation import load_calibration_metric
from vit_fer.image_processing_vit_fer import ViTFERImageProcessor
from vit_fer.inference import load_fer_pipeline
from vit_fer.modeling_vit_fer import ViTForFER


@pytest.fixture(scope="module")
def calibration_metric():
    return load_calibration_metric()


def test_metric_on_a_hand_computed_case(calibration_metric):
    # Two samples: confident and right (0.9), unsure and wrong (0.6 on the wrong class).
    results = calibration_metric.compute(predictions=[[0.9, 0.1], [0.6, 0.4]], references=[0, 1], num_bins=10)
    assert results["ece"] == pytest.approx((abs(1 - 0.9) + abs(0 - 0.6)) / 2)
    assert results["nll"] == pytest.approx(-(np.log(0.9) + np.log(0.4)) / 2)
    assert results["brier"] == pytest.approx(((0.1**2 + 0.1**2) + (0.6**2 + 0.6**2)) / 2)
    assert results["bin_count"][8] == 1 and results["bin_count"][5] == 1 and sum(results["bin_count"]) == 2
    assert results["bin_accuracy"][8] == 1.0 and results["bin_accuracy"][5] == 0.0


def test_perfectly_calibrated_predictions_have_no_gap(calibration_metric):
    # In each bin the accuracy equals the confidence: 3 of 4 right at 0.75.
    predictions = [[0.75, 0.25]] * 4
    results = calibration_metric.compute(predictions=predictions, references=[0, 0, 0, 1])
    assert results["ece"] == pytest.approx(0.0)


@pytest.mark.parametrize(
    "predictions, references, message",
    [([[2.0, -1.0]], [0], "probabilities"), ([[0.5, 0.5]], [2], "references"), ([[0.5, 0.5], [1.0]], [0, 0], "one probability per class")],
)
def test_bad_inputs_raise(calibration_metric, predictions, references, message):
    with pytest.raises(ValueError, match=message):
        calibration_metric.compute(predictions=predictions, references=references)


def test_temperature_scaling_recovers_the_overconfidence_factor():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3000, 7)) * 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(7, p=row) for row in probabilities])
    overconfident = 3.0 * logits  # labels were drawn from softmax(logits): the right temperature is 3
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    before, after = calibration_scores(overconfident, labels), calibration_scores(overconfident, labels, temperature)
    assert after["ece"] < before["ece"] / 3 and after["nll"] < before["nll"]


def test_a_degenerate_validation_split_gives_a_bounded_temperature(caplog):
    # Every sample wrong with a wide margin: the likelihood keeps growing as T goes to infinity (uniform scores).
    logits = np.tile([0.0, 8.0, 0.0], (20, 1))
    temperature = fit_temperature(logits, np.zeros(20, dtype=int))
    assert temperature == TEMPERATURE_RANGE[1]
    assert "outside" in caplog.text


def test_reliability_diagram_is_written(tmp_path):
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(50, 7)), rng.integers(0, 7, 50)
    path = plot_reliability_diagram(
        {"uncalibrated": calibration_scores(logits, labels), "calibrated": calibration_scores(logits, labels, 2.0)},
        tmp_path / "reliability.png",
    )
    assert Image.open(path).size[0] > Image.open(path).size[1] > 100


def test_config_rejects_a_non_positive_temperature():
    with pytest.raises(StrictDataclassClassValidationError, match="calibration_temperature"):
        ViTFERConfig(calibration_temperature=0.0)


def test_pipeline_reports_calibrated_probabilities_and_forward_stays_raw(saved_fer_model, tmp_path):
    folder = saved_fer_model("rgb")
    model = ViTForFER.from_pretrained(folder).eval()
    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "face.png")
    plain = load_fer_pipeline(folder)(str(tmp_path / "face.png"), top_k=7)

    model.config.calibration_temperature = 2.5
    model.save_pretrained(tmp_path / "calibrated")
    ViTFERImageProcessor.from_pretrained(folder).save_pretrained(tmp_path / "calibrated")
    calibrated_pipeline = load_fer_pipeline(tmp_path / "calibrated")
    calibrated = calibrated_pipeline(str(tmp_path / "face.png"), top_k=7)

    inputs = calibrated_pipeline.image_processor(images=Image.open(tmp_path / "face.png"))
    with torch.no_grad():
        logits = calibrated_pipeline.model(**inputs).logits[0]
        raw = model(**inputs).logits[0]
    torch.testing.assert_close(logits, raw)  # the temperature never touches forward
    expected = (logits / 2.5).softmax(-1)
    for entry in calibrated["predictions"]:
        assert entry["score"] == pytest.approx(float(expected[model.config.label2id[entry["label"]]]), abs=1e-5)
    # Same ranking, softer scores.
    assert [p["label"] for p in calibrated["predictions"]] == [p["label"] for p in plain["predictions"]]
    assert calibrated["predictions"][0]["score"] < plain["predictions"][0]["score"]
