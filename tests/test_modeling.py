"""Model tests in the style of transformers' ModelTester: tiny configs, shape and value checks, every variant."""

import math

import pytest
import torch
from accelerate.utils import FullyShardedDataParallelPlugin
from tiny_models import TINY_VIT, VARIANTS, make_inputs, write_tiny_vit
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, ViTConfig, ViTForImageClassification, ViTModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.vit.modeling_vit import ViTEmbeddings

import vit_fer
from vit_fer import (
    EarlyFusionViT,
    EarlyFusionViTConfig,
    LateFusionViT,
    LateFusionViTConfig,
    ViTFERConfig,
    ViTForFER,
    create_multimodal_vit_model,
)
from vit_fer.modeling_vit_fer import CrossModalBlock, widen_patch_embedding


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="module")
def reference_encoder(checkpoint):
    return ViTModel.from_pretrained(checkpoint, add_pooling_layer=False).eval()


def build(checkpoint, variant: str, **overrides):
    torch.manual_seed(0)
    return create_multimodal_vit_model(model_name=checkpoint, **VARIANTS[variant], **overrides)


def encoder_inputs(model, inputs):
    """What each encoder of `model` reads for `inputs`, paired with the encoder."""
    if isinstance(model, LateFusionViT):
        return [(model.encoder_for("rgb"), inputs["pixel_values"]), (model.encoder_for("thermal"), inputs["thermal_pixel_values"])]
    if isinstance(model, EarlyFusionViT):
        return [(model.vit, model.fuse_inputs(inputs["pixel_values"], inputs["thermal_pixel_values"]))]
    return [(model.vit, inputs["pixel_values"])]


# -- forward, outputs, loss ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_create_and_check_forward(checkpoint, variant):
    model = build(checkpoint, variant).eval()
    inputs = make_inputs(model, batch_size=3)
    outputs = model(**inputs)

    assert outputs.logits.shape == (3, 7)
    expected_loss = torch.nn.functional.cross_entropy(outputs.logits, inputs["labels"])
    torch.testing.assert_close(outputs.loss, expected_loss)
    assert isinstance(outputs, vit_fer.FERClassifierOutput)

    tuple_outputs = model(**inputs, return_dict=False)
    torch.testing.assert_close(tuple_outputs[1], outputs.logits)


