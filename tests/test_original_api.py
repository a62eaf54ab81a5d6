"""Code written against the original implementation (GitHub reicraftscodes/group-4-dissertation, model.py) runs
unchanged: its optimizer call, its keyword constructors, its helper methods and its prediction-level attention."""

import pytest
import torch
from tiny_models import TINY_VIT, make_inputs
from transformers import ViTModel

from vit_fer import (
    EarlyFusionViT,
    EarlyFusionViTConfig,
    LateFusionViT,
    LateFusionViTConfig,
    MidFusionViT,
    ViTFERConfig,
    ViTForFER,
)
from vit_fer.optimization import get_optimizer_and_scheduler


def tiny(model_class=None, **arguments):
    """The original's keyword arguments on a random tiny encoder (`model_name=None`); mid fusion at the middle of the
    2-layer tiny ViT."""
    torch.manual_seed(0)
    mid = {"fusion_layer": 1} if model_class is MidFusionViT else {}
    return {"model_name": None, **TINY_VIT, **mid, **arguments}


ALL = [
    (ViTForFER, {}),
    (EarlyFusionViT, {"fusion_type": "concat"}),
    (EarlyFusionViT, {"fusion_type": "add"}),
    (LateFusionViT, {"fusion_type": "attention", "fusion_layer": "feature"}),
    (LateFusionViT, {"fusion_type": "attention", "fusion_layer": "prediction"}),
    (MidFusionViT, {"fusion_type": "bottleneck", "fusion_layer": 1}),
]


def test_optimizer_arguments_in_the_originals_order(tiny_vit_dir):
    model = ViTForFER(model_name=tiny_vit_dir)
    # model, learning_rate, weight_decay, warmup_steps, num_training_steps, optimizer_type — positionally.
    optimizer, scheduler = get_optimizer_and_scheduler(model, 1e-3, 0.01, 10, 100, "adamw")
    assert isinstance(optimizer, torch.optim.AdamW)
    assert {group["weight_decay"] for group in optimizer.param_groups} == {0.01, 0.0}
    assert scheduler.get_last_lr()[0] == 0.0  # warming up over 10 steps, not 0.01
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-3)

    optimizer, _ = get_optimizer_and_scheduler(model, learning_rate=1e-3, warmup_steps=0, optimizer_type="sgd")
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"]
    with pytest.raises(ValueError, match="`optimizer_type` must be one of \\('adamw', 'sgd'\\), got 'adam'"):
        get_optimizer_and_scheduler(model, optimizer_type="adam")


def test_fusion_classes_keyword_constructors_load_the_pretrained_encoders(tiny_vit_dir, tmp_path):
    pretrained = ViTModel.from_pretrained(tiny_vit_dir, add_pooling_layer=False).state_dict()

    early = EarlyFusionViT(
        model_name=tiny_vit_dir, num_classes=7, fusion_type="add", freeze_backbone=True, dropout_rate=0.2
    )
    for name, value in early.vit.state_dict().items():
        torch.testing.assert_close(value, pretrained[name])
    assert not any(p.requires_grad for p in early.vit.parameters())
    assert (early.classifier.dropout.p, early.classifier.output_dropout.p) == (0.2, 0.1)

    late = LateFusionViT(model_name=tiny_vit_dir, fusion_type="concat", fusion_layer="feature", num_classes=5)
    for encoder in (late.rgb_vit, late.thermal_vit):
        for name, value in encoder.state_dict().items():
            torch.testing.assert_close(value, pretrained[name])
    assert late.config.num_labels == 5 and late.classifier.dense.in_features == 2 * TINY_VIT["hidden_size"]

    # Config-based construction and saved models keep working.
    late.save_pretrained(tmp_path / "late")
    reloaded = LateFusionViT.from_pretrained(tmp_path / "late")
    for name, value in late.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], value)
    assert isinstance(EarlyFusionViT(EarlyFusionViTConfig(**TINY_VIT)), EarlyFusionViT)
    assert isinstance(LateFusionViT(LateFusionViTConfig(**TINY_VIT)), LateFusionViT)


