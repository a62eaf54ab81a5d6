"""vit-fer: facial expression recognition from RGB, thermal, or RGB + thermal faces on Vision Transformers,
native to the HuggingFace stack."""

from importlib.metadata import version

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from .callbacks import ProgressiveUnfreezingCallback
from .configuration_vit_fer import FER_LABELS, EarlyFusionViTConfig, LateFusionViTConfig, ViTFERConfig
from .data import BadDataError, load_fer_dataset
from .evaluation import build_compute_metrics, load_fer_metric
from .image_processing_vit_fer import ViTFERImageProcessor
from .inference import FERPipeline, load_fer_pipeline
from .factory import create_multimodal_vit_model
from .modeling_vit_fer import (
    EarlyFusionViT,
    FERClassifierOutput,
    LateFusionViT,
    ViTFERPreTrainedModel,
    ViTForFER,
    load_pretrained_backbone,
)
from .optimization import get_optimizer_and_scheduler, get_parameter_groups, parameter_units
from .synthetic import synthesize_dataset
from .transforms import FERDataCollator, FERTransform, with_fer_transforms


__version__ = version("vit-fer")


def _register() -> None:
    """Makes the Auto classes resolve our configs and image processor, and saved folders carry their code and
    `auto_map`."""
    for config_class, model_class in (
        (ViTFERConfig, ViTForFER),
        (EarlyFusionViTConfig, EarlyFusionViT),
        (LateFusionViTConfig, LateFusionViT),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoModelForImageClassification.register(config_class, model_class, exist_ok=True)
        AutoImageProcessor.register(config_class, image_processor_classes={"pil": ViTFERImageProcessor}, exist_ok=True)
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModelForImageClassification")


_register()

__all__ = [
    "FER_LABELS",
    "BadDataError",
    "FERDataCollator",
    "FERPipeline",
    "FERTransform",
    "EarlyFusionViT",
    "EarlyFusionViTConfig",
    "FERClassifierOutput",
    "LateFusionViT",
    "LateFusionViTConfig",
    "ProgressiveUnfreezingCallback",
    "ViTFERConfig",
    "ViTFERImageProcessor",
    "ViTFERPreTrainedModel",
    "ViTForFER",
    "build_compute_metrics",
    "create_multimodal_vit_model",
    "get_optimizer_and_scheduler",
    "get_parameter_groups",
    "load_fer_dataset",
    "load_fer_metric",
    "load_fer_pipeline",
    "load_pretrained_backbone",
    "parameter_units",
    "synthesize_dataset",
    "with_fer_transforms",
]
