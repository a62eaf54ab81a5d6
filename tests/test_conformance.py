"""Behaviour an HF user expects from every vit-fer architecture because `ViTForImageClassification` has it:
outputs chosen in the config, input embeddings."""

import pytest
import torch
from tiny_models import TINY_VIT, VARIANTS, make_inputs
from transformers import ViTConfig, ViTForImageClassification

from vit_fer import create_multimodal_vit_model


SEQUENCE_LENGTH = (TINY_VIT["image_size"] // TINY_VIT["patch_size"]) ** 2 + 1


@pytest.mark.parametrize(
    "variant", ["rgb", "thermal", "early-concat", "late-concat", "late-prediction-mean", "mid-bottleneck"]
)
def test_output_flags_in_the_config_are_honoured_like_vit(variant, tiny_vit_dir, tmp_path):
    # The usual way to get attention maps from a saved model, as with ViTForImageClassification.
    torch.manual_seed(0)
    create_multimodal_vit_model(model_name=tiny_vit_dir, **VARIANTS[variant]).save_pretrained(tmp_path / "model")
    model = type(create_multimodal_vit_model(model_name=None, **VARIANTS[variant], **TINY_VIT)).from_pretrained(
        tmp_path / "model", attn_implementation="eager", output_attentions=True, output_hidden_states=True
    ).eval()
    inputs = make_inputs(model, batch_size=2, with_labels=False)
    with torch.no_grad():
        outputs = model(**inputs)
        explicit = model(**inputs, output_attentions=True, output_hidden_states=True)
        silenced = model(**inputs, output_attentions=False, output_hidden_states=False)

    prefixes = ["", "thermal_"] if hasattr(model, "encoder_for") else [""]  # two streams: both reported
    for prefix in prefixes:
        attentions, hidden_states = outputs[f"{prefix}attentions"], outputs[f"{prefix}hidden_states"]
        assert len(attentions) == TINY_VIT["num_hidden_layers"]
        # (Mid fusion's bottleneck tokens join the sequence of the fused layers.)
        assert attentions[0].shape == (2, TINY_VIT["num_attention_heads"], SEQUENCE_LENGTH, SEQUENCE_LENGTH)
        assert len(hidden_states) == TINY_VIT["num_hidden_layers"] + 1
        for got, expected in zip(attentions + hidden_states, explicit[f"{prefix}attentions"] + explicit[f"{prefix}hidden_states"]):
            torch.testing.assert_close(got, expected)
        # The forward arguments still take precedence over the config.
        assert silenced.get(f"{prefix}attentions") is None and silenced.get(f"{prefix}hidden_states") is None

    # Same structure as transformers' own classifier loaded the same way.
    reference = ViTForImageClassification(ViTConfig(**TINY_VIT, num_labels=7))
    reference.save_pretrained(tmp_path / "vit")
    reference = ViTForImageClassification.from_pretrained(
        tmp_path / "vit", attn_implementation="eager", output_attentions=True, output_hidden_states=True
    )
    vit_outputs = reference(pixel_values=inputs["pixel_values"])
    assert len(vit_outputs.attentions) == len(outputs.attentions)
    assert len(vit_outputs.hidden_states) == len(outputs.hidden_states)


@pytest.mark.parametrize("variant", ["rgb", "early-concat", "late-concat", "late-shared", "mid-concat"])
def test_get_input_embeddings_is_the_main_inputs_patch_embedding(variant):
    model = create_multimodal_vit_model(model_name=None, **VARIANTS[variant], **TINY_VIT)
    embeddings = model.get_input_embeddings()
    assert embeddings is model.backbone_modules()[0].embeddings.patch_embeddings
    if hasattr(model, "encoder_for"):
        assert embeddings is model.encoder_for("rgb").get_input_embeddings()
    # What transformers' own image classifier returns: the module turning pixel_values into patch tokens.
    image = torch.randn(1, embeddings.num_channels, TINY_VIT["image_size"], TINY_VIT["image_size"])
    assert embeddings(image).shape == (1, SEQUENCE_LENGTH - 1, TINY_VIT["hidden_size"])


@pytest.mark.parametrize(
    "variant", ["rgb", "early-concat", "late-attention", "late-prediction-weighted", "mid-cross_attention"]
)
def test_set_attn_implementation_switches_every_encoder(variant):
    model = create_multimodal_vit_model(model_name=None, **VARIANTS[variant], **TINY_VIT).eval()
    inputs = make_inputs(model, batch_size=1, with_labels=False)
    assert model.config._attn_implementation == "sdpa"  # which computes no attention weights
    model.set_attn_implementation("eager")
    assert all(encoder.config._attn_implementation == "eager" for encoder in model.backbone_modules())
    assert len(model(**inputs, output_attentions=True).attentions) == TINY_VIT["num_hidden_layers"]