@pytest.mark.parametrize("model_class, arguments", ALL)
def test_helpers_of_the_original_on_every_architecture(model_class, arguments):
    model = model_class(**tiny(**arguments)).eval()
    inputs = make_inputs(model, batch_size=2, with_labels=False)
    assert model.config._attn_implementation == "sdpa"

    features = model.get_features(**inputs)
    assert not features.requires_grad
    torch.testing.assert_close(model(encoder_features=features).logits, model(**inputs).logits)

    attention = model.get_attention_weights(**inputs)
    assert model.config._attn_implementation == "sdpa"  # switched to eager for the call only
    tokens = (TINY_VIT["image_size"] // TINY_VIT["patch_size"]) ** 2 + 1
    shape = (2, TINY_VIT["num_attention_heads"], tokens, tokens)
    maps = attention if hasattr(model, "encoder_for") else (attention,)  # two streams: (rgb, thermal)
    for last_layer in maps:
        # Mid fusion's bottleneck tokens join the sequence: (batch, heads, tokens + bottleneck, ...).
        assert last_layer.shape[:2] == shape[:2] and last_layer.shape[2] >= tokens
        torch.testing.assert_close(last_layer.sum(-1), torch.ones(last_layer.shape[:-1]))
    model.set_attn_implementation("eager")
    eager = model(**inputs, output_attentions=True)
    torch.testing.assert_close(maps[0], eager.attentions[-1])

    info = model.get_model_info()
    assert info["model_name"] is None and info["num_classes"] == 7
    assert info["total_parameters"] == sum(p.numel() for p in model.parameters())
    model.freeze_backbone()
    info = model.get_model_info()
    head = sum(p.numel() for name, p in model.named_parameters() if "vit." not in name)
    assert info["trainable_parameters"] == head and info["freeze_backbone"]


def test_backbone_name_kept_in_the_config(tiny_vit_dir, tmp_path):
    model = ViTForFER(model_name=tiny_vit_dir)
    assert model.config.model_name == model.config._name_or_path == str(tiny_vit_dir)
    assert model.get_model_info()["model_name"] == str(tiny_vit_dir)
    model.save_pretrained(tmp_path / "saved")
    assert ViTForFER.from_pretrained(tmp_path / "saved").config.model_name == str(tiny_vit_dir)


def test_prediction_level_attention_fusion_learns_a_combination_of_the_heads_logits():
    model = LateFusionViT(**tiny(fusion_type="attention", fusion_layer="prediction")).eval()
    inputs = make_inputs(model, batch_size=3)
    outputs = model(**inputs)
    expected = model.fusion.proj(torch.cat([outputs.rgb_logits, outputs.thermal_logits], dim=1))
    torch.testing.assert_close(outputs.logits, expected)
    torch.testing.assert_close(outputs.loss, torch.nn.functional.cross_entropy(expected, inputs["labels"]))
    outputs.loss.backward()
    assert model.fusion.proj.weight.grad.abs().sum() > 0
    # With one modality absent, its head's logits enter as zeros.
    rgb_only = model(pixel_values=inputs["pixel_values"])
    zeros = torch.zeros_like(rgb_only.rgb_logits)
    torch.testing.assert_close(rgb_only.logits, model.fusion.proj(torch.cat([rgb_only.rgb_logits, zeros], dim=1)))
    with pytest.raises(ValueError, match="`prediction_fusion` must stay 'mean'"):
        LateFusionViTConfig(fusion_layer="prediction", fusion_type="attention", prediction_fusion="weighted")


@pytest.mark.parametrize("model_class, arguments", ALL)
def test_gradient_checkpointing_from_the_constructor(model_class, arguments):
    model = model_class(**tiny(**arguments), use_gradient_checkpointing=True).train()
    assert model.is_activation_checkpointing
    assert all(layer.gradient_checkpointing for encoder in model.backbone_modules() for layer in encoder.layers)
    model(**make_inputs(model, batch_size=2)).loss.backward()
    assert model.backbone_modules()[0].layers[0].mlp.fc1.weight.grad is not None


@pytest.mark.parametrize("model_class", [ViTForFER, EarlyFusionViT, LateFusionViT, MidFusionViT])
def test_unknown_keywords_are_refused(model_class):
    with pytest.raises(ValueError, match=r"has no field \['use_gradient_checkpoint'\]"):
        model_class(**tiny(model_class), use_gradient_checkpoint=True)
    with pytest.raises(ValueError, match="Pass either `config` or the keyword arguments"):
        fields = {key: value for key, value in tiny(model_class).items() if key != "model_name"}
        model_class(model_class.config_class(**fields), dropout_rate=0.2)


@pytest.mark.parametrize("model_class", [ViTForFER, EarlyFusionViT, LateFusionViT, MidFusionViT])
def test_model_name_none_means_random_encoders(model_class, monkeypatch):
    # Nothing is downloaded (the Hub is unreachable here and HF_HUB_OFFLINE is set): the encoders are built from the
    # given shape.
    model = model_class(**tiny(model_class))
    assert model.config.model_name is None
    assert model.config.hidden_size == TINY_VIT["hidden_size"]
    assert model.backbone_modules()[0].embeddings.patch_embeddings.projection.kernel_size == (8, 8)


def test_head_sizes_derived_as_in_the_original():
    model = ViTForFER(**tiny(hidden_size=64, dropout_rate=0.3))
    assert model.classifier.dense.out_features == 32
    assert model.classifier.output_dropout.p == pytest.approx(0.15)
    assert model.classifier.layernorm.eps == 1e-5
    # ViT-B's defaults are unchanged.
    config = ViTFERConfig()
    assert (config.classifier_hidden_size, config.classifier_output_dropout) == (384, 0.05)
    # A saved model keeps the sizes it was trained with.
    saved = config.to_dict() | {"hidden_size": 64, "num_attention_heads": 4}
    assert ViTFERConfig.from_dict(saved).classifier_hidden_size == 384
