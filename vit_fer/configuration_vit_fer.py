# Copyright 2026 The vit-fer authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Configurations of the vit-fer models: facial expression recognition from RGB, thermal, or RGB + thermal faces.

The three configurations extend transformers' `ViTConfig`, so every ViT hyper-parameter (`hidden_size`,
`num_hidden_layers`, `image_size`, `patch_size`, ...) is a field of ours with the ViT-B/16 default, and the nested
`ViTModel` encoders read their settings (attention implementation included) from the same object.

This file travels with every checkpoint (`trust_remote_code=True`): it imports nothing but transformers.
"""

from typing import ClassVar, Literal

import transformers
from packaging.version import Version


MIN_TRANSFORMERS_VERSION = "5.23"
"""The oldest transformers these files run on (dataclass configurations validated by `@strict`). Checked here, at
import, because this file travels with every checkpoint: on an older transformers the classes below would fail with
an error that does not name the cause."""

if Version(transformers.__version__) < Version(MIN_TRANSFORMERS_VERSION):
    raise ImportError(
        f"This vit-fer model needs transformers>={MIN_TRANSFORMERS_VERSION}, but transformers "
        f"{transformers.__version__} is installed: pip install -U 'transformers>={MIN_TRANSFORMERS_VERSION}'."
    )

from huggingface_hub.dataclasses import strict  # noqa: E402
from transformers import ViTConfig  # noqa: E402


FER_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprised")
"""The seven expressions, in the index order of the original implementation and of folder-sorted datasets."""


def _check_probability(field: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{field}` must be a probability in [0, 1), got {value!r}.")


def _check_positive(field: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"`{field}` must be a positive integer, got {value!r}.")


@strict
class _FERConfigBase(ViTConfig):
    r"""
    Fields shared by the three vit-fer configurations, on top of `ViTConfig`'s.

    `problem_type` (a field of every transformers config) chooses the loss as for transformers' image classifiers:
    `"single_label_classification"` (class indices, or class probabilities as soft labels, e.g. FER+ votes),
    `"multi_label_classification"` (multi-hot labels, e.g. compound expressions) or `"regression"` (`num_labels`
    targets, e.g. valence and arousal; `num_labels=1` is allowed for it). Unset, it is inferred from the first labels.

    classifier_hidden_size (`int`, *optional*):
        Width of the hidden layer of the classification head
        (LayerNorm → Dropout → Linear → GELU → Dropout → Linear). Defaults to `hidden_size // 2`, as in the original
        implementation (384 for ViT-B).
    classifier_dropout (`float`, *optional*, defaults to 0.1):
        Dropout probability before the head's hidden layer.
    classifier_output_dropout (`float`, *optional*):
        Dropout probability before the head's output layer. Defaults to `classifier_dropout / 2`, as in the original
        implementation (0.05 for the default 0.1).
    classifier_layer_norm_eps (`float`, *optional*, defaults to 1e-5):
        Epsilon of the head's LayerNorm (PyTorch's default, which the original implementation's head uses; the
        encoders keep `layer_norm_eps`).
    model_name (`str`, *optional*):
        The ViT checkpoint (Hub id or folder) the encoders were initialised from, e.g.
        `"google/vit-base-patch16-224-in21k"`; `None` for randomly initialised encoders. Recorded for the model card
        and [`~ViTFERPreTrainedModel.get_model_info`]; loading a saved model never reads it.
    freeze_backbone (`bool`, *optional*, defaults to `False`):
        Whether the ViT encoder(s) are frozen when the model is built (classifier-only fine-tuning). The model's
        `freeze_backbone()`, `unfreeze_backbone()` and `unfreeze_last_n_layers(n)` change it later.
    check_inputs_finite (`bool`, *optional*, defaults to `False`):
        Whether `forward` raises on NaN or infinite pixel values. Off by default: the check synchronises with the
        device on every call.
    calibration_temperature (`float`, *optional*, defaults to 1.0):
        Temperature scaling (Guo et al., 2017): calibrated class probabilities are `softmax(logits / T)`. Fitted on
        the validation split at the end of training (`vit_fer.calibration.fit_temperature`); 1.0 is uncalibrated.
        `forward` always returns the raw logits; the FER pipeline and `vit-fer predict` report calibrated
        probabilities.
    """

    # Outputs beyond the logits that the `Trainer` must not gather as predictions.
    keys_to_ignore_at_inference: ClassVar[list[str]] = [
        "hidden_states",
        "attentions",
        "thermal_hidden_states",
        "thermal_attentions",
        "modality_weights",
        "rgb_logits",
        "thermal_logits",
    ]

    classifier_hidden_size: int | None = None
    classifier_dropout: float = 0.1
    classifier_output_dropout: float | None = None
    classifier_layer_norm_eps: float = 1e-5
    model_name: str | None = None
    freeze_backbone: bool = False
    check_inputs_finite: bool = False
    calibration_temperature: float = 1.0

    def __post_init__(self, **kwargs):
        # The head's sizes follow the encoder and the first dropout unless set, as in the original implementation.
        if self.classifier_hidden_size is None:
            self.classifier_hidden_size = self.hidden_size // 2
        if self.classifier_output_dropout is None:
            self.classifier_output_dropout = self.classifier_dropout / 2
        # The FER label names are the default only for the 7-class problem; any other `num_labels` keeps
        # transformers' generic LABEL_i names.
        if self.id2label is None and kwargs.get("num_labels", len(FER_LABELS)) == len(FER_LABELS):
            self.id2label = dict(enumerate(FER_LABELS))
            self.label2id = {label: index for index, label in enumerate(FER_LABELS)}
        super().__post_init__(**kwargs)

    def validate_attention_heads(self):
        # transformers' ViT no longer checks this itself, and the mismatch would only surface in the first forward.
        if self.num_attention_heads < 1 or self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"`num_attention_heads` must divide `hidden_size` ({self.hidden_size}), got {self.num_attention_heads}."
            )

    def validate_fer_head(self):
        _check_positive("classifier_hidden_size", self.classifier_hidden_size)
        _check_probability("classifier_dropout", self.classifier_dropout)
        _check_probability("classifier_output_dropout", self.classifier_output_dropout)
        if self.classifier_layer_norm_eps <= 0:
            raise ValueError(f"`classifier_layer_norm_eps` must be > 0, got {self.classifier_layer_norm_eps}.")
        if not 0.0 < self.calibration_temperature < float("inf"):
            raise ValueError(
                f"`calibration_temperature` must be a positive finite number, got {self.calibration_temperature!r}."
            )
        if self.num_labels < 1 or (self.num_labels == 1 and self.problem_type not in (None, "regression")):
            raise ValueError(
                f"`num_labels` must be at least 2 for {self.problem_type or 'classification'} (1 only for "
                f"problem_type='regression'), got {self.num_labels}."
            )


@strict
class ViTFERConfig(_FERConfigBase):
    r"""
    Configuration of [`ViTForFER`]: one ViT encoder on one modality (RGB or thermal) and the FER head on its final
    [CLS] token. The defaults give google/vit-base-patch16-224-in21k's encoder and the 7 FER labels.

    modality (`str`, *optional*, defaults to `"rgb"`):
        Which images the model reads as `pixel_values`: `"rgb"` or `"thermal"`. Thermal images come with
        `num_channels` channels (the image processor replicates single-channel thermal to 3).

    Example:

    ```python
    >>> from vit_fer import ViTFERConfig, ViTForFER

    >>> config = ViTFERConfig(modality="thermal")
    >>> model = ViTForFER(config)  # random weights; see `create_multimodal_vit_model` for pretrained ones
    ```"""

    model_type = "vit-fer"

    modality: Literal["rgb", "thermal"] = "rgb"


@strict
class EarlyFusionViTConfig(_FERConfigBase):
    r"""
    Configuration of [`EarlyFusionViT`]: RGB and thermal images combined at the input of one ViT encoder.

    fusion_type (`str`, *optional*, defaults to `"concat"`):
        How the two images are combined: `"concat"` stacks them along the channel axis and reads them with one
        widened patch embedding of `rgb_num_channels + thermal_num_channels` channels; `"add"` sums them element-wise
        (both must then have the same number of channels) and reads the sum with the ordinary patch embedding.
    rgb_num_channels (`int`, *optional*, defaults to 3):
        Channels of the RGB images.
    thermal_num_channels (`int`, *optional*, defaults to 3):
        Channels of the thermal images.
    num_channels (`int`, *optional*):
        Input channels of the encoder's patch embedding. Derived from the two counts above when not given
        (their sum for `"concat"`, their common value for `"add"`); a value that disagrees is an error.

    Example:

    ```python
    >>> from vit_fer import EarlyFusionViTConfig

    >>> EarlyFusionViTConfig(fusion_type="concat").num_channels
    6
    ```"""

    model_type = "vit-fer-early-fusion"

    fusion_type: Literal["concat", "add"] = "concat"
    rgb_num_channels: int = 3
    thermal_num_channels: int = 3
    num_channels: int | None = None

    def __post_init__(self, **kwargs):
        _check_positive("rgb_num_channels", self.rgb_num_channels)
        _check_positive("thermal_num_channels", self.thermal_num_channels)
        if self.fusion_type == "add" and self.rgb_num_channels != self.thermal_num_channels:
            raise ValueError(
                "`fusion_type='add'` sums the images element-wise, so `rgb_num_channels` and `thermal_num_channels` "
                f"must be equal; got {self.rgb_num_channels} and {self.thermal_num_channels}."
            )
        encoder_channels = (
            self.rgb_num_channels + self.thermal_num_channels if self.fusion_type == "concat" else self.rgb_num_channels
        )
        if self.num_channels is None:
            self.num_channels = encoder_channels
        elif self.num_channels != encoder_channels:
            raise ValueError(
                f"`num_channels` must be {encoder_channels} for fusion_type={self.fusion_type!r} with "
                f"rgb_num_channels={self.rgb_num_channels} and thermal_num_channels={self.thermal_num_channels}; "
                f"got {self.num_channels}."
            )
        super().__post_init__(**kwargs)


@strict
class LateFusionViTConfig(_FERConfigBase):
    r"""
    Configuration of [`LateFusionViT`]: one ViT encoder per modality, fused after encoding.

    fusion_layer (`str`, *optional*, defaults to `"feature"`):
        Where the modalities meet: `"feature"` fuses the two [CLS] features and classifies them with one head;
        `"prediction"` classifies each modality with its own head and combines the predictions.
    fusion_type (`str`, *optional*):
        Feature fusion only: `"concat"` (the head reads `2 × hidden_size` features), `"add"` (sum of the features)
        or `"attention"` (a learned, per-sample softmax weighting of the two features; the weights are returned as
        `modality_weights`). Defaults to `"concat"` for feature fusion. With prediction fusion, only `"attention"`:
        the original implementation's learned combination of the two heads' logits (a linear layer from both heads'
        `2 × num_labels` logits to `num_labels`), used instead of `prediction_fusion`.
    prediction_fusion (`str`, *optional*, defaults to `"mean"`):
        Prediction fusion without `fusion_type`: `"mean"` averages the per-modality class probabilities;
        `"weighted"` averages them with two learned modality weights (returned as `modality_weights`).
    fusion_attention_hidden_size (`int`, *optional*, defaults to 128):
        Width of the scoring MLP of `fusion_type="attention"`.
    modality_dropout (`float`, *optional*, defaults to 0.0):
        Training only: the probability that a sample loses one of its two modalities (RGB or thermal, with equal
        chance), so that the model learns to predict from either alone. A dropped modality's features are zeroed
        rather than skipped, so every parameter takes part in every step (DistributedDataParallel needs that).
    share_encoder (`bool`, *optional*, defaults to `False`):
        Whether RGB and thermal go through one shared encoder instead of two.

    Example:

    ```python
    >>> from vit_fer import LateFusionViTConfig

    >>> LateFusionViTConfig(fusion_layer="feature", fusion_type="attention").fusion_type
    'attention'
    ```"""

    model_type = "vit-fer-late-fusion"

    fusion_layer: Literal["feature", "prediction"] = "feature"
    fusion_type: Literal["concat", "add", "attention"] | None = None
    prediction_fusion: Literal["mean", "weighted"] = "mean"
    fusion_attention_hidden_size: int = 128
    modality_dropout: float = 0.0
    share_encoder: bool = False

    def __post_init__(self, **kwargs):
        if self.fusion_layer == "feature" and self.fusion_type is None:
            self.fusion_type = "concat"
        elif self.fusion_layer == "prediction" and self.fusion_type not in (None, "attention"):
            raise ValueError(
                f"`fusion_type` with fusion_layer='prediction' must be 'attention' (learned combination of the heads' "
                f"logits) or unset, got {self.fusion_type!r}; average the predictions with `prediction_fusion` "
                "('mean' or 'weighted')."
            )
        elif self.fusion_layer == "prediction" and self.fusion_type == "attention" and self.prediction_fusion != "mean":
            raise ValueError(
                "fusion_type='attention' with fusion_layer='prediction' combines the heads' logits itself; "
                f"`prediction_fusion` must stay 'mean', got {self.prediction_fusion!r}."
            )
        super().__post_init__(**kwargs)

    def validate_late_fusion(self):
        _check_probability("modality_dropout", self.modality_dropout)
        _check_positive("fusion_attention_hidden_size", self.fusion_attention_hidden_size)


@strict
class MidFusionViTConfig(_FERConfigBase):
    r"""
    Configuration of [`MidFusionViT`]: one ViT stream per modality up to layer `fusion_layer`, where RGB and thermal
    start to interact. `fusion_layer=0` is early fusion, `fusion_layer=num_hidden_layers` late fusion.

    fusion_layer (`int`, *optional*, defaults to 8):
        The first layer, in `[0, num_hidden_layers]`, at which the modalities interact: layers below it run per
        modality; from it on they are fused as `fusion_type` says. The default is MBT's ViT-B setting (8 of 12).
    fusion_type (`str`, *optional*, defaults to `"bottleneck"`):
        How the modalities interact from `fusion_layer` on:
        - `"bottleneck"` (MBT, Nagrani et al. 2021): `num_bottleneck_tokens` learned tokens; in every fused layer each
          modality's own layer reads its tokens plus the bottleneck tokens, and the two updated bottleneck copies
          are averaged. The head reads the mean of the two final [CLS] features.
        - `"cross_attention"`: each modality keeps its own layers, and after every fused layer its tokens also
          attend to the other modality's through a new cross-attention block whose output projection starts at
          zero, so that the untrained model computes exactly what two pretrained encoders compute. The head reads
          the mean of the two [CLS] features.
        - `"concat"`: the two token sequences, each with a learned modality embedding (zero at initialisation),
          are concatenated and the remaining layers (the RGB stream's) attend over both jointly. The head reads
          both [CLS] features side by side (`2 × hidden_size`).
        - `"add"`: the registered tokens are summed position by position and one stream (the RGB one) continues;
          at `fusion_layer=0` the images themselves are summed, as in `EarlyFusionViT(fusion_type="add")`. The head
          reads the fused [CLS] feature. The cheapest design: `(num_hidden_layers + fusion_layer) /
          num_hidden_layers` of one encoder.
    num_bottleneck_tokens (`int`, *optional*, defaults to 4):
        `fusion_type="bottleneck"` only: the number of shared bottleneck tokens (MBT uses 4).
    cross_attention_hidden_size (`int`, *optional*):
        `fusion_type="cross_attention"` only: the width of the queries, keys and values of the cross-attention
        blocks (split over `num_attention_heads` heads). Defaults to `hidden_size // 2`, which halves the blocks'
        cost: at ViT-B/16 the model then computes 2.24× one encoder at `fusion_layer=4` (2.48× at full width).
    modality_dropout (`float`, *optional*, defaults to 0.0):
        Training only: the probability that a sample loses one of its two modalities (RGB or thermal, with equal
        chance), so that the model learns to predict from either alone. Every design allows it: the dropped
        modality's tokens are masked out of the fusion (and its [CLS] feature out of the head) but still computed,
        so every parameter takes part in every step (DistributedDataParallel needs that).
    share_encoder (`bool`, *optional*, defaults to `False`):
        Whether both streams use one set of encoder weights instead of one set per modality.

    Example:

    ```python
    >>> from vit_fer import MidFusionViTConfig

    >>> MidFusionViTConfig(fusion_layer=8, fusion_type="bottleneck").num_bottleneck_tokens
    4
    ```"""

    model_type = "vit-fer-mid-fusion"

    fusion_layer: int = 8
    fusion_type: Literal["bottleneck", "cross_attention", "concat", "add"] = "bottleneck"
    num_bottleneck_tokens: int = 4
    cross_attention_hidden_size: int | None = None
    modality_dropout: float = 0.0
    share_encoder: bool = False

    def __post_init__(self, **kwargs):
        if self.cross_attention_hidden_size is None:
            self.cross_attention_hidden_size = self.hidden_size // 2
        super().__post_init__(**kwargs)

    def validate_mid_fusion(self):
        if not 0 <= self.fusion_layer <= self.num_hidden_layers:
            raise ValueError(
                f"`fusion_layer` must be an integer in [0, {self.num_hidden_layers}] (num_hidden_layers), "
                f"got {self.fusion_layer!r}."
            )
        _check_positive("num_bottleneck_tokens", self.num_bottleneck_tokens)
        if self.cross_attention_hidden_size < 1 or self.cross_attention_hidden_size % self.num_attention_heads:
            raise ValueError(
                "`cross_attention_hidden_size` must be a positive multiple of num_attention_heads "
                f"({self.num_attention_heads}), got {self.cross_attention_hidden_size}."
            )
        _check_probability("modality_dropout", self.modality_dropout)


__all__ = ["FER_LABELS", "EarlyFusionViTConfig", "LateFusionViTConfig", "MidFusionViTConfig", "ViTFERConfig"]