@pytest.mark.parametrize("variant", ["rgb", "early-concat", "late-attention"])
def test_hidden_states_and_attentions(checkpoint, variant):
    model = build(checkpoint, variant, attn_implementation="eager").eval()
    outputs = model(**make_inputs(model, batch_size=2, with_labels=False), output_hidden_states=True, output_attentions=True)
    sequence_length = (TINY_VIT["image_size"] // TINY_VIT["patch_size"]) ** 2 + 1

    assert len(outputs.hidden_states) == TINY_VIT["num_hidden_layers"] + 1
    assert outputs.hidden_states[-1].shape == (2, sequence_length, TINY_VIT["hidden_size"])
    assert len(outputs.attentions) == TINY_VIT["num_hidden_layers"]
    assert outputs.attentions[0].shape == (2, TINY_VIT["num_attention_heads"], sequence_length, sequence_length)
    if variant.startswith("late"):
        assert len(outputs.thermal_attentions) == TINY_VIT["num_hidden_layers"]


def test_head_is_the_specifications(checkpoint):
    head = build(checkpoint, "rgb").classifier
    layers = [type(module).__name__ for module in head.children()]
    assert layers == ["LayerNorm", "Dropout", "Linear", "GELU", "Dropout", "Linear"]
    assert (head.dropout.p, head.output_dropout.p) == (0.1, 0.05)
    # As in the original implementation: hidden width hidden_size // 2, LayerNorm with PyTorch's default eps.
    assert (head.dense.in_features, head.dense.out_features, head.out_proj.out_features) == (32, 16, 7)
    assert head.layernorm.eps == 1e-5

    concat_head = build(checkpoint, "late-concat").classifier
    assert concat_head.dense.in_features == 2 * TINY_VIT["hidden_size"]


def test_default_config_is_vit_base_with_fer_labels():
    config = ViTFERConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert (config.intermediate_size, config.image_size, config.patch_size) == (3072, 224, 16)
    assert [config.id2label[i] for i in range(7)] == list(vit_fer.FER_LABELS)
    assert config.label2id["surprised"] == 6


# -- pretrained weights ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_encoders_match_pretrained_vit(checkpoint, reference_encoder, variant):
    model = build(checkpoint, variant).eval()
    images = torch.randn(2, 3, 32, 32)
    reference = reference_encoder(images).last_hidden_state
    reference_states = reference_encoder(images, output_hidden_states=True).hidden_states
    for encoder in model.backbone_modules():
        fed = torch.cat([images, images], dim=1) if encoder.config.num_channels == 6 else images
        if len(encoder.layers) == TINY_VIT["num_hidden_layers"]:
            torch.testing.assert_close(encoder(fed).last_hidden_state, reference, atol=1e-5, rtol=0)
        else:  # a mid-fusion stream that ends at its fusion layer: the pretrained encoder's first layers
            states = encoder(fed, output_hidden_states=True).hidden_states
            assert len(states) == len(encoder.layers) + 1
            for state, expected in zip(states, reference_states):
                torch.testing.assert_close(state, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_encoder_weight_left_random(checkpoint, reference_encoder, variant, tmp_path):
    """Every encoder tensor equals the checkpoint's (widened for early concat) — after the factory and after a
    save / from_pretrained round trip, which v5's post-load initialisation could otherwise re-randomise."""
    model = build(checkpoint, variant)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    expected = reference_encoder.state_dict()
    patch_key = "embeddings.patch_embeddings.projection.weight"
    if variant == "early-concat":
        expected[patch_key] = widen_patch_embedding(expected[patch_key], 3, 3)
    for candidate in (model, reloaded):
        for encoder in candidate.backbone_modules():
            state = encoder.state_dict()
            # A mid-fusion stream that ends at its fusion layer holds the checkpoint's first layers (and, for "add",
            # no final LayerNorm).
            kept = {
                key
                for key in expected
                if not (key.startswith("layers.") and int(key.split(".")[1]) >= len(encoder.layers))
                and not (key.startswith("layernorm.") and isinstance(encoder.layernorm, torch.nn.Identity))
            }
            assert state.keys() == kept
            for key in kept:
                torch.testing.assert_close(state[key], expected[key], atol=0, rtol=0, msg=f"{variant}: {key}")
    inputs = make_inputs(model, with_labels=False)
    torch.testing.assert_close(reloaded.eval()(**inputs).logits, model.eval()(**inputs).logits)


def test_early_concat_same_image_twice_equals_pretrained(checkpoint, reference_encoder):
    model = build(checkpoint, "early-concat").eval()
    images = torch.randn(2, 3, 32, 32)
    fused = model.vit(model.fuse_inputs(images, images)).last_hidden_state
    torch.testing.assert_close(fused, reference_encoder(images).last_hidden_state, atol=1e-5, rtol=0)


def test_widen_patch_embedding_for_single_channel_thermal():
    weight = torch.randn(8, 3, 4, 4)
    widened = widen_patch_embedding(weight, rgb_num_channels=3, thermal_num_channels=1)
    assert widened.shape == (8, 4, 4, 4)
    gray = torch.randn(2, 1, 4, 4)
    # A grey image given as RGB (3 equal channels) and as 1-channel thermal reads as the pretrained RGB image.
    pretrained = torch.nn.functional.conv2d(gray.expand(-1, 3, -1, -1), weight)
    fused = torch.nn.functional.conv2d(torch.cat([gray.expand(-1, 3, -1, -1), gray], dim=1), widened)
    torch.testing.assert_close(fused, pretrained, atol=1e-5, rtol=0)


def test_loads_vit_for_image_classification_checkpoint(tmp_path):
    torch.manual_seed(1)
    classifier = ViTForImageClassification(ViTConfig(**TINY_VIT, num_labels=3))
    classifier.save_pretrained(tmp_path)
    model = create_multimodal_vit_model(mode="combined", fusion_strategy="late", model_name=tmp_path).eval()
    images = torch.randn(2, 3, 32, 32)
    for encoder in model.backbone_modules():
        torch.testing.assert_close(encoder(images).last_hidden_state, classifier.vit.eval()(images).last_hidden_state)
    assert model.config.num_labels == 7  # the checkpoint's head and labels are not ours


def test_checkpoint_that_does_not_fit_raises(tmp_path, checkpoint):
    ViTModel(ViTConfig(**{**TINY_VIT, "hidden_size": 48, "num_attention_heads": 4})).save_pretrained(tmp_path)
    model = build(checkpoint, "rgb")
    with pytest.raises(ValueError, match="does not fit"):
        vit_fer.load_pretrained_backbone(model, tmp_path)


def test_seed_constructor(checkpoint, reference_encoder):
    model = ViTForFER(model_name=checkpoint, num_classes=7, freeze_backbone=True, dropout_rate=0.2).eval()
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.vit(images).last_hidden_state, reference_encoder(images).last_hidden_state)
    assert model.classifier.dropout.p == 0.2
    assert not any(p.requires_grad for p in model.vit.parameters())
    with pytest.raises(ValueError, match="either `config` or"):
        ViTForFER(ViTFERConfig(**TINY_VIT), model_name=checkpoint)


# -- freezing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_frozen_backbone_gets_no_gradient(checkpoint, variant):
    model = build(checkpoint, variant, freeze_backbone=True).train()
    model(**make_inputs(model)).loss.backward()
    backbone = {id(p) for encoder in model.backbone_modules() for p in encoder.parameters()}
    for name, parameter in model.named_parameters():
        if id(parameter) in backbone:
            assert parameter.grad is None, name
        else:
            assert parameter.requires_grad and parameter.grad is not None, name


def test_freeze_backbone_survives_from_pretrained(checkpoint, tmp_path):
    build(checkpoint, "late-attention", freeze_backbone=True).save_pretrained(tmp_path)
    model = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert not any(p.requires_grad for encoder in model.backbone_modules() for p in encoder.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())


def test_unfreeze_last_n_layers_is_top_down(checkpoint):
    model = build(checkpoint, "late-concat", freeze_backbone=True)
    model.unfreeze_last_n_layers(1)
    for encoder in model.backbone_modules():
        assert all(p.requires_grad for p in encoder.layers[1].parameters())
        assert all(p.requires_grad for p in encoder.layernorm.parameters())
        assert not any(p.requires_grad for p in encoder.layers[0].parameters())
        assert not any(p.requires_grad for p in encoder.embeddings.parameters())
    model.unfreeze_backbone()
    assert all(p.requires_grad for p in model.parameters())
    model.freeze_backbone()
    assert not any(p.requires_grad for encoder in model.backbone_modules() for p in encoder.parameters())
    with pytest.raises(ValueError, match=r"`n` must be in \[0, 2\]"):
        model.unfreeze_last_n_layers(3)


# -- training behaviour ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_optimizer_steps_lower_the_loss(checkpoint, variant):
    # A head as wide as ViT-B's (hidden_size // 2 is 16 at the tiny size, too narrow to fit 8 samples in 12 steps).
    model = build(checkpoint, variant, classifier_hidden_size=384).train()
    inputs = make_inputs(model, batch_size=8, seed=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("variant", ["rgb", "early-concat", "late-attention", "late-prediction-weighted"])
def test_activation_checkpointing_gives_same_loss_and_gradients(checkpoint, variant):
    plain = build(checkpoint, variant).train()
    checkpointed = build(checkpoint, variant, use_gradient_checkpointing=True).train()
    assert all(layer.gradient_checkpointing for e in checkpointed.backbone_modules() for layer in e.layers)
    inputs = make_inputs(plain)
    losses = []
    for model in (plain, checkpointed):
        torch.manual_seed(5)  # the same dropout masks in both runs
        loss = model(**inputs).loss
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=0)
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("variant", ["rgb", "early-add", "late-concat"])
def test_sdpa_and_eager_agree(checkpoint, variant):
    sdpa = build(checkpoint, variant, attn_implementation="sdpa").eval()
    eager = build(checkpoint, variant, attn_implementation="eager").eval()
    assert all(e.config._attn_implementation == "sdpa" for e in sdpa.backbone_modules())
    assert all(e.config._attn_implementation == "eager" for e in eager.backbone_modules())
    inputs = make_inputs(sdpa, with_labels=False)
    torch.testing.assert_close(sdpa(**inputs).logits, eager(**inputs).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ["late-add", "mid-bottleneck"])
def test_interpolate_pos_encoding(checkpoint, variant):
    model = build(checkpoint, variant).eval()
    images = torch.randn(1, 3, 48, 48)
    outputs = model(images, thermal_pixel_values=images, interpolate_pos_encoding=True, output_hidden_states=True)
    assert outputs.hidden_states[-1].shape[1] == (48 // 8) ** 2 + 1
    with pytest.raises(ValueError, match="doesn't match model"):
        model(images, thermal_pixel_values=images)


# -- late fusion specifics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["late-concat", "late-add", "late-attention", "late-prediction-mean", "late-prediction-weighted"])
def test_late_fusion_predicts_from_one_modality(checkpoint, variant):
    model = build(checkpoint, variant).eval()
    inputs = make_inputs(model, with_labels=False)
    rgb_only = model(pixel_values=inputs["pixel_values"])
    thermal_only = model(thermal_pixel_values=inputs["thermal_pixel_values"])
    both = model(**inputs)
    for outputs in (rgb_only, thermal_only):
        assert outputs.logits.shape == (4, 7) and torch.isfinite(outputs.logits).all()
        assert not torch.allclose(outputs.logits, both.logits)
    if "modality_weights" in both:
        torch.testing.assert_close(both.modality_weights.sum(-1), torch.ones(4))
        torch.testing.assert_close(rgb_only.modality_weights, torch.tensor([[1.0, 0.0]]).expand(4, 2))
        torch.testing.assert_close(thermal_only.modality_weights, torch.tensor([[0.0, 1.0]]).expand(4, 2))
    if variant == "late-prediction-mean":
        # The fused prediction is the mean of the two heads' probabilities.
        expected = (both.rgb_logits.softmax(-1) + both.thermal_logits.softmax(-1)) / 2
        torch.testing.assert_close(both.logits.exp(), expected)
        torch.testing.assert_close(rgb_only.logits.softmax(-1), rgb_only.rgb_logits.softmax(-1))


def test_modality_dropout_keeps_every_parameter_in_the_step(checkpoint):
    """Dropped modalities are zeroed, not skipped: under DDP every parameter must receive a gradient."""
    model = build(checkpoint, "late-attention", modality_dropout=0.5).train()
    torch.manual_seed(0)
    outputs = model(**make_inputs(model, batch_size=16))
    outputs.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    weights = outputs.modality_weights
    dropped = (weights == 0).any(dim=1)
    assert 0 < dropped.sum() < 16  # some samples lost a modality, none lost both
    torch.testing.assert_close(weights.sum(-1), torch.ones(16))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_takes_part_in_a_training_step(checkpoint, variant):
    """What `ddp_find_unused_parameters=False` (FERTrainingArguments' default) relies on: DDP fails on a parameter
    that a step leaves out. Modality dropout at 0.999 drops a modality of every sample of the batch."""
    dropout = {"modality_dropout": 0.999} if variant.startswith(("late", "mid")) else {}
    model = build(checkpoint, variant, **dropout).train()
    torch.manual_seed(0)
    model(**make_inputs(model, batch_size=2)).loss.backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_fsdp_wraps_every_residual_block_of_every_architecture(checkpoint, variant):
    """accelerate's FSDP wrapping by `_no_split_modules` (its default, as device_map="auto" keeps those modules
    whole) accepts every architecture — it refuses a listed class the model lacks — and makes a unit of each
    embedding, each ViT layer and each cross-attention block."""
    model = build(checkpoint, variant)
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    plugin.set_auto_wrap_policy(model)
    units = {name for name, m in model.named_modules() if plugin.auto_wrap_policy(module=m, recurse=False, nonwrapped_numel=0)}
    blocks = {name for name, m in model.named_modules() if isinstance(m, (GradientCheckpointingLayer, ViTEmbeddings))}
    assert units == blocks
    assert any(isinstance(m, CrossModalBlock) for m in model.modules()) == (variant == "mid-cross_attention")


def test_modality_dropout_is_inactive_at_inference(checkpoint):
    model = build(checkpoint, "late-attention", modality_dropout=0.9).eval()
    inputs = make_inputs(model, with_labels=False)
    torch.testing.assert_close(model(**inputs).logits, model(**inputs).logits)
    assert (model(**inputs).modality_weights > 0).all()


def test_shared_encoder_has_one_backbone(checkpoint):
    model = build(checkpoint, "late-shared")
    assert model.thermal_vit is None and len(model.backbone_modules()) == 1
    assert model.encoder_for("thermal") is model.encoder_for("rgb")


# -- bad input ---------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(checkpoint):
    rgb = build(checkpoint, "rgb")
    early = build(checkpoint, "early-concat")
    late = build(checkpoint, "late-concat")
    good = torch.randn(2, 3, 32, 32)
    cases = [
        (rgb, dict(pixel_values=torch.randn(2, 4, 32, 32)), r"`pixel_values` must have 3 channels.*\(2, 4, 32, 32\)"),
        (rgb, dict(pixel_values=torch.randn(3, 32, 32)), r"`pixel_values` must be a 4D tensor.*\(3, 32, 32\)"),
        (rgb, dict(pixel_values=good, thermal_pixel_values=good), "reads one modality"),
        (rgb, dict(pixel_values=good, labels=torch.tensor([0, 7])), r"`labels` must lie in \[0, 7\)"),
        (rgb, dict(pixel_values=good, labels=torch.tensor([[0], [1]])), r"`labels` must have shape \(2,\)"),
        # Once a model has trained on class indices, float labels can only be class probabilities (soft labels).
        (rgb, dict(pixel_values=good, labels=torch.tensor([0.0, 1.0])), r"class probabilities .* of shape \(2, 7\)"),
        (rgb, dict(pixel_values=good, labels=torch.full((2, 7), 0.5)), "summing to 1"),
        (early, dict(pixel_values=good), "`thermal_pixel_values` is missing"),
        (early, dict(pixel_values=good, thermal_pixel_values=torch.randn(3, 3, 32, 32)), r"expected batch size 2"),
        (early, dict(pixel_values=good, thermal_pixel_values=torch.randn(2, 1, 32, 32)), "must have 3 channels"),
        (late, dict(), "got neither"),
        (late, dict(pixel_values=good, thermal_pixel_values=torch.randn(2, 3, 16, 16)), r"image size \(32, 32\)"),
    ]
    for model, inputs, message in cases:
        with pytest.raises(ValueError, match=message):
            model(**inputs)


def test_nan_check_when_asked(checkpoint):
    model = build(checkpoint, "early-add", check_inputs_finite=True)
    images = torch.randn(2, 3, 32, 32)
    images[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="`thermal_pixel_values` holds NaN"):
        model(torch.randn(2, 3, 32, 32), thermal_pixel_values=images)


def test_factory_rejects_bad_arguments(checkpoint):
    cases = [
        (dict(mode="depth"), "`mode` must be one of"),
        (dict(mode="combined", fusion_strategy="middle"), "`fusion_strategy` must be one of"),
        (dict(mode="rgb", fusion_type="concat"), "apply to mode='combined' only"),
        (dict(mode="combined", fusion_strategy="early", fusion_layer="feature"), "fusion_strategy='mid' or 'late' only"),
        (dict(mode="combined", fusion_strategy="late", fusion_layer="prediction", fusion_type="add"), "must be 'attention'"),
        (dict(mode="rgb", modality_dropout=0.2), r"ViTFERConfig has no field \['modality_dropout'\]"),
        (dict(mode="combined", fusion_strategy="late", modality_dropuot=0.2), "has no field"),
    ]
    for arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            create_multimodal_vit_model(model_name=checkpoint, **arguments)
    with pytest.raises(Exception, match="fusion_type"):
        create_multimodal_vit_model(model_name=checkpoint, mode="combined", fusion_type="attention")


# -- Auto classes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config_class, model_class",
    [(ViTFERConfig, ViTForFER), (EarlyFusionViTConfig, EarlyFusionViT), (LateFusionViTConfig, LateFusionViT)],
)
def test_auto_classes_resolve(config_class, model_class, tmp_path):
    config = config_class(**TINY_VIT)
    assert type(AutoConfig.for_model(config_class.model_type)) is config_class
    assert type(AutoModel.from_config(config)) is model_class
    assert type(AutoModelForImageClassification.from_config(config)) is model_class
    config.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is config_class


# -- cached features ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["rgb", "early-concat", "late-attention", "late-prediction-mean"])
def test_cached_encoder_features_give_the_same_predictions(checkpoint, variant):
    model = build(checkpoint, variant).eval()
    inputs = make_inputs(model)
    images = {key: value for key, value in inputs.items() if key != "labels"}
    features = model.extract_features(**images)
    assert features.shape == ((4, 2, 32) if variant.startswith("late") else (4, 32))
    from_images = model(**inputs)
    from_features = model(encoder_features=features, labels=inputs["labels"])
    torch.testing.assert_close(from_features.logits, from_images.logits)
    torch.testing.assert_close(from_features.loss, from_images.loss)
    with pytest.raises(ValueError, match="either images or `encoder_features`"):
        model(**images, encoder_features=features)
    with pytest.raises(ValueError, match=r"`encoder_features` must have shape \(batch_size, "):
        model(encoder_features=features[..., :16])


@pytest.mark.parametrize("variant", ["rgb", "early-concat", "late-attention", "late-prediction-weighted"])
def test_torch_compile_traces_without_graph_breaks(checkpoint, variant):
    model = build(checkpoint, variant, **({"modality_dropout": 0.2} if variant.startswith("late") else {})).train()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(**make_inputs(model))
    assert explanation.graph_break_count == 0, [reason.reason for reason in explanation.break_reasons]
    assert explanation.graph_count == 1


def test_factory_without_checkpoint_builds_random_encoders():
    torch.manual_seed(0)
    model = create_multimodal_vit_model(mode="combined", fusion_strategy="late", model_name=None, **TINY_VIT)
    assert isinstance(model, LateFusionViT) and model.config.hidden_size == 32
    assert not torch.equal(model.rgb_vit.embeddings.cls_token, model.thermal_vit.embeddings.cls_token)
