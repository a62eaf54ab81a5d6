"""Conversion of a state dict saved by the original implementation (GitHub reicraftscodes/group-4-dissertation,
`model.py`: `torch.save(model.state_dict(), path)`) into a vit-fer model folder.

The original's module layout, by class:

| original class   | encoder(s)                                         | head(s) (`nn.Sequential` indices 0, 2, 5)       |
|------------------|----------------------------------------------------|-------------------------------------------------|
| `ViTForFER`      | `vit.vit.` (inside a `ViTForImageClassification`)  | `vit.classifier.`                               |
| `EarlyFusionViT` | `vit.` (a `ViTModel` with its pooler)              | `classifier.`                                   |
| `LateFusionViT`  | `rgb_vit.`, `thermal_vit.` (with poolers)          | `classifier.`, or `rgb_classifier.` and         |
|                  |                                                    | `thermal_classifier.` + `prediction_attention.` |

Encoder tensors go through transformers' own `ViTModel.from_pretrained`, which converts the legacy names
(`encoder.layer.N.attention.attention.query`, ...) exactly as for any old ViT checkpoint. The poolers are unused by
both implementations and dropped; any other tensor left over, missing, or of another shape is an error.

```
vit-fer convert-original best_model.pth converted/ --mode combined --fusion_strategy early --fusion_type concat
```
"""

import tempfile
from os import PathLike
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import ViTConfig, ViTModel

from .factory import create_multimodal_vit_model
from .modeling_vit_fer import _BACKBONE_FIELDS, DEFAULT_BACKBONE, ViTFERPreTrainedModel


# The original head is LayerNorm, Dropout, Linear, GELU, Dropout, Linear: its parameters sit at indices 0, 2 and 5.
_HEAD_LAYERS = {"0": "layernorm", "2": "dense", "5": "out_proj"}


