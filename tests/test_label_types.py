"""train.py on manifests whose label column holds a list of class names (multi-label), a probability vector (soft
labels, FER+ style), or numbers (regression): the model's problem type, the metrics that fit it, and the card."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard
from train_script import train, user_error

from vit_fer import FER_LABELS, load_fer_dataset, synthesize_dataset


TINY = [
    "--image_size", "32", "--patch_size", "8", "--hidden_size", "32", "--num_hidden_layers", "2",
    "--num_attention_heads", "4", "--intermediate_size", "64", "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "16", "--learning_rate", "1e-3", "--disable_tqdm", "true", "--seed", "7",
    "--num_train_epochs", "1", "--mode", "combined", "--fusion_strategy", "late", "--test_reports", "false",
]  # fmt: skip
# Valence and arousal of each expression (a circumplex placement), for regression targets.
CIRCUMPLEX = {"angry": (-0.6, 0.8), "disgust": (-0.7, 0.3), "fear": (-0.6, 0.7), "happy": (0.8, 0.5),
              "neutral": (0.0, 0.0), "sad": (-0.7, -0.4), "surprised": (0.3, 0.8)}  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "fer"
    return synthesize_dataset(folder, num_samples=56, image_size=32, seed=3, num_subjects=7, progress=False)


def rows(data_dir: Path) -> list[dict]:
    with open(data_dir / "manifest.csv", newline="") as file:
        return [
            {**row, "rgb": str(data_dir / row["rgb"]), "thermal": str(data_dir / row["thermal"])}
            for row in csv.DictReader(file)
        ]


def write_jsonl(path: Path, samples: list[dict]) -> Path:
    path.write_text("".join(json.dumps(sample) + "\n" for sample in samples))
    return path


def multi_label(label: str, index: int) -> list[str]:
    return [label] if index % 3 else [label, FER_LABELS[(FER_LABELS.index(label) + 1) % 7]]


def soft(label: str, index: int) -> list[float]:
    votes = np.full(7, 0.3 / 6)
    votes[FER_LABELS.index(label)] = 0.7
    return votes.tolist()


def regression(label: str, index: int) -> list[float]:
    return list(CIRCUMPLEX[label])


def run(tmp_path: Path, manifest: Path, *extra: str) -> tuple[dict, dict, ModelCard]:
    output_dir = tmp_path / "run"
    metrics = train.main([*TINY, "--dataset_dir", str(manifest), "--output_dir", str(output_dir), *extra])
    return metrics, json.loads((output_dir / "config.json").read_text()), ModelCard.load(output_dir / "README.md")


def test_multi_label_from_lists_of_class_names(data_dir, tmp_path):
    samples = [{**row, "label": multi_label(row["label"], i)} for i, row in enumerate(rows(data_dir))]
    metrics, config, card = run(tmp_path, write_jsonl(tmp_path / "manifest.jsonl", samples))
    assert config["problem_type"] == "multi_label_classification" and len(config["id2label"]) == 7
    for key in ("eval_mAP", "eval_macro_f1", "eval_f1_happy", "test_mAP", "test_f1_angry"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert "multi_label_classification" in card.text and "mAP" in card.text
    assert "logits.sigmoid()[0]" in card.text  # the usage example lists the expressions present


def test_multi_label_from_a_csv_column(data_dir, tmp_path):
    manifest = tmp_path / "manifest.csv"
    samples = [{**row, "label": ";".join(multi_label(row["label"], i))} for i, row in enumerate(rows(data_dir))]
    with open(manifest, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(samples[0]))
        writer.writeheader()
        writer.writerows(samples)
    dataset = load_fer_dataset(manifest)
    assert dataset["train"].features["label"].length == 7
    assert all(sum(vector) in (1.0, 2.0) for vector in dataset["train"]["label"])


def test_soft_labels_need_single_label_classification_and_score_against_the_argmax(data_dir, tmp_path):
    samples = [{**row, "label": soft(row["label"], i)} for i, row in enumerate(rows(data_dir))]
    manifest = write_jsonl(tmp_path / "manifest.jsonl", samples)
    metrics, config, card = run(tmp_path, manifest, "--problem_type", "single_label_classification")
    assert config["problem_type"] == "single_label_classification"
    for key in ("eval_accuracy", "eval_macro_f1", "test_uar"):
        assert 0.0 <= metrics[key] <= 1.0, key
    # Cross-entropy against the vote distribution is at least its entropy, and exceeds it by the KL divergence.
    entropy = -(np.array(soft("happy", 0)) * np.log(soft("happy", 0))).sum()
    assert metrics["eval_kl_divergence"] > 0
    assert metrics["eval_cross_entropy"] == pytest.approx(entropy + metrics["eval_kl_divergence"], abs=1e-4)
    assert "KL divergence (soft labels)" in card.text


def test_regression_with_named_targets(data_dir, tmp_path):
    samples = [{**row, "label": regression(row["label"], i)} for i, row in enumerate(rows(data_dir))]
    manifest = write_jsonl(tmp_path / "manifest.jsonl", samples)
    metrics, config, card = run(
        tmp_path, manifest, "--problem_type", "regression", "--target_names", "valence", "arousal"
    )
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "valence", "1": "arousal"}
    for key in ("eval_rmse_valence", "eval_rmse_arousal", "test_rmse"):
        assert metrics[key] >= 0.0, key
    for key in ("eval_ccc_valence", "eval_ccc_arousal", "test_ccc"):
        assert -1.0 <= metrics[key] <= 1.0, key
    assert "| valence |" in card.text and "CCC (test)" in card.text
    assert "print(dict(zip(model.config.id2label.values(), logits[0].tolist())))" in card.text


def test_one_number_per_sample_is_regression_by_transformers_rule(data_dir, tmp_path):
    samples = [{**row, "label": regression(row["label"], i)[0]} for i, row in enumerate(rows(data_dir))]
    metrics, config, _ = run(tmp_path, write_jsonl(tmp_path / "manifest.jsonl", samples))
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
    assert "eval_ccc_LABEL_0" in metrics


@pytest.mark.parametrize(
    "label, extra, message",
    [
        ([0.5, 0.5, 0.5, 0, 0, 0, 0], ["--problem_type", "single_label_classification"], "sums to 1.5000"),
        (["happy", "smug"], [], "'smug'"),
        ([0.2, 0.3], ["--problem_type", "single_label_classification"], "not a vector of 7 numbers"),
    ],
)
def test_labels_that_do_not_fit_are_named(data_dir, tmp_path, label, extra, message, capsys):
    samples = rows(data_dir)
    samples[0]["label"] = label
    manifest = write_jsonl(tmp_path / "manifest.jsonl", samples)
    error = user_error(capsys, [*TINY, "--dataset_dir", str(manifest), "--output_dir", str(tmp_path / "run"), *extra])
    assert message in error and samples[0]["rgb"] in error


def test_metric_definitions_on_known_cases():
    from vit_fer.evaluation import multi_label_metrics, regression_metrics

    # Average precision of the ranking 0.9 (positive), 0.8 (negative), 0.7 (positive): (1/1 + 2/3) / 2.
    logits = np.log(np.array([[0.9], [0.8], [0.7]]) / (1 - np.array([[0.9], [0.8], [0.7]])))
    scores = multi_label_metrics(logits, np.array([[1.0], [0.0], [1.0]]), ["happy"])
    assert scores["ap_happy"] == pytest.approx(5 / 6) and scores["mAP"] == pytest.approx(5 / 6)
    assert scores["f1_happy"] == pytest.approx(2 * 2 / (3 + 2))  # all three predicted present, two are

    targets = np.array([[0.1, -0.5], [0.4, 0.0], [0.9, 0.5]])
    perfect = regression_metrics(targets, targets, ["valence", "arousal"])
    assert perfect["rmse"] == 0.0 and perfect["ccc"] == pytest.approx(1.0)
    # A constant offset keeps the correlation at 1 but lowers the concordance.
    shifted = regression_metrics(targets + 0.5, targets, ["valence", "arousal"])
    assert shifted["rmse_valence"] == pytest.approx(0.5) and shifted["ccc_arousal"] < 1.0
