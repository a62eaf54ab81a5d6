"""The shipped `evaluate` FER metric module and the Trainer's `compute_metrics`, on hand-computed cases."""

import numpy as np
import pytest
from datasets import Dataset
from tiny_models import make_inputs, write_tiny_vit
from transformers import EvalPrediction, Trainer, TrainingArguments

from vit_fer import FER_LABELS, ViTFERConfig, create_multimodal_vit_model
from vit_fer.evaluation import build_compute_metrics, load_calibration_metric, load_fer_metric


@pytest.fixture(scope="module")
def fer_metric():
    return load_fer_metric()


# 3 classes. Confusion matrix (rows references, columns predictions):
#   [[2, 1, 0],     class 0: recall 2/3, F1 2*2 / (2*2 + 1 FP + 1 FN) = 2/3
#    [1, 1, 0],     class 1: recall 1/2, F1 2*1 / (2*1 + 2 FP + 1 FN) = 2/5
#    [0, 1, 0]]     class 2: recall 0,   F1 0
REFERENCES = [0, 0, 0, 1, 1, 2]
PREDICTIONS = [0, 0, 1, 1, 0, 1]
CONFUSION = [[2, 1, 0], [1, 1, 0], [0, 1, 0]]
RECALLS = [2 / 3, 1 / 2, 0.0]
F1S = [2 / 3, 2 / 5, 0.0]


def test_hand_computed_case(fer_metric):
    results = fer_metric.compute(predictions=PREDICTIONS, references=REFERENCES, num_labels=3)
    assert results["accuracy"] == pytest.approx(3 / 6)
    assert results["uar"] == pytest.approx(sum(RECALLS) / 3)
    assert results["macro_f1"] == pytest.approx(sum(F1S) / 3)
    assert results["per_class_recall"] == pytest.approx(RECALLS)
    assert results["confusion_matrix"] == CONFUSION


def test_class_in_neither_references_nor_predictions_is_not_averaged(fer_metric):
    results = fer_metric.compute(predictions=PREDICTIONS, references=REFERENCES, num_labels=4)
    assert results["uar"] == pytest.approx(sum(RECALLS) / 3)
    assert results["macro_f1"] == pytest.approx(sum(F1S) / 3)
    assert results["per_class_recall"] == pytest.approx([*RECALLS, 0.0])
    assert results["confusion_matrix"] == [[*row, 0] for row in CONFUSION] + [[0, 0, 0, 0]]


def test_class_only_predicted_counts_with_recall_zero(fer_metric):
    # Class 2 is never a reference but predicted once: recall 0 and F1 0 enter the averages (as in scikit-learn).
    results = fer_metric.compute(predictions=[0, 2, 1, 1], references=[0, 0, 1, 1], num_labels=3)
    assert results["uar"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert results["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert results["per_class_recall"] == pytest.approx([1 / 2, 1.0, 0.0])


@pytest.mark.parametrize(
    "predictions, references, message",
    [([0, 3], [0, 1], r"`predictions` .* \[3\]"), ([0, 1], [-1, 1], r"`references` .* \[-1\]"), ([], [], "empty")],
)
def test_bad_inputs_raise(fer_metric, predictions, references, message):
    with pytest.raises(ValueError, match=message):
        fer_metric.compute(predictions=predictions, references=references, num_labels=3)


def test_compute_metrics_flattens_to_scalars_per_label(fer_metric):
    id2label = ViTFERConfig().id2label
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 6, 1])
    logits = np.random.default_rng(0).normal(size=(len(labels), len(FER_LABELS))).astype(np.float32)
    modality_weights = np.full((len(labels), 2), 0.5, dtype=np.float32)
    # Fusion models hand the Trainer a tuple (logits, modality weights, ...).
    metrics = build_compute_metrics(id2label)(EvalPrediction(predictions=(logits, modality_weights), label_ids=labels))

    expected = fer_metric.compute(predictions=logits.argmax(-1), references=labels, num_labels=len(FER_LABELS))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    calibration = load_calibration_metric().compute(predictions=probabilities, references=labels, num_bins=15)
    assert metrics == pytest.approx({
        "accuracy": expected["accuracy"],
        "macro_f1": expected["macro_f1"],
        "uar": expected["uar"],
        **{f"recall_{label}": recall for label, recall in zip(FER_LABELS, expected["per_class_recall"])},
        **{key: calibration[key] for key in ("ece", "nll", "brier")},
    })
    assert all(isinstance(value, float) for value in metrics.values())


def test_compute_metrics_rejects_bad_logits_and_labels():
    compute_metrics = build_compute_metrics({0: "a", 1: "b"})
    with pytest.raises(ValueError, match=r"shape \(num_samples, 2\)"):
        compute_metrics(EvalPrediction(predictions=np.zeros((4, 3)), label_ids=np.zeros(4, dtype=int)))
    with pytest.raises(ValueError, match="label_ids"):
        compute_metrics(EvalPrediction(predictions=np.zeros((4, 2)), label_ids=None))


@pytest.mark.parametrize("id2label, message", [({1: "a", 2: "b"}, "keys"), ({0: "a", 1: "a"}, "distinct")])
def test_bad_id2label_raises(id2label, message):
    with pytest.raises(ValueError, match=message):
        build_compute_metrics(id2label)


def test_trainer_evaluate_logs_fer_metrics(tmp_path):
    model = create_multimodal_vit_model(
        mode="combined", fusion_strategy="late", fusion_type="attention", model_name=write_tiny_vit(tmp_path / "vit")
    )
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path / "out"), per_device_eval_batch_size=4, report_to=[], use_cpu=True
        ),
        eval_dataset=Dataset.from_dict(make_inputs(model, batch_size=6)).with_format("torch"),
        compute_metrics=build_compute_metrics(model.config.id2label),
    )
    metrics = trainer.evaluate()
    expected_keys = {"eval_accuracy", "eval_macro_f1", "eval_uar", *(f"eval_recall_{label}" for label in FER_LABELS)}
    assert expected_keys <= set(metrics)
    assert 0.0 <= metrics["eval_uar"] <= 1.0
