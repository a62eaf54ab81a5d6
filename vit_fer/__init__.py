"""vit-fer: facial expression recognition from RGB, thermal, or RGB + thermal faces on Vision Transformers,
native to the HuggingFace stack.

`import vit_fer` is about as cheap as `import transformers, torch` (benchmarks/import_time.py): the configurations
load at once, every other public name on first use (PEP 562 `__getattr__`), because transformers' modeling and
image-processing modules alone cost as much CPU again as torch. The Auto classes learn the vit-fer models, image
processor and pipeline task the first time any of them is needed: when a vit-fer configuration is built
(`AutoConfig` / `AutoModel*.from_pretrained` of a vit-fer folder, or your own `ViTFERConfig(...)`), or when a
name below other than the configurations is first used.
"""

import importlib
from importlib.metadata import version

from transformers import AutoConfig

from .configuration_vit_fer import (
    FER_LABELS,
    EarlyFusionViTConfig,
    LateFusionViTConfig,
    MidFusionViTConfig,
    ViTFERConfig,
    _FERConfigBase,
)


__version__ = version("vit-fer")

# Public name -> the submodule defining it, imported on first use.
_LAZY_NAMES = {
    "ProgressiveUnfreezingCallback": "callbacks",
    "BadDataError": "data",
    "load_fer_dataset": "data",
    "load_fer_folds": "data",
    "build_compute_metrics": "evaluation",
    "load_fer_metric": "evaluation",
    "ViTFERImageProcessor": "image_processing_vit_fer",
    "FERPipeline": "inference",
    "load_fer_pipeline": "inference",
    "create_multimodal_vit_model": "factory",
    "EarlyFusionViT": "modeling_vit_fer",
    "FERClassifierOutput": "modeling_vit_fer",
    "LateFusionViT": "modeling_vit_fer",
    "MidFusionViT": "modeling_vit_fer",
    "ViTFERPreTrainedModel": "modeling_vit_fer",
    "ViTForFER": "modeling_vit_fer",
    "load_pretrained_backbone": "modeling_vit_fer",
    "get_optimizer_and_scheduler": "optimization",
    "get_parameter_groups": "optimization",
    "parameter_units": "optimization",
    "synthesize_dataset": "synthetic",
    "FERDataCollator": "transforms",
    "FERTransform": "transforms",
    "with_fer_transforms": "transforms",
}

_registered = False


def _register() -> None:
    """Makes the Auto classes resolve our configs' models and image processor and the pipeline task, and saved
    folders carry their code and `auto_map`. Runs once."""
    global _registered
    if _registered:
        return
    _registered = True
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification

    from . import inference  # noqa: F401  (registers the pipeline task)
    from .image_processing_vit_fer import ViTFERImageProcessor
    from .modeling_vit_fer import EarlyFusionViT, LateFusionViT, MidFusionViT, ViTForFER

    for config_class, model_class in (
        (ViTFERConfig, ViTForFER),
        (EarlyFusionViTConfig, EarlyFusionViT),
        (LateFusionViTConfig, LateFusionViT),
        (MidFusionViTConfig, MidFusionViT),
    ):
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoModelForImageClassification.register(config_class, model_class, exist_ok=True)
        AutoImageProcessor.register(config_class, image_processor_classes={"pil": ViTFERImageProcessor}, exist_ok=True)
        model_class.register_for_auto_class("AutoModelForImageClassification")


def _register_when_first_built(config_class) -> None:
    """The first vit-fer configuration built (by AutoConfig, a `from_pretrained`, or by hand) registers the models
    before any Auto class looks them up. This file, not the configuration's (which travels with checkpoints and
    imports nothing of ours), adds the hook."""
    post_init = config_class.__post_init__

    def __post_init__(self, **kwargs):
        _register()
        post_init(self, **kwargs)

    config_class.__post_init__ = __post_init__


for _config_class in (ViTFERConfig, EarlyFusionViTConfig, LateFusionViTConfig, MidFusionViTConfig):
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    _config_class.register_for_auto_class()
_register_when_first_built(_FERConfigBase)


def __getattr__(name: str):
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module 'vit_fer' has no attribute {name!r}")
    _register()
    value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})


__all__ = [
    "FER_LABELS",
    "EarlyFusionViTConfig",
    "LateFusionViTConfig",
    "MidFusionViTConfig",
    "ViTFERConfig",
    *_LAZY_NAMES,
]