def original_layout(model: ViTFERPreTrainedModel) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Where the original implementation keeps what `model` holds: `(encoders, heads, others)`, each mapping an
    original prefix or key to ours."""
    name = type(model).__name__
    config = model.config
    if name == "ViTForFER":
        return {"vit.vit.": "vit."}, {"vit.classifier.": "classifier."}, {}
    if name == "EarlyFusionViT":
        return {"vit.": "vit."}, {"classifier.": "classifier."}, {}
    if name == "LateFusionViT" and not config.share_encoder:
        encoders = {"rgb_vit.": "rgb_vit.", "thermal_vit.": "thermal_vit."}
        if config.fusion_layer == "feature" and config.fusion_type in ("concat", "add"):
            return encoders, {"classifier.": "classifier."}, {}
        if config.fusion_layer == "prediction" and config.fusion_type == "attention":
            heads = {"rgb_classifier.": "rgb_classifier.", "thermal_classifier.": "thermal_classifier."}
            others = {f"prediction_attention.{p}": f"fusion.proj.{p}" for p in ("weight", "bias")}
            return encoders, heads, others
    raise ValueError(
        f"The original implementation has no {name} with these settings that vit-fer reproduces exactly: convertible "
        "are mode 'rgb' / 'thermal', early fusion 'concat' / 'add', late feature fusion 'concat' / 'add', and late "
        "prediction fusion 'attention'. (The original's late feature 'attention' is a multi-head attention over the "
        "two features, and its prediction 'concat' / 'add' average or sum logits; vit-fer's designs of those names "
        "differ, see the README.)"
    )


def _convert_encoder(tensors: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """An original encoder's tensors in the current `ViTModel` layout, converted by transformers' own loading."""
    tensors = {key: value for key, value in tensors.items() if not key.startswith("pooler.")}
    encoder_config = ViTConfig(**{field: getattr(config, field) for field in _BACKBONE_FIELDS}, num_channels=config.num_channels)
    with tempfile.TemporaryDirectory() as folder:
        encoder_config.save_pretrained(folder)
        save_file({key: value.contiguous() for key, value in tensors.items()}, Path(folder) / "model.safetensors",
                  metadata={"format": "pt"})
        encoder, info = ViTModel.from_pretrained(folder, add_pooling_layer=False, output_loading_info=True)
    problems = {kind: sorted(info[kind]) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[kind]}
    if problems:
        raise ValueError(f"The encoder does not match the original ViT layout: {problems}.")
    return encoder.state_dict()


def convert_original_state_dict(
    state_dict: dict[str, torch.Tensor], model: ViTFERPreTrainedModel
) -> dict[str, torch.Tensor]:
    """`state_dict` of the original implementation's model renamed to `model`'s parameters."""
    encoders, heads, others = original_layout(model)
    converted, used = {}, set()
    for original, ours in encoders.items():
        tensors = {key[len(original):]: value for key, value in state_dict.items() if key.startswith(original)}
        if not tensors:
            raise ValueError(f"The checkpoint has no `{original}*` tensors: it is not an original {type(model).__name__}.")
        used |= {original + key for key in tensors}
        converted |= {ours + key: value for key, value in _convert_encoder(tensors, model.config).items()}
    for original, ours in heads.items():
        for index, layer in _HEAD_LAYERS.items():
            for parameter in ("weight", "bias"):
                key = f"{original}{index}.{parameter}"
                if key in state_dict:
                    converted[f"{ours}{layer}.{parameter}"] = state_dict[key]
                    used.add(key)
    for original, ours in others.items():
        if original in state_dict:
            converted[ours] = state_dict[original]
            used.add(original)
    left_over = sorted(key for key in set(state_dict) - used if ".pooler." not in f".{key}")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    mismatched = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[key].shape)}"
        for key, value in converted.items()
        if key in expected and value.shape != expected[key].shape
    ]
    if left_over or missing or mismatched:
        raise ValueError(
            f"The checkpoint does not fit an original {type(model).__name__} of these settings: "
            f"unused tensors {left_over}, missing {missing}, shapes {mismatched}."
        )
    return converted


def read_original_checkpoint(path: str | PathLike) -> dict[str, torch.Tensor]:
    """The state dict in `path`, read without unpickling code (`weights_only=True`); a training checkpoint holding
    it under `"model_state_dict"` or `"state_dict"` works too."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CHECKPOINT {path} is not a file.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle and zip errors of many types for a bad file
        raise ValueError(
            f"CHECKPOINT {path} cannot be read as a PyTorch state dict with weights_only=True ({error})."
        ) from error
    if isinstance(checkpoint, dict):
        for key in ("model_state_dict", "state_dict"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        raise ValueError(f"CHECKPOINT {path} holds no state dict (a dict of tensors), got {type(checkpoint).__name__}.")
    return checkpoint


def convert_original_checkpoint(
    checkpoint: str | PathLike,
    output_dir: str | PathLike,
    mode: str = "rgb",
    fusion_strategy: str = "early",
    fusion_type: str | None = None,
    fusion_layer: str | None = None,
    model_name: str | PathLike = DEFAULT_BACKBONE,
) -> ViTFERPreTrainedModel:
    """Converts the original implementation's state dict `checkpoint` into a vit-fer model folder `output_dir`
    (weights, config, code, FER pipeline and image processor), and returns the model.

    Args:
        checkpoint: the `.pth` file the original implementation saved.
        output_dir: a folder to create (or an empty one).
        mode, fusion_strategy, fusion_type, fusion_layer: the original model's settings, as given to its
            `create_multimodal_vit_model`.
        model_name: the ViT checkpoint the original was built on (its encoder shape is read from it; its weights are
            not used).
    """
    from .image_processing_vit_fer import ViTFERImageProcessor

    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"OUT_DIR {output_dir} exists and is not an empty folder; choose a new one.")
    state_dict = read_original_checkpoint(checkpoint)
    head_key = next((key for key in state_dict if key.endswith("5.weight") and "classifier" in key), None)
    if head_key is None:
        raise ValueError(f"CHECKPOINT {checkpoint} has no classification head (`*classifier.5.weight`).")
    # The encoders are built with the backbone's shape only: their weights come from the checkpoint.
    model = create_multimodal_vit_model(
        mode=mode,
        fusion_strategy=fusion_strategy,
        fusion_type=fusion_type,
        fusion_layer=fusion_layer,
        model_name=None,
        num_classes=state_dict[head_key].shape[0],
        **_backbone_shape(model_name),
    )
    model.config.model_name = str(model_name)
    model.load_state_dict(convert_original_state_dict(state_dict, model), strict=True)
    model.eval()
    model.save_pretrained(output_dir)
    ViTFERImageProcessor(size=model.config.image_size).save_pretrained(output_dir)
    return model


def _backbone_shape(model_name: str | PathLike) -> dict:
    from transformers import AutoConfig

    source = AutoConfig.from_pretrained(model_name)
    return {field: getattr(source, field) for field in _BACKBONE_FIELDS}
