"""vit-fer: facial expression recognition from RGB, thermal, or RGB + thermal faces on Vision Transformers,
native to the HuggingFace stack."""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration_vit_fer import FER_LABELS, EarlyFusionViTConfig, LateFusionViTConfig, ViTFERConfig
from .factory import create_multimodal_vit_model
from .modeling_vit_fer import (
    EarlyFusionViT,
    FERClassifierOutput,
    LateFusionViT,
    ViTFERPreTrainedModel,
    ViTForFER,
    load_pretrained_backbone,
)


def _register() -> None:
    """Makes the Auto classes resolve our configs, and saved folders carry their code and `auto_map`."""
    for config_class, model_class in (
        (ViTFERConfig, ViTForFER),
        (EarlyFusionViTConfig, EarlyFusionViT),
        (LateFusionViTConfig, LateFusionViT),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoModelForImageClassification.register(config_class, model_class, exist_ok=True)
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModelForImageClassification")


_register()

__all__ = [
    "FER_LABELS",
    "EarlyFusionViT",
    "EarlyFusionViTConfig",
    "FERClassifierOutput",
    "LateFusionViT",
    "LateFusionViTConfig",
    "ViTFERConfig",
    "ViTFERPreTrainedModel",
    "ViTForFER",
    "create_multimodal_vit_model",
    "load_pretrained_backbone",
]
