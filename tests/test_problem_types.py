"""`config.problem_type` as in transformers' image classifiers, for every architecture: single-label (class
indices, or class probabilities as soft labels), multi-label (multi-hot, BCE) and regression (MSE), the type
inferred from the labels by transformers' own rule when unset, and real `Trainer` runs on each."""

import numpy as np
import PIL.Image
import pytest
from huggingface_hub.errors import StrictDataclassClassValidationError
import torch
from datasets import Dataset
from tiny_models import TINY_VIT, VARIANTS, make_inputs, tiny_training_arguments, write_tiny_vit
from transformers import Trainer, ViTConfig, ViTForImageClassification

from vit_fer import ViTFERImageProcessor, create_multimodal_vit_model
from vit_fer.inference import load_fer_pipeline


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


def labels_for(problem_type: str, batch_size: int, num_labels: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if problem_type == "soft":
        return torch.rand(batch_size, num_labels, generator=generator).softmax(-1)
    if problem_type == "multi_label_classification":
        return (torch.rand(batch_size, num_labels, generator=generator) < 0.4).float()
    if problem_type == "regression":
        values = torch.randn(batch_size, num_labels, generator=generator)
        return values.squeeze(-1) if num_labels == 1 else values
    return torch.randint(0, num_labels, (batch_size,), generator=generator)


def reference_loss(problem_type: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """What transformers' ViTForImageClassification computes for the same logits (soft labels: cross-entropy with
    probability targets, which its loss takes the same way once the labels are flattened per class)."""
    if problem_type == "soft":
        return torch.nn.functional.cross_entropy(logits, labels)
    num_labels = logits.shape[-1]
    # The loss does not depend on the model's size: a tiny ViT rather than ViT-Base's 86M parameters per call.
    config = ViTConfig(**TINY_VIT, num_labels=num_labels, problem_type=problem_type)
    return ViTForImageClassification(config).loss_function(labels, logits, config)


CASES = [
    ("single_label_classification", 7),
    ("soft", 7),
    ("multi_label_classification", 7),
    ("regression", 2),
    ("regression", 1),
]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("problem_type, num_labels", CASES, ids=[f"{p}-{n}" for p, n in CASES])
def test_loss_matches_transformers_image_classifiers(checkpoint, variant, problem_type, num_labels):
    torch.manual_seed(0)
    config_problem_type = "single_label_classification" if problem_type == "soft" else problem_type
    model = create_multimodal_vit_model(
        model_name=checkpoint, num_classes=num_labels, problem_type=config_problem_type, **VARIANTS[variant]
    ).eval()
    inputs = make_inputs(model, with_labels=False)
    labels = labels_for(problem_type, 4, num_labels)
    outputs = model(**inputs, labels=labels)
    assert outputs.logits.shape == (4, num_labels)
    torch.testing.assert_close(outputs.loss, reference_loss(problem_type, outputs.logits, labels))
    outputs.loss.backward()


@pytest.mark.parametrize(
    "num_labels, labels, inferred",
    [
        (7, torch.tensor([0, 3, 6, 1]), "single_label_classification"),
        (7, (torch.arange(28).reshape(4, 7) % 3 == 0).float(), "multi_label_classification"),
        (1, torch.tensor([0.5, -1.0, 2.0, 0.0]), "regression"),
    ],
)
def test_problem_type_is_inferred_from_the_labels_like_transformers(checkpoint, num_labels, labels, inferred):
    model = create_multimodal_vit_model(model_name=checkpoint, num_classes=num_labels, **VARIANTS["late-attention"])
    assert model.config.problem_type is None
    model(**make_inputs(model, with_labels=False), labels=labels)
    reference = ViTForImageClassification(ViTConfig(**TINY_VIT, num_labels=num_labels))
    reference.loss_function(labels, torch.zeros(4, num_labels), reference.config)
    assert model.config.problem_type == reference.config.problem_type == inferred


def test_prediction_fusion_mixes_what_each_head_predicts(checkpoint):
    """Regression: the fused value is the mean of the two heads' values; multi-label: of their probabilities."""
    for problem_type, mix in (("regression", lambda x: x), ("multi_label_classification", torch.sigmoid)):
        model = create_multimodal_vit_model(
            model_name=checkpoint, num_classes=3, problem_type=problem_type, **VARIANTS["late-prediction-mean"]
        ).eval()
        outputs = model(**make_inputs(model, with_labels=False))
        fused = outputs.logits if problem_type == "regression" else outputs.logits.sigmoid()
        torch.testing.assert_close(fused, (mix(outputs.rgb_logits) + mix(outputs.thermal_logits)) / 2)


@pytest.mark.parametrize("problem_type, num_labels", CASES, ids=[f"{p}-{n}" for p, n in CASES])
def test_trainer_fits_each_problem_type(checkpoint, tmp_path, problem_type, num_labels):
    """A few real Trainer steps on one fixed batch: the loss goes down."""
    torch.manual_seed(0)
    config_problem_type = "single_label_classification" if problem_type == "soft" else problem_type
    model = create_multimodal_vit_model(
        model_name=checkpoint, num_classes=num_labels, problem_type=config_problem_type, **VARIANTS["early-concat"]
    )
    inputs = make_inputs(model, batch_size=8, with_labels=False)
    data = Dataset.from_dict({**inputs, "labels": labels_for(problem_type, 8, num_labels)}).with_format("torch")
    trainer = Trainer(model=model, args=tiny_training_arguments(tmp_path, max_steps=8, seed=0), train_dataset=data)
    before = trainer.evaluate(data)["eval_loss"]
    trainer.train()
    assert trainer.evaluate(data)["eval_loss"] < before


@pytest.mark.parametrize(
    "problem_type, labels, message",
    [
        ("multi_label_classification", torch.tensor([0, 1, 2, 3]), r"must have shape \(4, 7\)"),
        ("multi_label_classification", torch.full((4, 7), 2.0), r"multi-hot values in \[0, 1\]"),
        ("regression", torch.zeros(4, 3), r"must have shape \(4, 7\)"),
        ("single_label_classification", torch.full((4, 7), 0.5), "summing to 1"),
    ],
)
def test_labels_that_do_not_fit_the_problem_type_raise(checkpoint, problem_type, labels, message):
    model = create_multimodal_vit_model(model_name=checkpoint, problem_type=problem_type, **VARIANTS["rgb"])
    with pytest.raises(ValueError, match=message):
        model(**make_inputs(model, with_labels=False), labels=labels)


def test_one_label_is_for_regression_only(checkpoint):
    with pytest.raises(StrictDataclassClassValidationError, match="1 only for problem_type='regression'"):
        create_multimodal_vit_model(
            model_name=checkpoint, num_classes=1, problem_type="multi_label_classification", **VARIANTS["rgb"]
        )


@pytest.mark.parametrize(
    "problem_type, score",
    [
        ("single_label_classification", lambda logits: logits.softmax(-1)),
        ("multi_label_classification", torch.sigmoid),
        ("regression", lambda logits: logits),
    ],
)
def test_pipeline_scores_follow_the_problem_type(checkpoint, tmp_path, problem_type, score):
    """What a multi-label user reads as each label's probability is the sigmoid, not a softmax over the labels; a
    regression user reads the predicted values — as transformers' classification pipelines do."""
    torch.manual_seed(0)
    model = create_multimodal_vit_model(model_name=checkpoint, problem_type=problem_type, **VARIANTS["rgb"]).eval()
    processor = ViTFERImageProcessor(size=model.config.image_size)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))

    classifier = load_fer_pipeline(tmp_path / "model")
    with torch.no_grad():
        logits = model(**processor(image, return_tensors="pt")).logits[0]

    def scores(result):
        return {prediction["label"]: prediction["score"] for prediction in result["predictions"]}

    def by_label(values):
        return {model.config.id2label[i]: float(value) for i, value in enumerate(values)}

    assert scores(classifier(image, top_k=7)) == pytest.approx(by_label(score(logits)), abs=1e-5)
    assert scores(classifier(image, top_k=7, function_to_apply="none")) == pytest.approx(by_label(logits), abs=1e-5)
    with pytest.raises(ValueError, match="`function_to_apply` must be one of"):
        classifier(image, function_to_apply="relu")
