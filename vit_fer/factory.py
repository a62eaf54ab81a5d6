"""The specification's model factory: one call from a modality and fusion design to a model with pretrained
encoders."""

import dataclasses
from os import PathLike

from transformers import AutoConfig, ViTConfig

from .configuration_vit_fer import (
    EarlyFusionViTConfig,
    LateFusionViTConfig,
    MidFusionViTConfig,
    ViTFERConfig,
    _FERConfigBase,
)
from .modeling_vit_fer import (
    DEFAULT_BACKBONE,
    EarlyFusionViT,
    LateFusionViT,
    MidFusionViT,
    ViTFERPreTrainedModel,
    ViTForFER,
)


MODES = ("rgb", "thermal", "combined")
FUSION_STRATEGIES = ("early", "mid", "late")
# Fields of a saved model's config that its caller chooses anew when continuing its training.
# `model_name` is the checkpoint being continued; the second head dropout follows the first.
_RUN_FIELDS = frozenset(
    {"freeze_backbone", "classifier_dropout", "classifier_output_dropout", "model_name", "num_channels"}
)
_FUSION_STRATEGY_OF_CONFIG = {EarlyFusionViTConfig: "early", MidFusionViTConfig: "mid", LateFusionViTConfig: "late"}


def checkpoint_architecture(model_name: str | PathLike | None, **requested) -> dict:
    """The [`create_multimodal_vit_model`] arguments that rebuild the architecture of the saved vit-fer model
    `model_name` (a folder or Hub id) — `mode`, the fusion design, the head and fusion settings — so that its
    fine-tuning can continue (`create_multimodal_vit_model(model_name=path, **checkpoint_architecture(path))`),
    with the `requested` arguments that are not `None` on top. For a plain ViT checkpoint (whose weights fit every
    architecture) or `model_name=None`, just those.

    Raises a `ValueError` when `requested` asks for another `mode` or `fusion_strategy` than the saved model's.
    """
    requested = {key: value for key, value in requested.items() if value is not None}
    config = AutoConfig.from_pretrained(model_name) if model_name is not None else None
    if not isinstance(config, _FERConfigBase):
        return requested
    vit_fields = {field.name for field in dataclasses.fields(ViTConfig)}
    own = [field.name for field in dataclasses.fields(config) if field.name not in vit_fields | _RUN_FIELDS]
    architecture = {name: getattr(config, name) for name in own}
    if isinstance(config, ViTFERConfig):
        architecture["mode"] = architecture.pop("modality")
    else:
        architecture.update(mode="combined", fusion_strategy=_FUSION_STRATEGY_OF_CONFIG[type(config)])
    conflicting = [
        key for key in ("mode", "fusion_strategy") if requested.get(key, architecture.get(key)) != architecture.get(key)
    ]
    if conflicting:
        saved = ", ".join(f"{key}={architecture[key]!r}" for key in ("mode", "fusion_strategy") if key in architecture)
        asked = ", ".join(f"{key}={requested[key]!r}" for key in conflicting)
        raise ValueError(
            f"{asked}: {str(model_name)!r} is a saved {type(config).__name__.removesuffix('Config')} model ({saved}). "
            "Continue its training in its own architecture (leave these unset), or start from a ViT checkpoint."
        )
    return {**architecture, **requested}


def create_multimodal_vit_model(
    mode: str = "rgb",
    fusion_strategy: str = "early",
    fusion_type: str | None = None,
    fusion_layer: str | int | None = None,
    model_name: str | PathLike | None = DEFAULT_BACKBONE,
    num_classes: int = 7,
    freeze_backbone: bool = False,
    dropout_rate: float = 0.1,
    use_gradient_checkpointing: bool = False,
    **config_overrides,
) -> ViTFERPreTrainedModel:
    """Builds a vit-fer model and loads the ViT checkpoint `model_name` into every encoder.

    Args:
        mode: `"rgb"` or `"thermal"` for a single-modality [`ViTForFER`]; `"combined"` for RGB + thermal fusion.
        fusion_strategy: with `mode="combined"`, `"early"` ([`EarlyFusionViT`]), `"mid"` ([`MidFusionViT`]) or
            `"late"` ([`LateFusionViT`]).
        fusion_type: early fusion: `"concat"` (default) or `"add"`; mid fusion: `"bottleneck"` (default),
            `"cross_attention"`, `"concat"` or `"add"`; late feature fusion: `"concat"` (default), `"add"` or
            `"attention"`.
        fusion_layer: mid fusion: the layer index from which the modalities interact, in `[0, num_hidden_layers]`
            (default 8, MBT's); late fusion: `"feature"` (default) or `"prediction"`.
        model_name: a Hub id or a local folder holding a `ViTModel` or `ViTForImageClassification` checkpoint, a
            saved vit-fer model of the same architecture (continued fine-tuning; see [`checkpoint_architecture`]),
            or `None` for randomly initialised encoders shaped by `config_overrides` (training from scratch).
            `image_size` defaults to the checkpoint's; another one resamples its position embeddings once.
        num_classes: number of expression classes (the 7 FER labels by default).
        freeze_backbone: freeze the encoder(s) for classifier-only fine-tuning.
        dropout_rate: dropout before the head's hidden layer (the one before its output layer is half of it).
        use_gradient_checkpointing: enable activation checkpointing of the encoder layers.
        **config_overrides: any other field of the model's configuration (e.g. `modality_dropout=0.2`,
            `attn_implementation="eager"` is passed to the config too).
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    if mode != "combined":
        if fusion_type is not None or fusion_layer is not None:
            raise ValueError(
                f"`fusion_type` and `fusion_layer` apply to mode='combined' only; got mode={mode!r} with "
                f"fusion_type={fusion_type!r}, fusion_layer={fusion_layer!r}."
            )
        model_class = ViTForFER
        config_overrides["modality"] = mode
    elif fusion_strategy == "early":
        if fusion_layer is not None:
            raise ValueError(f"`fusion_layer` applies to fusion_strategy='mid' or 'late' only, got {fusion_layer!r}.")
        model_class = EarlyFusionViT
        config_overrides["fusion_type"] = fusion_type or "concat"
    elif fusion_strategy == "mid":
        if fusion_layer is not None and (isinstance(fusion_layer, bool) or not isinstance(fusion_layer, int)):
            raise ValueError(
                f"`fusion_layer` of fusion_strategy='mid' is a layer index (an int), got {fusion_layer!r}."
            )
        model_class = MidFusionViT
        config_overrides["fusion_type"] = fusion_type or "bottleneck"
        if fusion_layer is not None:
            config_overrides["fusion_layer"] = fusion_layer
    elif fusion_strategy == "late":
        model_class = LateFusionViT
        config_overrides.update(fusion_type=fusion_type, fusion_layer=fusion_layer or "feature")
    else:
        raise ValueError(f"`fusion_strategy` must be one of {FUSION_STRATEGIES}, got {fusion_strategy!r}.")

    # The model's keyword constructor loads the encoders and refuses options its config does not have.
    return model_class(
        model_name=model_name,
        num_classes=num_classes,
        freeze_backbone=freeze_backbone,
        dropout_rate=dropout_rate,
        use_gradient_checkpointing=use_gradient_checkpointing,
        **config_overrides,
    )
