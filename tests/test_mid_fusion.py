"""MidFusionViT: RGB and thermal streams that meet at layer `fusion_layer` (MBT bottleneck, cross-attention, joint
attention over both sequences, position-wise sum). The generic model tests run it through tiny_models.VARIANTS;
these pin what is particular to it: the ends of the knob agree with EarlyFusionViT and LateFusionViT, the fusion
parameters are the only new ones, missing modalities and modality dropout, per-modality outputs."""

import pytest
import torch
from tiny_models import TINY_VIT, make_inputs, write_tiny_vit
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from vit_fer import (
    EarlyFusionViT,
    LateFusionViT,
    MidFusionViT,
    MidFusionViTConfig,
    create_multimodal_vit_model,
    get_parameter_groups,
    parameter_units,
)


NUM_LAYERS = TINY_VIT["num_hidden_layers"]
FUSION_TYPES = ("bottleneck", "cross_attention", "concat", "add")
SEQUENCE_LENGTH = (TINY_VIT["image_size"] // TINY_VIT["patch_size"]) ** 2 + 1
# No dropout anywhere but where a test asks for it, so that train-mode outputs can be compared with eval-mode ones.
NO_DROPOUT = dict(dropout_rate=0.0, classifier_output_dropout=0.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


def mid(checkpoint, fusion_type: str, fusion_layer: int = 1, **overrides) -> MidFusionViT:
    torch.manual_seed(0)
    return create_multimodal_vit_model(
        model_name=checkpoint,
        mode="combined",
        fusion_strategy="mid",
        fusion_type=fusion_type,
        fusion_layer=fusion_layer,
        **overrides,
    )


def with_head_of(model, source):
    model.classifier.load_state_dict(source.classifier.state_dict())
    return model.eval()


# -- the ends of the knob ----------------------------------------------------------------------------------------


def test_add_at_layer_0_is_early_fusion_add(checkpoint):
    early = create_multimodal_vit_model(
        model_name=checkpoint, mode="combined", fusion_strategy="early", fusion_type="add"
    ).eval()
    model = with_head_of(mid(checkpoint, "add", fusion_layer=0), early)
    assert isinstance(early, EarlyFusionViT) and model.thermal_vit is None
    inputs = make_inputs(model)
    torch.testing.assert_close(model(**inputs).logits, early(**inputs).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fusion_type, late_fusion_type", [("concat", "concat"), ("bottleneck", "add")])
def test_fusion_at_the_last_layer_is_late_feature_fusion(checkpoint, fusion_type, late_fusion_type):
    """Concat reads both [CLS] features side by side, bottleneck their mean: late fusion's concat and (up to the
    scale that the head's LayerNorm removes) its sum."""
    torch.manual_seed(1)
    late = create_multimodal_vit_model(
        model_name=checkpoint, mode="combined", fusion_strategy="late", fusion_type=late_fusion_type
    ).eval()
    model = with_head_of(mid(checkpoint, fusion_type, fusion_layer=NUM_LAYERS), late)
    assert isinstance(late, LateFusionViT)
    assert model.bottleneck is None and model.modality_embeddings is None  # nothing left to fuse
    inputs = make_inputs(model)
    torch.testing.assert_close(model(**inputs).logits, late(**inputs).logits, atol=1e-5, rtol=0)
    rgb_only = {"pixel_values": inputs["pixel_values"]}
    torch.testing.assert_close(model(**rgb_only).logits, late(**rgb_only).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fusion_layer", range(NUM_LAYERS + 1))
def test_untrained_cross_attention_is_two_pretrained_encoders(checkpoint, fusion_layer):
    """The cross-attention blocks start as the identity: the model computes what two pretrained encoders compute
    (late fusion of the mean [CLS] feature) until training moves them."""
    torch.manual_seed(1)
    late = create_multimodal_vit_model(model_name=checkpoint, mode="combined", fusion_strategy="late", fusion_type="add")
    model = with_head_of(mid(checkpoint, "cross_attention", fusion_layer=fusion_layer), late.eval())
    assert len(model.rgb_cross_attention or []) == NUM_LAYERS - fusion_layer
    inputs = make_inputs(model)
    torch.testing.assert_close(model(**inputs).logits, late(**inputs).logits, atol=1e-5, rtol=0)


# -- parameters --------------------------------------------------------------------------------------------------


def test_fusion_parameters_are_the_only_new_ones(checkpoint):
    """Every encoder parameter comes from the checkpoint (tests/test_modeling.py checks their values); besides the
    head, these are the only parameters a mid-fusion model adds."""
    fused_layers = NUM_LAYERS - 1
    cross_block = [
        "layernorm_query.weight", "layernorm_query.bias", "layernorm_context.weight", "layernorm_context.bias",
        *(f"attention.{p}_proj.{t}" for p in "qkvo" for t in ("weight", "bias")),
    ]
    expected = {
        "bottleneck": {"bottleneck.tokens"},
        "cross_attention": {
            f"{stream}_cross_attention.{i}.{name}"
            for stream in ("rgb", "thermal")
            for i in range(fused_layers)
            for name in cross_block
        },
        "concat": {"modality_embeddings.embeddings"},
        "add": set(),
    }
    for fusion_type, names in expected.items():
        model = mid(checkpoint, fusion_type)
        encoders = {id(p) for encoder in model.backbone_modules() for p in encoder.parameters()}
        new = {
            name
            for name, parameter in model.named_parameters()
            if id(parameter) not in encoders and not name.startswith("classifier.")
        }
        assert new == names, fusion_type
    assert tuple(mid(checkpoint, "bottleneck").bottleneck.tokens.shape) == (1, 4, TINY_VIT["hidden_size"])
    assert mid(checkpoint, "bottleneck", num_bottleneck_tokens=2).bottleneck.tokens.shape[1] == 2
    # Cross-attention is half as wide as the encoder by default (half its cost), or as configured.
    hidden = TINY_VIT["hidden_size"]
    attention = mid(checkpoint, "cross_attention").rgb_cross_attention[0].attention
    assert (attention.q_proj.out_features, attention.o_proj.in_features, attention.o_proj.out_features) == (
        hidden // 2, hidden // 2, hidden
    )
    wide = mid(checkpoint, "cross_attention", cross_attention_hidden_size=hidden).thermal_cross_attention[0]
    assert wide.attention.k_proj.out_features == hidden and wide.attention.head_dim == hidden // 4


@pytest.mark.parametrize(
    "fusion_type, thermal_layers, thermal_layernorm",
    [("bottleneck", NUM_LAYERS, True), ("cross_attention", NUM_LAYERS, True), ("concat", 1, True), ("add", 1, False)],
)
def test_streams_hold_only_the_layers_they_run(checkpoint, fusion_type, thermal_layers, thermal_layernorm):
    model = mid(checkpoint, fusion_type)
    assert len(model.rgb_vit.layers) == NUM_LAYERS
    assert len(model.thermal_vit.layers) == thermal_layers
    assert isinstance(model.thermal_vit.layernorm, torch.nn.LayerNorm) == thermal_layernorm


def test_shared_encoder(checkpoint):
    model = mid(checkpoint, "bottleneck", share_encoder=True)
    assert model.thermal_vit is None and model.backbone_modules() == [model.rgb_vit]
    separate = mid(checkpoint, "bottleneck")
    separate.thermal_vit.load_state_dict(separate.rgb_vit.state_dict())
    with_head_of(separate, model.eval())
    separate.bottleneck.load_state_dict(model.bottleneck.state_dict())
    inputs = make_inputs(model)
    torch.testing.assert_close(model(**inputs).logits, separate(**inputs).logits, atol=1e-5, rtol=0)


# -- missing modalities ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion_type", FUSION_TYPES)
def test_predicts_from_one_modality(checkpoint, fusion_type):
    model = mid(checkpoint, fusion_type).eval()
    inputs = make_inputs(model, with_labels=False)
    both = model(**inputs).logits
    for present in ("pixel_values", "thermal_pixel_values"):
        alone = model(**{present: inputs[present]}).logits
        assert alone.shape == (4, 7) and torch.isfinite(alone).all()
        assert not torch.allclose(alone, both)


@pytest.mark.parametrize("fusion_type", FUSION_TYPES)
def test_modality_dropout_is_exactly_a_missing_modality(checkpoint, fusion_type):
    """A sample that loses a modality to modality dropout gets what the model predicts from the other modality
    alone; every parameter still takes part in the step (DistributedDataParallel needs that)."""
    model = mid(checkpoint, fusion_type, modality_dropout=0.999, **NO_DROPOUT)
    inputs = make_inputs(model, batch_size=16, with_labels=False)
    with torch.no_grad():
        model.eval()
        rgb_only = model(pixel_values=inputs["pixel_values"]).logits
        thermal_only = model(thermal_pixel_values=inputs["thermal_pixel_values"]).logits
    model.train()
    torch.manual_seed(0)
    logits = model(**inputs).logits
    rgb_match = (logits - rgb_only).abs().amax(-1) < 1e-4
    thermal_match = (logits - thermal_only).abs().amax(-1) < 1e-4
    assert (rgb_match | thermal_match).all(), (logits - rgb_only).abs().amax(-1)
    assert rgb_match.any() and thermal_match.any()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_modality_dropout_is_inactive_at_inference(checkpoint):
    model = mid(checkpoint, "concat", modality_dropout=0.9).eval()
    inputs = make_inputs(model, with_labels=False)
    torch.testing.assert_close(model(**inputs).logits, model(**inputs).logits)


# -- outputs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion_type", FUSION_TYPES)
def test_hidden_states_and_attentions_per_modality(checkpoint, fusion_type):
    model = mid(checkpoint, fusion_type, attn_implementation="eager").eval()
    outputs = model(**make_inputs(model, batch_size=2, with_labels=False), output_hidden_states=True, output_attentions=True)
    n, heads, hidden = SEQUENCE_LENGTH, TINY_VIT["num_attention_heads"], TINY_VIT["hidden_size"]
    # The thermal stream of "add" ends at the fusion layer (1); the fused stream is reported as the RGB one.
    thermal_layers = 1 if fusion_type == "add" else NUM_LAYERS
    assert len(outputs.hidden_states) == NUM_LAYERS + 1 and len(outputs.attentions) == NUM_LAYERS
    assert len(outputs.thermal_hidden_states) == thermal_layers + 1
    assert len(outputs.thermal_attentions) == thermal_layers
    for states in (outputs.hidden_states, outputs.thermal_hidden_states):
        assert all(state.shape == (2, n, hidden) for state in states)
    assert outputs.attentions[0].shape == outputs.thermal_attentions[0].shape == (2, heads, n, n)
    fused_keys = {"bottleneck": n + 4, "cross_attention": n, "concat": 2 * n, "add": n}[fusion_type]
    fused_queries = n + 4 if fusion_type == "bottleneck" else n
    assert outputs.attentions[-1].shape == (2, heads, fused_queries, fused_keys)
    torch.testing.assert_close(outputs.attentions[-1].sum(-1), torch.ones(2, heads, fused_queries))


def test_outputs_follow_the_config(checkpoint):
    model = mid(checkpoint, "concat", attn_implementation="eager").eval()
    model.config.output_hidden_states = True
    outputs = model(**make_inputs(model, with_labels=False))
    assert len(outputs.hidden_states) == NUM_LAYERS + 1 and outputs.attentions is None


def test_attentions_need_eager(checkpoint):
    model = mid(checkpoint, "bottleneck", attn_implementation="sdpa").eval()
    with pytest.raises(ValueError, match="attn_implementation='eager'"):
        model(**make_inputs(model, with_labels=False), output_attentions=True)


@pytest.mark.parametrize("fusion_type", FUSION_TYPES)
def test_sdpa_and_eager_agree_with_modality_dropout(checkpoint, fusion_type):
    """The dropout mask of joint attention works with either attention implementation."""
    logits = []
    for implementation in ("sdpa", "eager"):
        model = mid(checkpoint, fusion_type, attn_implementation=implementation, modality_dropout=0.5, **NO_DROPOUT)
        torch.manual_seed(3)
        logits.append(model.train()(**make_inputs(model, batch_size=8)).logits)
    torch.testing.assert_close(logits[0], logits[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("fusion_type", ["bottleneck", "cross_attention", "concat"])
def test_activation_checkpointing_gives_same_gradients(checkpoint, fusion_type):
    plain = mid(checkpoint, fusion_type).train()
    checkpointed = mid(checkpoint, fusion_type, use_gradient_checkpointing=True).train()
    assert all(layer.gradient_checkpointing for layer in checkpointed.rgb_vit.layers)
    if fusion_type == "cross_attention":
        assert all(block.gradient_checkpointing for block in checkpointed.rgb_cross_attention)
    inputs = make_inputs(plain)
    for model in (plain, checkpointed):
        torch.manual_seed(5)
        model(**inputs).loss.backward()
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=0, msg=name)


# -- cached features ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion_type, fusion_layer", [("add", 1), ("concat", NUM_LAYERS), ("bottleneck", NUM_LAYERS)])
def test_cached_features_where_no_fusion_parameter_lies_below_them(checkpoint, fusion_type, fusion_layer):
    model = mid(checkpoint, fusion_type, fusion_layer=fusion_layer).eval()
    inputs = make_inputs(model)
    features = model.extract_features(inputs["pixel_values"], inputs["thermal_pixel_values"])
    torch.testing.assert_close(model(encoder_features=features).logits, model(**inputs).logits)


@pytest.mark.parametrize("fusion_type", ["bottleneck", "cross_attention", "concat"])
def test_cached_features_refused_below_trainable_fusion(checkpoint, fusion_type):
    model = mid(checkpoint, fusion_type).eval()
    inputs = make_inputs(model, with_labels=False)
    with pytest.raises(ValueError, match="Cached encoder features do not apply"):
        model.extract_features(**inputs)


# -- configuration, factory, Auto classes ------------------------------------------------------------------------


def test_config_and_factory_reject_bad_values(checkpoint):
    with pytest.raises(Exception, match=r"`fusion_layer` must be an integer in \[0, 2\].*got 3"):
        mid(checkpoint, "concat", fusion_layer=3)
    with pytest.raises(ValueError, match=r"layer index \(an int\), got 'feature'"):
        mid(checkpoint, "concat", fusion_layer="feature")
    with pytest.raises(Exception, match="fusion_type"):
        mid(checkpoint, "attention")
    with pytest.raises(Exception, match="num_bottleneck_tokens"):
        mid(checkpoint, "bottleneck", num_bottleneck_tokens=0)
    with pytest.raises(Exception, match=r"`cross_attention_hidden_size` must be a positive multiple of .*\(4\), got 6"):
        mid(checkpoint, "cross_attention", cross_attention_hidden_size=6)
    default = create_multimodal_vit_model(model_name=None, mode="combined", fusion_strategy="mid", **TINY_VIT, fusion_layer=2)
    assert default.config.fusion_type == "bottleneck" and default.config.model_type == "vit-fer-mid-fusion"
    assert (MidFusionViTConfig().fusion_layer, MidFusionViTConfig().num_bottleneck_tokens) == (8, 4)


def test_auto_classes_resolve(tmp_path):
    config = MidFusionViTConfig(**TINY_VIT, fusion_layer=1, fusion_type="cross_attention")
    assert type(AutoConfig.for_model("vit-fer-mid-fusion")) is MidFusionViTConfig
    assert type(AutoModel.from_config(config)) is MidFusionViT
    assert type(AutoModelForImageClassification.from_config(config)) is MidFusionViT
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert type(reloaded) is MidFusionViTConfig and reloaded.fusion_type == "cross_attention"


# -- fine-tuning strategies --------------------------------------------------------------------------------------


def test_fusion_parameters_train_with_the_head(checkpoint):
    """Learning-rate units by depth across streams of different lengths; the fusion modules are in the head's unit
    (its learning rate) and stay trainable when the backbone is frozen (classifier-only, progressive)."""
    model = mid(checkpoint, "concat", freeze_backbone=True)
    units = parameter_units(model)
    assert list(units) == ["embeddings", "layers.0", "layers.1", "layernorm", "head"]
    assert {name.split(".layers.")[0] for name, _ in units["layers.0"]} == {"rgb_vit", "thermal_vit"}
    assert {name.split(".layers.")[0] for name, _ in units["layers.1"]} == {"rgb_vit"}
    assert "modality_embeddings.embeddings" in {name for name, _ in units["head"]}
    assert model.modality_embeddings.embeddings.requires_grad
    model.unfreeze_last_n_layers(1)
    assert all(p.requires_grad for p in model.rgb_vit.layers[1].parameters())
    assert not any(p.requires_grad for p in model.thermal_vit.layers[0].parameters())
    groups = get_parameter_groups(model, learning_rate=1e-3, backbone_lr_multiplier=0.1)
    rates = {id(p): group["lr"] for group in groups for p in group["params"]}
    assert rates[id(model.modality_embeddings.embeddings)] == 1e-3
    assert rates[id(model.rgb_vit.layers[1].mlp.fc1.weight)] == pytest.approx(1e-4)
