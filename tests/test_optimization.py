"""Parameter groups, learning rates, weight decay and the warmup + cosine schedule of `get_optimizer_and_scheduler`."""

import math

import pytest
import torch
from tiny_models import TINY_VIT, VARIANTS, write_tiny_vit
from torch import nn

from vit_fer import create_multimodal_vit_model
from vit_fer.optimization import get_optimizer_and_scheduler, parameter_units


NUM_LAYERS = TINY_VIT["num_hidden_layers"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


def build(checkpoint, variant: str = "rgb", **overrides):
    torch.manual_seed(0)
    return create_multimodal_vit_model(model_name=checkpoint, **VARIANTS[variant], **overrides)


def expected_unit(name: str, encoder_prefixes: tuple[str, ...]) -> str:
    """The unit of a parameter, read from its name in the model."""
    for prefix in encoder_prefixes:
        if name.startswith(prefix):
            local = name[len(prefix) :]
            if local.startswith("layers."):
                return "layers." + local.split(".")[1]
            return local.split(".")[0]
    return "head"


def lr_and_decay_by_parameter(optimizer) -> dict[int, tuple[float, float, str]]:
    settings = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            assert id(parameter) not in settings, "a parameter is in two groups"
            settings[id(parameter)] = (group["lr"], group["weight_decay"], group["unit"])
    return settings


@pytest.mark.parametrize(
    "variant", ["rgb", "early-concat", "late-attention", "late-prediction-weighted", "late-shared"]
)
@pytest.mark.parametrize("layer_lr_decay", [1.0, 0.5])
def test_groups_hold_every_parameter_at_its_learning_rate(checkpoint, variant, layer_lr_decay):
    model = build(checkpoint, variant, freeze_backbone=True)
    learning_rate, multiplier, weight_decay = 1e-3, 0.1, 0.05
    optimizer, _ = get_optimizer_and_scheduler(
        model,
        learning_rate=learning_rate,
        warmup_steps=0,
        num_training_steps=10,
        weight_decay=weight_decay,
        backbone_lr_multiplier=multiplier,
        layer_lr_decay=layer_lr_decay,
    )
    encoder_prefixes = tuple(
        name + "." for name, module in model.named_children() if module in model.backbone_modules()
    )
    no_decay_names = {"cls_token", "position_embeddings"}
    norm_parameters = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    # Depth from the top of the encoder: final layernorm 0, layer i L - i, embeddings L + 1.
    depth = {"layernorm": 0, "embeddings": NUM_LAYERS + 1}
    depth.update({f"layers.{i}": NUM_LAYERS - i for i in range(NUM_LAYERS)})

    settings = lr_and_decay_by_parameter(optimizer)
    named = dict(model.named_parameters())
    # Frozen encoder parameters are optimised too, so that unfreezing them later trains them.
    assert any(not p.requires_grad for p in named.values())
    assert set(settings) == {id(p) for p in named.values()}
    for name, parameter in named.items():
        unit = expected_unit(name, encoder_prefixes)
        lr = learning_rate if unit == "head" else learning_rate * multiplier * layer_lr_decay ** depth[unit]
        exempt = (
            name.endswith(".bias")
            or id(parameter) in norm_parameters
            or name.rsplit(".", 1)[-1] in no_decay_names
            or name.endswith("modality_logits")
        )
        assert settings[id(parameter)] == pytest.approx((lr, 0.0 if exempt else weight_decay, unit)), name
    # The Trainer logs the first group's rate: the head's, the nominal learning rate.
    assert optimizer.param_groups[0]["unit"] == "head"


def test_late_fusion_layer_unit_spans_both_encoders(checkpoint):
    model = build(checkpoint, "late-concat")
    units = parameter_units(model)
    assert list(units) == ["embeddings", *(f"layers.{i}" for i in range(NUM_LAYERS)), "layernorm", "head"]
    top_layer = {name for name, _ in units[f"layers.{NUM_LAYERS - 1}"]}
    expected = {
        f"{encoder}.layers.{NUM_LAYERS - 1}.{name}"
        for encoder in ("rgb_vit", "thermal_vit")
        for name, _ in getattr(model, encoder).layers[NUM_LAYERS - 1].named_parameters()
    }
    assert top_layer == expected


def test_cosine_schedule_with_warmup(checkpoint):
    model = build(checkpoint)
    learning_rate, warmup, total = 1e-3, 2, 6
    optimizer, scheduler = get_optimizer_and_scheduler(
        model, learning_rate=learning_rate, warmup_steps=warmup, num_training_steps=total
    )
    peaks = [learning_rate if group["unit"] == "head" else learning_rate * 0.1 for group in optimizer.param_groups]
    for step in range(total + 1):
        if step < warmup:
            factor = step / warmup
        else:
            factor = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([p * factor for p in peaks])
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(backbone_lr_multiplier=0.0), "backbone_lr_multiplier"),
        (dict(layer_lr_decay=1.5), "layer_lr_decay"),
        (dict(num_training_steps=0), "num_training_steps"),
        (dict(warmup_steps=20, num_training_steps=10), "warmup_steps"),
    ],
)
def test_bad_arguments_raise(checkpoint, arguments, message):
    with pytest.raises(ValueError, match=message):
        get_optimizer_and_scheduler(build(checkpoint), **arguments)


def test_encoder_parameter_outside_every_unit_raises(checkpoint):
    model = build(checkpoint)
    model.vit.pooler = nn.Linear(TINY_VIT["hidden_size"], TINY_VIT["hidden_size"])
    with pytest.raises(ValueError, match="vit.pooler.weight"):
        get_optimizer_and_scheduler(model)


def test_model_without_backbone_raises():
    with pytest.raises(TypeError, match="backbone_modules"):
        get_optimizer_and_scheduler(nn.Linear(2, 2))
