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
"""PyTorch vit-fer models: facial expression recognition on ViT encoders from RGB, thermal, or both.

- [`ViTForFER`]: one encoder on one modality.
- [`EarlyFusionViT`]: RGB and thermal combined at the input of one encoder (channel concat or element-wise sum).
- [`LateFusionViT`]: one encoder per modality, fused at the feature or at the prediction level.
- [`MidFusionViT`]: one stream per modality up to layer `fusion_layer`, fused from there on (MBT bottleneck tokens,
  cross-attention, joint attention over both sequences, or a sum).

Every encoder is transformers' own `ViTModel`, so attention implementations, activation checkpointing,
`interpolate_pos_encoding` and the conversion of old ViT checkpoints behave exactly as in transformers' ViT.
Pretrained encoder weights are brought in by [`load_pretrained_backbone`], after construction.

This file travels with every checkpoint (`trust_remote_code=True`): it imports nothing of ours but its sibling
configuration file.
"""

import dataclasses
import sys
from dataclasses import dataclass
from os import PathLike
from typing import ClassVar

import torch
from torch import nn
from transformers import ViTModel
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.vit.modeling_vit import ViTAttention, ViTPreTrainedModel, eager_attention_forward
from transformers.utils import logging

from .configuration_vit_fer import (
    EarlyFusionViTConfig,
    LateFusionViTConfig,
    MidFusionViTConfig,
    ViTFERConfig,
    _FERConfigBase,
)


logger = logging.get_logger(__name__)

DEFAULT_BACKBONE = "google/vit-base-patch16-224-in21k"


@dataclass
class FERClassifierOutput(ImageClassifierOutput):
    r"""
    Output of the vit-fer models: [`~transformers.modeling_outputs.ImageClassifierOutput`] plus what fusion adds.

    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
        The loss of `config.problem_type` (see [`fer_loss`]) of `logits` against `labels`.
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Class scores before softmax. For prediction fusion, the log of the fused class probabilities (or, with
        `fusion_type="attention"`, the learned combination of the heads' logits).
    hidden_states, attentions:
        Of the (RGB, for late fusion) encoder, when asked for, as in `ImageClassifierOutput`.
    thermal_hidden_states, thermal_attentions:
        Late and mid fusion: the same for the thermal encoder (see [`MidFusionViT`] for what fused layers return).
    modality_weights (`torch.FloatTensor` of shape `(batch_size, 2)`, *optional*):
        Late fusion with `fusion_type="attention"` or `prediction_fusion="weighted"`: the weight each sample gave to
        [RGB, thermal]. A missing modality gets weight 0.
    rgb_logits, thermal_logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*):
        Prediction fusion only: each modality's own head (read `modality_weights` or the inputs to know which
        modality was present: an absent one's head sees zeros and has weight 0 in `logits`).
    """

    thermal_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    thermal_attentions: tuple[torch.FloatTensor, ...] | None = None
    modality_weights: torch.FloatTensor | None = None
    rgb_logits: torch.FloatTensor | None = None
    thermal_logits: torch.FloatTensor | None = None


def check_pixel_values(
    name: str,
    pixel_values: torch.Tensor,
    num_channels: int,
    reference: torch.Tensor | None = None,
    reference_name: str = "pixel_values",
    check_finite: bool = False,
) -> None:
    """Raises a `ValueError` naming `name` when `pixel_values` is not a (batch, `num_channels`, height, width) batch,
    does not match the batch size and image size of `reference`, or (with `check_finite`) holds NaN or inf."""
    if pixel_values.ndim != 4:
        raise ValueError(
            f"`{name}` must be a 4D tensor (batch_size, {num_channels}, height, width), "
            f"got shape {tuple(pixel_values.shape)}."
        )
    if pixel_values.shape[1] != num_channels:
        raise ValueError(
            f"`{name}` must have {num_channels} channels (batch_size, {num_channels}, height, width), "
            f"got shape {tuple(pixel_values.shape)}."
        )
    if reference is not None and (
        pixel_values.shape[0] != reference.shape[0] or pixel_values.shape[2:] != reference.shape[2:]
    ):
        raise ValueError(
            f"`{name}` must pair one to one with `{reference_name}`: expected batch size {reference.shape[0]} and "
            f"image size {tuple(reference.shape[2:])}, got shape {tuple(pixel_values.shape)} against "
            f"{tuple(reference.shape)}."
        )
    if check_finite and not torch.isfinite(pixel_values).all():
        raise ValueError(f"`{name}` holds NaN or infinite values.")


def infer_problem_type(config: _FERConfigBase, labels: torch.Tensor) -> str:
    """`config.problem_type`, set from `labels` when unset by transformers' rule (see [`fer_loss`])."""
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif not (labels.dtype.is_floating_point or labels.dtype == torch.bool):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    return config.problem_type


def fer_loss(logits: torch.Tensor, labels: torch.Tensor, config: _FERConfigBase) -> torch.Tensor:
    """The loss of every vit-fer model, chosen by `config.problem_type` as in transformers' image classifiers.

    - `"single_label_classification"`: cross-entropy; `labels` are class indices of shape `(batch,)`, or class
      probabilities of shape `(batch, num_labels)` (soft labels, e.g. FER+ vote distributions).
    - `"multi_label_classification"`: binary cross-entropy with logits; `labels` are multi-hot floats
      `(batch, num_labels)`.
    - `"regression"`: mean squared error; `labels` are floats `(batch,)` for one target, `(batch, num_labels)`.

    With `problem_type=None` the type is inferred once from the first labels and stored in the config, by
    transformers' rule: `num_labels == 1` → regression, integer labels → single-label, float labels → multi-label.
    Soft labels therefore need `problem_type="single_label_classification"` set explicitly.
    """
    num_labels, batch_size = config.num_labels, logits.shape[0]
    problem_type = infer_problem_type(config, labels)
    labels = labels.to(logits.device)
    if problem_type == "single_label_classification" and labels.dtype.is_floating_point:
        expected = (batch_size, num_labels)
        if tuple(labels.shape) != expected:
            raise ValueError(
                f"Float `labels` for single_label_classification are class probabilities (soft labels) of shape "
                f"{expected}, got shape {tuple(labels.shape)}; pass class indices as integers."
            )
        # The range check reads the labels on the host, which a compiled graph cannot do without breaking.
        sums = labels.sum(-1)
        valid = labels.min() >= 0 and torch.allclose(sums, torch.ones_like(sums), atol=1e-3)
        if not torch.compiler.is_compiling() and not valid:
            raise ValueError("Soft `labels` must be probability vectors: non-negative, each row summing to 1.")
        return nn.functional.cross_entropy(logits.float(), labels.float())
    if problem_type == "single_label_classification":
        if labels.ndim != 1 or labels.shape[0] != batch_size:
            raise ValueError(
                f"`labels` must have shape ({batch_size},) — one class index per sample — "
                f"got shape {tuple(labels.shape)}."
            )
        if labels.dtype == torch.bool:
            raise ValueError(f"`labels` must hold integer class indices, got dtype {labels.dtype}.")
        if not torch.compiler.is_compiling() and labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
            raise ValueError(
                f"`labels` must lie in [0, {num_labels}), got values from {labels.min().item()} to "
                f"{labels.max().item()}."
            )
        return nn.functional.cross_entropy(logits.float(), labels)
    expected = (batch_size, num_labels)
    if problem_type == "regression" and num_labels == 1 and labels.ndim == 1:
        expected = (batch_size,)
        logits = logits.squeeze(-1)
    if tuple(labels.shape) != expected:
        raise ValueError(
            f"`labels` for {problem_type} must have shape {expected} (one value per sample and "
            f"{'target' if problem_type == 'regression' else 'class'}), got shape {tuple(labels.shape)}."
        )
    if problem_type == "multi_label_classification":
        if not torch.compiler.is_compiling() and ((labels < 0) | (labels > 1)).any():
            raise ValueError("Multi-label `labels` must be multi-hot values in [0, 1].")
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
    return nn.functional.mse_loss(logits.float(), labels.float())


class FERClassificationHead(nn.Module):
    """The specification's head: LayerNorm → Dropout → Linear → GELU → Dropout → Linear."""

    def __init__(self, config: _FERConfigBase, input_size: int):
        super().__init__()
        self.layernorm = nn.LayerNorm(input_size, eps=config.classifier_layer_norm_eps)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.dense = nn.Linear(input_size, config.classifier_hidden_size)
        self.activation = nn.GELU()
        self.output_dropout = nn.Dropout(config.classifier_output_dropout)
        self.out_proj = nn.Linear(config.classifier_hidden_size, config.num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.dense(self.dropout(self.layernorm(features))))
        return self.out_proj(self.output_dropout(hidden))


# No module class of this file may have "Attention" in its name: transformers decides whether
# `set_attn_implementation` can switch a model by searching its file for an `*Attention*(nn.Module)` class that does
# not dispatch through `ALL_ATTENTION_FUNCTIONS`, and would refuse for every vit-fer model.
class ScoredFeatureFusion(nn.Module):
    """Scores each modality's feature with a small MLP and takes the softmax-weighted sum over the modalities
    present in each sample."""

    def __init__(self, config: LateFusionViTConfig):
        super().__init__()
        # No bias on the last layer: it would shift both modalities' scores alike, which the softmax cancels, so it
        # would never receive a gradient.
        self.score = nn.Sequential(
            nn.Linear(config.hidden_size, config.fusion_attention_hidden_size),
            nn.Tanh(),
            nn.Linear(config.fusion_attention_hidden_size, 1, bias=False),
        )

    def forward(self, features: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # features: (batch, 2, hidden); present: (batch, 2) bool, at least one True per row.
        scores = self.score(features).squeeze(-1).masked_fill(~present, float("-inf"))
        weights = scores.softmax(dim=-1)
        return (weights.unsqueeze(-1) * features).sum(dim=1), weights


def drop_modalities(present: torch.Tensor, probability: float) -> torch.Tensor:
    """Modality dropout: each sample of `present` ((batch, 2) bool, [RGB, thermal]) that has both modalities loses
    one of them, chosen with equal chance, with probability `probability`.

    In a distributed run (`torch.distributed` initialised) each process draws the masks of the whole global batch
    and keeps its own share. The `Trainer` seeds every process alike, so the processes would otherwise drop the same
    modality at the same batch positions; this way N processes with batches of b samples drop exactly what one
    process with batches of N × b does."""
    batch_size = present.shape[0]
    shard, num_shards = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        shard, num_shards = torch.distributed.get_rank(), torch.distributed.get_world_size()
    share = slice(shard * batch_size, (shard + 1) * batch_size)
    global_size = batch_size * num_shards
    drop = (torch.rand(global_size, device=present.device)[share] < probability) & present.all(dim=1)
    dropped_modality = torch.randint(0, 2, (global_size,), device=present.device)[share]
    dropped = nn.functional.one_hot(dropped_modality, 2).bool() & drop.unsqueeze(1)
    return present & ~dropped


class WeightedPredictionFusion(nn.Module):
    """Two learned modality weights (a softmax over present modalities) for averaging class probabilities."""

    def __init__(self):
        super().__init__()
        self.modality_logits = nn.Parameter(torch.zeros(2))

    def forward(self, present: torch.Tensor) -> torch.Tensor:
        return self.modality_logits.expand_as(present).masked_fill(~present, float("-inf")).softmax(dim=-1)


def fuse_predictions(head_logits: torch.Tensor, weights: torch.Tensor, config: _FERConfigBase) -> torch.Tensor:
    """Prediction fusion of per-modality head outputs `(batch, 2, num_labels)` with modality `weights` `(batch, 2)`:
    the weighted mean of what each head predicts for `config.problem_type`, given back as logits of that type —
    the log of the mixed class probabilities (so cross-entropy on them is the mixture's NLL), the log-odds of the
    mixed per-class probabilities (multi-label), or the mixed values themselves (regression)."""
    weights = weights.unsqueeze(-1)
    problem_type = config.problem_type or ("regression" if config.num_labels == 1 else "single_label_classification")
    if problem_type == "regression":
        return (weights * head_logits).sum(dim=1)
    if problem_type == "multi_label_classification":
        fused = (weights * head_logits.sigmoid()).sum(dim=1)
        return torch.logit(fused, eps=torch.finfo(fused.dtype).eps)
    fused = (weights * head_logits.softmax(-1)).sum(dim=1)
    return fused.clamp_min(torch.finfo(fused.dtype).tiny).log()


class FusionBottleneck(nn.Module):
    """MBT's shared bottleneck tokens, through which the two streams of [`MidFusionViT`] exchange information."""

    def __init__(self, config: MidFusionViTConfig):
        super().__init__()
        self.tokens = nn.Parameter(torch.zeros(1, config.num_bottleneck_tokens, config.hidden_size))

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.tokens.expand(batch_size, -1, -1)


class ModalityEmbeddings(nn.Module):
    """One learned vector per modality ([RGB, thermal]), added to every token of that modality where the two token
    sequences are concatenated; zero at initialisation."""

    def __init__(self, config: MidFusionViTConfig):
        super().__init__()
        self.embeddings = nn.Parameter(torch.zeros(2, config.hidden_size))

    def forward(self, hidden_states: torch.Tensor, modality_index: int) -> torch.Tensor:
        return hidden_states + self.embeddings[modality_index]


class ZeroInitLinear(nn.Linear):
    """A linear layer whose weight and bias start at zero (set by `_init_weights`, which visits it)."""


class ViTCrossAttention(ViTAttention):
    """transformers' `ViTAttention` with its queries from one token sequence and its keys and values from another,
    `config.cross_attention_hidden_size` wide. The attention itself is transformers' implementation that
    `config._attn_implementation` selects. The output projection starts at zero: the untrained block adds nothing,
    so each stream starts as its pretrained encoder."""

    def __init__(self, config: MidFusionViTConfig):
        super().__init__(config)
        width = config.cross_attention_hidden_size
        self.head_dim = width // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.q_proj = nn.Linear(config.hidden_size, width, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, width, bias=config.qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, width, bias=config.qkv_bias)
        self.o_proj = ZeroInitLinear(width, config.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, context: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, query_length = hidden_states.shape[:2]

        def heads(states: torch.Tensor) -> torch.Tensor:
            return states.view(batch_size, states.shape[1], -1, self.head_dim).transpose(1, 2)

        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            heads(self.q_proj(hidden_states)),
            heads(self.k_proj(context)),
            heads(self.v_proj(context)),
            None,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
        )
        return self.o_proj(attn_output.reshape(batch_size, query_length, -1)), attn_weights


class CrossModalBlock(GradientCheckpointingLayer):
    """A pre-norm residual cross-attention block: one modality's tokens read the other modality's. Its output
    projection starts at zero, so the untrained block is the identity."""

    def __init__(self, config: MidFusionViTConfig):
        super().__init__()
        self.layernorm_query = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_context = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ViTCrossAttention(config)

    def forward(
        self, hidden_states: torch.Tensor, context: torch.Tensor, context_present: torch.Tensor | None = None
    ) -> torch.Tensor:
        attended, _ = self.attention(self.layernorm_query(hidden_states), self.layernorm_context(context))
        if context_present is not None:  # samples whose other modality was dropped read nothing from it
            attended = attended * context_present.to(attended.dtype)[:, None, None]
        return hidden_states + attended


class LearnedLogitFusion(nn.Module):
    """The original implementation's prediction-level attention fusion: a linear layer from both heads' logits,
    concatenated [RGB, thermal], to the fused logits. An absent modality's logits enter as zeros."""

    def __init__(self, config: LateFusionViTConfig):
        super().__init__()
        self.proj = nn.Linear(2 * config.num_labels, config.num_labels)

    def forward(self, rgb_logits: torch.Tensor, thermal_logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([rgb_logits, thermal_logits], dim=1) * present.unsqueeze(-1).to(rgb_logits.dtype)
        return self.proj(logits.flatten(1))


# The original implementation's constructor keywords beside the config fields (`fusion_type`, `fusion_layer`, ...).
ORIGINAL_ARGUMENTS = ("model_name", "num_classes", "dropout_rate", "freeze_backbone", "use_gradient_checkpointing")
# Keyword arguments every transformers config takes beside its fields.
_CONFIG_KEYWORDS = frozenset({"attn_implementation", "num_labels", "output_attentions"})


class ViTFERPreTrainedModel(ViTPreTrainedModel):
    """Base class of the vit-fer models: weight initialisation, backbone freezing and Hub-ready saving."""

    config: _FERConfigBase
    base_model_prefix = ""
    _no_split_modules = ["ViTEmbeddings", "ViTLayer"]
    # Whether a model of RGB + thermal pairs can predict from one of the two alone (the FER pipeline reads it).
    accepts_missing_modality: ClassVar[bool] = False

    def _init_weights(self, module: nn.Module) -> None:
        # `transformers.initialization` helpers skip tensors already loaded from a checkpoint; in-place writes
        # (`.data.normal_()`) would re-randomise them after `from_pretrained`.
        super()._init_weights(module)
        if isinstance(module, WeightedPredictionFusion):
            init.zeros_(module.modality_logits)
        elif isinstance(module, FusionBottleneck):
            init.trunc_normal_(module.tokens, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, ModalityEmbeddings):
            init.zeros_(module.embeddings)
        elif isinstance(module, ZeroInitLinear):
            init.zeros_(module.weight)
            init.zeros_(module.bias)

    def __init__(
        self,
        config: _FERConfigBase | None = None,
        *,
        model_name: str | PathLike | None = DEFAULT_BACKBONE,
        num_classes: int | None = None,
        dropout_rate: float | None = None,
        freeze_backbone: bool | None = None,
        use_gradient_checkpointing: bool = False,
        **config_fields,
    ):
        r"""
        Every vit-fer model is built from its config (random weights; `from_pretrained` for a saved model), or with
        the original implementation's keywords, which load the ViT checkpoint `model_name` into every encoder:

        ```python
        >>> model = EarlyFusionViT(model_name="google/vit-base-patch16-224-in21k", num_classes=7,
        ...                        fusion_type="concat", freeze_backbone=False, dropout_rate=0.1)
        ```

        Args:
            config: the model's configuration; excludes every other argument.
            model_name: a Hub id or a local folder holding a `ViTModel` or `ViTForImageClassification` checkpoint,
                whose encoder shape the model takes; `None` for randomly initialised encoders shaped by
                `config_fields` (training from scratch).
            num_classes: number of expression classes (`num_labels`; the 7 FER labels by default).
            dropout_rate: dropout before the head's hidden layer (`classifier_dropout`; the second is half of it).
            freeze_backbone: freeze the encoder(s) for classifier-only fine-tuning.
            use_gradient_checkpointing: enable activation checkpointing of the encoder layers.
            **config_fields: any other field of the model's configuration (`fusion_type`, `fusion_layer`,
                `modality`, `attn_implementation`, ...). Anything else is refused.
        """
        pretrained = None
        if config is None:
            config, pretrained = self.config_from_arguments(
                model_name=model_name,
                num_classes=num_classes,
                dropout_rate=dropout_rate,
                freeze_backbone=freeze_backbone,
                **config_fields,
            )
        elif config_fields or use_gradient_checkpointing or model_name != DEFAULT_BACKBONE or any(
            value is not None for value in (num_classes, dropout_rate, freeze_backbone)
        ):
            raise ValueError(
                f"Pass either `config` or the keyword arguments ({', '.join(ORIGINAL_ARGUMENTS)}, config fields), "
                "not both."
            )
        super().__init__(config)
        # Acted on by `post_init`, once the subclass has built its modules.
        self._pretrained_backbone = pretrained
        self._use_gradient_checkpointing = use_gradient_checkpointing

    @classmethod
    def config_from_arguments(
        cls,
        model_name: str | PathLike | None = DEFAULT_BACKBONE,
        num_classes: int | None = None,
        dropout_rate: float | None = None,
        freeze_backbone: bool | None = None,
        **config_fields,
    ) -> tuple[_FERConfigBase, str | PathLike | None]:
        """The configuration the keyword constructor builds, and the checkpoint to load into its encoders."""
        config_class = cls.config_class
        # A config keeps unknown keyword arguments as attributes: a misspelt option would silently do nothing.
        known = {field.name for field in dataclasses.fields(config_class)} | _CONFIG_KEYWORDS
        unknown = sorted(set(config_fields) - known)
        if unknown:
            raise ValueError(
                f"{cls.__name__} got unexpected keyword arguments: {config_class.__name__} has no field {unknown}, "
                f"and they are none of {', '.join(ORIGINAL_ARGUMENTS)} (see the config's documentation)."
            )
        for name, field, value in (
            ("num_classes", "num_labels", num_classes),
            ("dropout_rate", "classifier_dropout", dropout_rate),
            ("freeze_backbone", "freeze_backbone", freeze_backbone),
        ):
            if value is not None:
                if field in config_fields:
                    raise ValueError(f"Pass `{name}` or `{field}`, not both.")
                config_fields[field] = value
        config_fields.setdefault("num_labels", 7)
        if model_name is None:
            return config_class(**config_fields), None
        return backbone_config(config_class, model_name, **config_fields), model_name

    def post_init(self) -> None:
        super().post_init()
        if getattr(self, "_pretrained_backbone", None) is not None:
            load_pretrained_backbone(self, self._pretrained_backbone)
        if self.config.freeze_backbone:
            self.freeze_backbone()
        if getattr(self, "_use_gradient_checkpointing", False):
            self.activation_checkpointing_enable()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # Loading replaces the parameters built in `__init__`, and with them their `requires_grad` flags.
        model = super().from_pretrained(*args, **kwargs)
        loaded = model[0] if isinstance(model, tuple) else model
        if loaded.config.freeze_backbone:
            loaded.freeze_backbone()
        return model

    def _refuse_one_image_pipeline(self) -> None:
        """Raises, saying how to call the model, when transformers' image-classification pipeline (which feeds one
        image) runs a model of RGB + thermal pairs: it would fail on every call, or (late fusion) silently predict
        from RGB alone. Called only when a modality is missing; the pipeline is found among the callers, since
        neither the inputs nor the loading tell it apart from a direct call."""
        if torch.compiler.is_compiling():
            return
        from transformers.pipelines.image_classification import ImageClassificationPipeline

        frame = sys._getframe(1)
        while frame is not None:
            if isinstance(frame.f_locals.get("self"), ImageClassificationPipeline):
                from .pipeline_vit_fer import how_to_call  # travels with this file (see `save_pretrained`)

                raise ValueError(
                    f"The 'image-classification' pipeline passes one image. {how_to_call(type(self).__name__)}"
                )
            frame = frame.f_back

    def get_input_embeddings(self) -> nn.Module:
        """The patch embedding of the encoder reading `pixel_values` (the model's main input), as
        `ViTForImageClassification` returns it. Multi-encoder models follow transformers' dual encoders (CLIP's
        `get_input_embeddings` is its main-input tower's): a late-fusion thermal encoder's patch embedding is
        `model.encoder_for("thermal").get_input_embeddings()`."""
        return self.backbone_modules()[0].get_input_embeddings()

    # -- backbone freezing ---------------------------------------------------------------------------------------

    def backbone_modules(self) -> list[ViTModel]:
        """The distinct ViT encoders of the model. Every other parameter belongs to the head or the fusion modules."""
        return [module for module in self.children() if isinstance(module, ViTModel)]

    def freeze_backbone(self) -> None:
        """Freezes every encoder parameter (classifier-only fine-tuning)."""
        self.unfreeze_last_n_layers(0)

    def unfreeze_backbone(self) -> None:
        """Makes every encoder parameter trainable (full fine-tuning)."""
        self.unfreeze_last_n_layers(self.config.num_hidden_layers)

    def unfreeze_last_n_layers(self, n: int) -> None:
        """Makes the top `n` transformer layers of every encoder (and its final LayerNorm) trainable and freezes the
        rest, for top-down progressive unfreezing. `n=num_hidden_layers` unfreezes the embeddings too."""
        num_layers = self.config.num_hidden_layers
        if not 0 <= n <= num_layers:
            raise ValueError(f"`n` must be in [0, {num_layers}] (num_hidden_layers), got {n}.")
        for encoder in self.backbone_modules():
            encoder.embeddings.requires_grad_(n == num_layers)
            encoder.layernorm.requires_grad_(n > 0)
            for index, layer in enumerate(encoder.layers):
                layer.requires_grad_(index >= num_layers - n)

    # -- saving --------------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | PathLike, *args, **kwargs) -> None:
        # Weights in the current layout: transformers' default renames ViT's tensors back to their legacy names on
        # save, which `from_pretrained` undoes but the `Trainer` does not when it reloads the best checkpoint or
        # resumes (a raw `load_state_dict`) — every encoder weight would silently stay as it was.
        kwargs.setdefault("save_original_format", False)
        # `register_for_auto_class` records one auto class per model; Hub users load through both of these.
        if self._auto_class is not None:
            name = f"{type(self).__module__.rsplit('.', 1)[-1]}.{type(self).__name__}"
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.update({"AutoModel": name, "AutoModelForImageClassification": name})
            self.config.auto_map = auto_map
            # The FER pipeline travels too: `pipeline(model=folder, trust_remote_code=True)` builds it from the copy
            # of its file that transformers saves beside this one (a relative import of this file).
            from .pipeline_vit_fer import custom_pipelines_entry

            self.config.custom_pipelines = custom_pipelines_entry()
        super().save_pretrained(save_directory, *args, **kwargs)

    # -- forward -------------------------------------------------------------------------------------------------

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        thermal_pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        interpolate_pos_encoding: bool | None = None,
        return_dict: bool | None = None,
        encoder_features: torch.Tensor | None = None,
    ) -> FERClassifierOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            [`ViTForFER`]: images of the model's modality (`config.modality`). Fusion models: RGB images (optional
            for [`LateFusionViT`], which then predicts from thermal alone).
        thermal_pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Fusion models: thermal images registered to the RGB ones (optional for [`LateFusionViT`]). A thermal
            [`ViTForFER`] accepts its images here too, so that one batch format serves every model.
        labels (`torch.Tensor` of shape `(batch_size,)` or `(batch_size, num_labels)`, *optional*):
            As `config.problem_type` expects (see [`fer_loss`]): class indices in `[0, config.num_labels)`, class
            probabilities (soft labels), multi-hot floats, or regression targets; when given, the loss is returned.
        encoder_features (`torch.FloatTensor`, *optional*):
            The encoders' final [CLS] features as [`~ViTFERPreTrainedModel.extract_features`] returns them, given
            instead of images to train the head on cached features while the backbone is frozen.
        """
        if encoder_features is not None:
            if pixel_values is not None or thermal_pixel_values is not None:
                raise ValueError("Pass either images or `encoder_features`, not both.")
            features, present, encoder_outputs = self._check_features(encoder_features), None, {}
        else:
            features, present, encoder_outputs = self._encode(
                pixel_values, thermal_pixel_values, output_attentions, output_hidden_states, interpolate_pos_encoding
            )
        if labels is not None:  # before classifying: prediction fusion mixes the heads as the problem type needs
            infer_problem_type(self.config, labels)
        logits, fusion_outputs = self._classify(features, present)

        loss = fer_loss(logits, labels, self.config) if labels is not None else None
        output = FERClassifierOutput(loss=loss, logits=logits, **encoder_outputs, **fusion_outputs)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def extract_features(
        self,
        pixel_values: torch.Tensor | None = None,
        thermal_pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
    ) -> torch.Tensor:
        """The encoders' final [CLS] features — `(batch, hidden_size)`, or `(batch, 2, hidden_size)` [RGB, thermal]
        for [`LateFusionViT`] — which `forward(encoder_features=...)` classifies. Caching them is exact only while
        the backbone is frozen, in eval mode, and the images are not augmented differently per epoch."""
        self._check_features_cacheable()
        return self._encode(pixel_values, thermal_pixel_values, None, None, interpolate_pos_encoding)[0]

    def _check_features_cacheable(self) -> None:
        """Raises where caching the features would be inexact even with a frozen backbone."""

    # -- the original implementation's helpers --------------------------------------------------------------------

    @torch.no_grad()
    def get_features(
        self, pixel_values: torch.Tensor | None = None, thermal_pixel_values: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The original implementation's `get_features`: the encoders' final [CLS] features, without gradients —
        what the head classifies (`forward(encoder_features=...)`), shaped as
        [`~ViTFERPreTrainedModel.extract_features`] returns them."""
        return self._encode(pixel_values, thermal_pixel_values, None, None, None)[0]

    @torch.no_grad()
    def get_attention_weights(
        self,
        pixel_values: torch.Tensor | None = None,
        thermal_pixel_values: torch.Tensor | None = None,
        layer_idx: int = -1,
    ) -> torch.Tensor | tuple[torch.Tensor | None, torch.Tensor | None]:
        """The attention probabilities of layer `layer_idx` (the last by default), `(batch, heads, tokens, tokens)`,
        for attention maps. Attention weights need eager attention under transformers 5: the model switches to it for
        this call and back. [`LateFusionViT`] returns `(rgb, thermal)`, `None` for a modality not given."""
        previous = self.config._attn_implementation
        if previous != "eager":
            self.set_attn_implementation("eager")
        try:
            outputs = self(pixel_values, thermal_pixel_values, output_attentions=True)
        finally:
            if previous != "eager":
                self.set_attn_implementation(previous)
        return self._select_attentions(outputs, layer_idx)

    def _select_attentions(self, outputs: FERClassifierOutput, layer_idx: int):
        return outputs.attentions[layer_idx]

    def get_model_info(self) -> dict:
        """The original implementation's summary of the model: backbone, classes, parameter counts and encoder
        shape."""
        config = self.config
        return {
            "model_name": config.model_name,
            "num_classes": config.num_labels,
            "total_parameters": self.num_parameters(),
            "trainable_parameters": self.num_parameters(only_trainable=True),
            "freeze_backbone": not any(p.requires_grad for m in self.backbone_modules() for p in m.parameters()),
            "dropout_rate": config.classifier_dropout,
            "image_size": config.image_size,
            "patch_size": config.patch_size,
            "hidden_size": config.hidden_size,
            "num_attention_heads": config.num_attention_heads,
            "num_hidden_layers": config.num_hidden_layers,
        }

    def _check_features(self, features: torch.Tensor) -> torch.Tensor:
        expected = self._feature_shape()
        if features.ndim != len(expected) + 1 or tuple(features.shape[1:]) != expected:
            raise ValueError(
                f"`encoder_features` must have shape (batch_size, {', '.join(map(str, expected))}), "
                f"got {tuple(features.shape)}."
            )
        return features

    def _feature_shape(self) -> tuple[int, ...]:
        return (self.config.hidden_size,)

    def _run_encoder(
        self,
        encoder: ViTModel,
        pixel_values: torch.Tensor,
        output_attentions: bool | None,
        output_hidden_states: bool | None,
        interpolate_pos_encoding: bool | None,
    ):
        # Only flags the caller set are passed: the encoder's output capturing reads `config.output_attentions` and
        # `config.output_hidden_states` for the others, as in `ViTForImageClassification` (an explicit `None` would
        # override the config).
        flags = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states}
        outputs = encoder(
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **{name: value for name, value in flags.items() if value is not None},
        )
        # The in21k checkpoints are fine-tuned on the final [CLS] token, without their pooler.
        return outputs.last_hidden_state[:, 0], outputs


class ViTForFER(ViTFERPreTrainedModel):
    r"""
    ViT encoder with the FER head on its final [CLS] token, on one modality (`config.modality`).

    Build it from a config (random weights, or through `from_pretrained` of a saved vit-fer model), or the
    specification's way, which loads a pretrained ViT checkpoint into the encoder:

    ```python
    >>> model = ViTForFER(model_name="google/vit-base-patch16-224-in21k", num_classes=7,
    ...                   freeze_backbone=False, dropout_rate=0.1)
    ```
    """

    config: ViTFERConfig
    config_class = ViTFERConfig
    base_model_prefix = "vit"

    def __init__(self, config: ViTFERConfig | None = None, **arguments):
        super().__init__(config, **arguments)
        self.vit = ViTModel(self.config, add_pooling_layer=False)
        self.classifier = FERClassificationHead(self.config, self.config.hidden_size)
        self.post_init()

    def _encode(self, pixel_values, thermal_pixel_values, output_attentions, output_hidden_states, interpolate_pos_encoding):
        name = "pixel_values"
        if self.config.modality == "thermal" and pixel_values is None:
            pixel_values, name = thermal_pixel_values, "thermal_pixel_values"
        elif thermal_pixel_values is not None:
            raise ValueError(
                f"This ViTForFER reads one modality ({self.config.modality!r}) as `pixel_values`; "
                "got `thermal_pixel_values` too. Use EarlyFusionViT or LateFusionViT to combine RGB and thermal."
            )
        if pixel_values is None:
            raise ValueError(f"`pixel_values` ({self.config.modality} images) are required.")
        check_pixel_values(name, pixel_values, self.config.num_channels, check_finite=self.config.check_inputs_finite)
        features, outputs = self._run_encoder(
            self.vit, pixel_values, output_attentions, output_hidden_states, interpolate_pos_encoding
        )
        return features, None, {"hidden_states": outputs.hidden_states, "attentions": outputs.attentions}

    def _classify(self, features, present):
        return self.classifier(features), {}


class EarlyFusionViT(ViTFERPreTrainedModel):
    r"""
    RGB and thermal images combined at the input of one ViT encoder: stacked along the channels and read by a widened
    patch embedding (`fusion_type="concat"`), or summed element-wise (`fusion_type="add"`). Both modalities are
    required.

    Built from a config, or with the original implementation's keywords (see [`ViTFERPreTrainedModel`]):
    `EarlyFusionViT(model_name=..., num_classes=7, fusion_type="concat", freeze_backbone=False, dropout_rate=0.1)`.
    """

    config: EarlyFusionViTConfig
    config_class = EarlyFusionViTConfig
    base_model_prefix = "vit"

    def __init__(self, config: EarlyFusionViTConfig | None = None, **arguments):
        super().__init__(config, **arguments)
        self.vit = ViTModel(self.config, add_pooling_layer=False)
        self.classifier = FERClassificationHead(self.config, self.config.hidden_size)
        self.post_init()

    def fuse_inputs(self, pixel_values: torch.Tensor, thermal_pixel_values: torch.Tensor) -> torch.Tensor:
        """The encoder's input: the RGB and thermal batches concatenated along the channels, or summed."""
        if self.config.fusion_type == "concat":
            return torch.cat([pixel_values, thermal_pixel_values], dim=1)
        return pixel_values + thermal_pixel_values

    def _encode(self, pixel_values, thermal_pixel_values, output_attentions, output_hidden_states, interpolate_pos_encoding):
        for name, value in (("pixel_values", pixel_values), ("thermal_pixel_values", thermal_pixel_values)):
            if value is None:
                self._refuse_one_image_pipeline()
                raise ValueError(
                    f"EarlyFusionViT needs both modalities: `{name}` is missing. "
                    "Use LateFusionViT to predict from one modality when the other is absent."
                )
        check_finite = self.config.check_inputs_finite
        check_pixel_values("pixel_values", pixel_values, self.config.rgb_num_channels, check_finite=check_finite)
        check_pixel_values(
            "thermal_pixel_values",
            thermal_pixel_values,
            self.config.thermal_num_channels,
            reference=pixel_values,
            check_finite=check_finite,
        )
        features, outputs = self._run_encoder(
            self.vit,
            self.fuse_inputs(pixel_values, thermal_pixel_values),
            output_attentions,
            output_hidden_states,
            interpolate_pos_encoding,
        )
        return features, None, {"hidden_states": outputs.hidden_states, "attentions": outputs.attentions}

    def _classify(self, features, present):
        return self.classifier(features), {}


class TwoStreamFERModel(ViTFERPreTrainedModel):
    """Base class of the models with one ViT stream per modality ([`LateFusionViT`], [`MidFusionViT`]): `rgb_vit`
    and `thermal_vit` (`None` with `share_encoder=True`: `rgb_vit` reads both), either modality optional."""

    accepts_missing_modality = True

    def encoder_for(self, modality: str) -> ViTModel:
        """The encoder that reads `modality` ("rgb" or "thermal")."""
        return self.thermal_vit if modality == "thermal" and self.thermal_vit is not None else self.rgb_vit

    def _feature_shape(self) -> tuple[int, ...]:
        return (2, self.config.hidden_size)

    def _select_attentions(self, outputs: FERClassifierOutput, layer_idx: int):
        return tuple(
            None if attentions is None else attentions[layer_idx]
            for attentions in (outputs.attentions, outputs.thermal_attentions)
        )

    def _check_modalities(self, pixel_values: torch.Tensor | None, thermal_pixel_values: torch.Tensor | None) -> None:
        if pixel_values is None and thermal_pixel_values is None:
            raise ValueError(
                f"{type(self).__name__} needs `pixel_values` (RGB), `thermal_pixel_values`, or both; got neither."
            )
        if pixel_values is None or thermal_pixel_values is None:
            self._refuse_one_image_pipeline()
        check_finite = self.config.check_inputs_finite
        if pixel_values is not None:
            check_pixel_values("pixel_values", pixel_values, self.config.num_channels, check_finite=check_finite)
        if thermal_pixel_values is not None:
            check_pixel_values(
                "thermal_pixel_values",
                thermal_pixel_values,
                self.config.num_channels,
                reference=pixel_values,
                check_finite=check_finite,
            )


class LateFusionViT(TwoStreamFERModel):
    r"""
    One ViT encoder per modality (`rgb_vit`, `thermal_vit`; one shared `rgb_vit` with `share_encoder=True`), fused
    after encoding: the two [CLS] features are combined for one head (`fusion_layer="feature"`: concat, add or
    attention), or each modality has its own head and their class probabilities are averaged
    (`fusion_layer="prediction"`: mean or learned weights).

    Either modality may be missing at inference (`pixel_values=None` or `thermal_pixel_values=None`): the model then
    predicts from the one present, which `modality_dropout` trains it for.

    Built from a config, or with the original implementation's keywords (see [`ViTFERPreTrainedModel`]):
    `LateFusionViT(model_name=..., fusion_type="attention", fusion_layer="prediction", num_classes=7)`.
    """

    config: LateFusionViTConfig
    config_class = LateFusionViTConfig

    def __init__(self, config: LateFusionViTConfig | None = None, **arguments):
        super().__init__(config, **arguments)
        config = self.config
        self.rgb_vit = ViTModel(config, add_pooling_layer=False)
        self.thermal_vit = None if config.share_encoder else ViTModel(config, add_pooling_layer=False)

        self.fusion = None
        if config.fusion_layer == "feature":
            if config.fusion_type == "attention":
                self.fusion = ScoredFeatureFusion(config)
            head_size = 2 * config.hidden_size if config.fusion_type == "concat" else config.hidden_size
            self.classifier = FERClassificationHead(config, head_size)
        else:
            if config.fusion_type == "attention":
                self.fusion = LearnedLogitFusion(config)
            elif config.prediction_fusion == "weighted":
                self.fusion = WeightedPredictionFusion()
            self.rgb_classifier = FERClassificationHead(config, config.hidden_size)
            self.thermal_classifier = FERClassificationHead(config, config.hidden_size)
        self.post_init()

    def _encode(self, pixel_values, thermal_pixel_values, output_attentions, output_hidden_states, interpolate_pos_encoding):
        self._check_modalities(pixel_values, thermal_pixel_values)
        features, outputs = {}, {}
        for modality, images in (("rgb", pixel_values), ("thermal", thermal_pixel_values)):
            if images is not None:
                features[modality], outputs[modality] = self._run_encoder(
                    self.encoder_for(modality), images, output_attentions, output_hidden_states,
                    interpolate_pos_encoding,
                )
        reference = next(iter(features.values()))
        # (batch, 2, hidden) [RGB, thermal]; an absent modality contributes zeros and is marked absent.
        stacked = torch.stack([features.get(m, torch.zeros_like(reference)) for m in ("rgb", "thermal")], dim=1)
        present = torch.tensor([pixel_values is not None, thermal_pixel_values is not None], device=reference.device)
        encoder_outputs = {
            "hidden_states": outputs["rgb"].hidden_states if "rgb" in outputs else None,
            "attentions": outputs["rgb"].attentions if "rgb" in outputs else None,
            "thermal_hidden_states": outputs["thermal"].hidden_states if "thermal" in outputs else None,
            "thermal_attentions": outputs["thermal"].attentions if "thermal" in outputs else None,
        }
        return stacked, present.expand(stacked.shape[0], 2), encoder_outputs

    def _modality_dropout(self, present: torch.Tensor) -> torch.Tensor:
        """Drops one of the two modalities of a sample with probability `config.modality_dropout` (training only,
        and only where both are present)."""
        if not self.training or self.config.modality_dropout == 0.0:
            return present
        return drop_modalities(present, self.config.modality_dropout)

    def _classify(self, features, present):
        if present is None:  # cached features hold both modalities
            present = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        present = self._modality_dropout(present)
        # Dropped modalities are zeroed, not skipped: every parameter takes part in every step, as DDP requires.
        features = features * present.unsqueeze(-1).to(features.dtype)

        if self.config.fusion_layer == "feature":
            if self.config.fusion_type == "concat":
                return self.classifier(features.flatten(1)), {}
            if self.config.fusion_type == "add":
                return self.classifier(features.sum(dim=1)), {}
            pooled, weights = self.fusion(features, present)
            return self.classifier(pooled), {"modality_weights": weights}

        rgb_logits = self.rgb_classifier(features[:, 0])
        thermal_logits = self.thermal_classifier(features[:, 1])
        outputs = {"rgb_logits": rgb_logits, "thermal_logits": thermal_logits}
        if self.config.fusion_type == "attention":
            return self.fusion(rgb_logits, thermal_logits, present), outputs
        if self.config.prediction_fusion == "weighted":
            weights = self.fusion(present)
        else:
            weights = present.to(features.dtype) / present.sum(dim=1, keepdim=True)
        logits = fuse_predictions(torch.stack([rgb_logits, thermal_logits], dim=1), weights, self.config)
        if self.config.prediction_fusion == "weighted":
            outputs["modality_weights"] = weights
        return logits, outputs


_MODALITY_INDEX = {"rgb": 0, "thermal": 1}


def _per_sample(weights: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`weights` (batch,) shaped to broadcast over `like` (batch, ...)."""
    return weights.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


class MidFusionViT(TwoStreamFERModel):
    r"""
    One ViT stream per modality up to layer `config.fusion_layer`, where RGB and thermal start to interact through
    MBT bottleneck tokens, cross-attention, joint attention over both token sequences, or a position-wise sum
    (`config.fusion_type`; see [`MidFusionViTConfig`]). `fusion_layer=0` is early fusion, `fusion_layer=
    num_hidden_layers` late fusion.

    Every layer is transformers' `ViTLayer` of one of two `ViTModel`s, `rgb_vit` and `thermal_vit` (`None` with
    `share_encoder=True`), each loaded from the pretrained checkpoint by [`load_pretrained_backbone`]. The RGB stream
    runs all of `rgb_vit`. With `"bottleneck"` and `"cross_attention"` the thermal stream runs all of `thermal_vit`;
    with `"concat"` and `"add"`, whose fused layers are `rgb_vit`'s, `thermal_vit` holds only the layers below
    `fusion_layer` (and for `"add"`, which continues as one stream, no final LayerNorm; at `fusion_layer=0` the images
    themselves are summed and there is no thermal stream).

    The only new parameters are the fusion modules — `bottleneck`, `rgb_cross_attention` / `thermal_cross_attention`
    or `modality_embeddings`; `"add"` has none, and no design has any at `fusion_layer=num_hidden_layers` — and the
    head. Fine-tuning strategies treat the fusion modules as part of the head (its learning rate, never frozen).

    Either modality may be missing at inference (`pixel_values=None` or `thermal_pixel_values=None`): the model then
    runs the stream present, which `modality_dropout` trains it for, in every design.

    Outputs: `hidden_states` / `attentions` are the RGB stream's and `thermal_hidden_states` / `thermal_attentions`
    the thermal stream's (embedding output, then every layer the stream runs; attentions need
    `attn_implementation="eager"`). In a bottleneck layer a stream's attention map covers its tokens followed by the
    bottleneck tokens; in a joint (`"concat"`) layer it is the rows of the stream's queries over both sequences; the
    fused stream of `"add"` is reported as the RGB stream. Cross-attention maps are not returned.
    """

    config: MidFusionViTConfig
    config_class = MidFusionViTConfig

    def __init__(self, config: MidFusionViTConfig | None = None, **arguments):
        super().__init__(config, **arguments)
        config = self.config
        fusion_type, fusion_layer = config.fusion_type, config.fusion_layer
        num_fused_layers = config.num_hidden_layers - fusion_layer
        self.rgb_vit = ViTModel(config, add_pooling_layer=False)
        self.thermal_vit = None
        if not config.share_encoder and not (fusion_type == "add" and fusion_layer == 0):
            self.thermal_vit = ViTModel(config, add_pooling_layer=False)
            if fusion_type in ("concat", "add"):
                # The fused layers are the RGB stream's: thermal layers above the fusion layer would never run.
                self.thermal_vit.layers = self.thermal_vit.layers[:fusion_layer]
            if fusion_type == "add":
                self.thermal_vit.layernorm = nn.Identity()

        self.bottleneck = FusionBottleneck(config) if fusion_type == "bottleneck" and num_fused_layers else None
        self.modality_embeddings = (
            ModalityEmbeddings(config) if fusion_type == "concat" and num_fused_layers else None
        )
        self.rgb_cross_attention = self.thermal_cross_attention = None
        if fusion_type == "cross_attention" and num_fused_layers:
            self.rgb_cross_attention = nn.ModuleList(CrossModalBlock(config) for _ in range(num_fused_layers))
            self.thermal_cross_attention = nn.ModuleList(CrossModalBlock(config) for _ in range(num_fused_layers))
            # A residual block like ViTLayer: kept whole by device_map="auto", and an FSDP wrapping unit.
            self._no_split_modules = [*self._no_split_modules, "CrossModalBlock"]
        head_size = 2 * config.hidden_size if fusion_type == "concat" else config.hidden_size
        self.classifier = FERClassificationHead(config, head_size)
        self.post_init()

    def _feature_shape(self) -> tuple[int, ...]:
        return (self.config.hidden_size,) if self.config.fusion_type == "add" else (2, self.config.hidden_size)

    def _check_features_cacheable(self) -> None:
        # Only the designs without fusion parameters (`fusion_type="add"`, or any design at
        # `fusion_layer=num_hidden_layers`): elsewhere the fusion parameters, which train with the head, lie below the
        # features, so caching the features would freeze them.
        fusion_modules = [
            name for name in ("bottleneck", "modality_embeddings", "rgb_cross_attention") if getattr(self, name) is not None
        ]
        if fusion_modules:
            raise ValueError(
                f"Cached encoder features do not apply to MidFusionViT with fusion_type={self.config.fusion_type!r} "
                f"at fusion_layer={self.config.fusion_layer} < num_hidden_layers: its trainable fusion parameters "
                f"({', '.join(fusion_modules)}) lie below the features. Train on images, or use fusion_type='add' or "
                "fusion_layer=num_hidden_layers."
            )

    # -- forward -------------------------------------------------------------------------------------------------

    def _encode(self, pixel_values, thermal_pixel_values, output_attentions, output_hidden_states, interpolate_pos_encoding):
        self._check_modalities(pixel_values, thermal_pixel_values)
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        images = {m: x for m, x in (("rgb", pixel_values), ("thermal", thermal_pixel_values)) if x is not None}
        reference = next(iter(images.values()))
        batch_size = reference.shape[0]
        # (batch, 2) bool [RGB, thermal] after modality dropout; None while every sample has every modality given.
        present = None
        if len(images) == 2 and self.training and config.modality_dropout > 0.0:
            present = drop_modalities(
                torch.ones(batch_size, 2, dtype=torch.bool, device=reference.device), config.modality_dropout
            )

        records = {
            m: {"hidden_states": [] if output_hidden_states else None, "attentions": [] if output_attentions else None}
            for m in _MODALITY_INDEX
        }

        def record(modality: str, key: str, value: torch.Tensor | None) -> None:
            if records[modality][key] is not None:
                records[modality][key].append(value)

        if config.fusion_type == "add" and config.fusion_layer == 0:
            # Summing before the (linear) patch embedding counts the [CLS] token and positions once: EarlyFusionViT.
            streams = {"rgb": self._embed("rgb", self._sum_modalities(images, present), interpolate_pos_encoding)}
        else:
            streams = {m: self._embed(m, x, interpolate_pos_encoding) for m, x in images.items()}
        for modality, hidden_states in streams.items():
            record(modality, "hidden_states", hidden_states)
        for depth in range(config.fusion_layer):
            for modality in streams:
                layer = self.encoder_for(modality).layers[depth]
                streams[modality], attentions = self._run_layer(layer, streams[modality], None, output_attentions)
                record(modality, "attentions", attentions)
                record(modality, "hidden_states", streams[modality])

        fuse = getattr(self, f"_fuse_{config.fusion_type}")
        streams = fuse(streams, present, record, output_attentions)

        if config.fusion_type == "add":
            features, present = self.rgb_vit.layernorm(streams["rgb"][:, 0]), None
        else:
            # The final LayerNorm is per token: applying it to the [CLS] token alone gives the same feature.
            cls = {m: self.encoder_for(m).layernorm(hidden_states[:, 0]) for m, hidden_states in streams.items()}
            reference_cls = next(iter(cls.values()))
            features = torch.stack([cls.get(m, torch.zeros_like(reference_cls)) for m in _MODALITY_INDEX], dim=1)
            if present is None:
                given = torch.tensor([m in images for m in _MODALITY_INDEX], device=features.device)
                present = given.expand(batch_size, 2)
        encoder_outputs = {}
        for modality, prefix in (("rgb", ""), ("thermal", "thermal_")):
            for key, values in records[modality].items():
                encoder_outputs[prefix + key] = tuple(values) if values else None
        return features, present, encoder_outputs

    def _embed(self, modality: str, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None) -> torch.Tensor:
        embeddings = self.encoder_for(modality).embeddings
        pixel_values = pixel_values.to(embeddings.patch_embeddings.projection.weight.dtype)
        return embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)

    @staticmethod
    def _run_layer(layer, hidden_states, attention_mask, output_attentions):
        """Runs transformers' `ViTLayer`, capturing its attention map when asked (the layer itself drops it)."""
        if not output_attentions:
            return layer(hidden_states, attention_mask), None
        captured = []
        handle = layer.attention.register_forward_hook(lambda module, args, output: captured.append(output[1]))
        try:
            hidden_states = layer(hidden_states, attention_mask)
        finally:
            handle.remove()
        if captured[0] is None:
            raise ValueError(
                "`output_attentions=True` needs attn_implementation='eager'; this model uses "
                f"{layer.attention.config._attn_implementation!r}, which returns no attention weights."
            )
        return hidden_states, captured[0]

    @staticmethod
    def _sum_modalities(values: dict[str, torch.Tensor], present: torch.Tensor | None) -> torch.Tensor:
        """The sum over the modalities of `values`, without those a sample lost to modality dropout."""
        if present is None:
            return sum(values.values())
        return sum(value * _per_sample(present[:, _MODALITY_INDEX[m]], value) for m, value in values.items())

    @staticmethod
    def _mean_modalities(values: dict[str, torch.Tensor], present: torch.Tensor | None) -> torch.Tensor:
        """The mean over the modalities each sample has."""
        if present is None:
            return sum(values.values()) / len(values)
        summed = MidFusionViT._sum_modalities(values, present)
        return summed / _per_sample(present.sum(dim=1), summed)

    def _fuse_bottleneck(self, streams, present, record, output_attentions):
        layers = range(self.config.fusion_layer, self.config.num_hidden_layers)
        tokens = self.bottleneck(next(iter(streams.values())).shape[0]) if self.bottleneck is not None else None
        for depth in layers:
            updated = {}
            for modality, hidden_states in streams.items():
                length = hidden_states.shape[1]
                layer = self.encoder_for(modality).layers[depth]
                joint, attentions = self._run_layer(layer, torch.cat([hidden_states, tokens], dim=1), None, output_attentions)
                streams[modality], updated[modality] = joint[:, :length], joint[:, length:]
                record(modality, "attentions", attentions)
                record(modality, "hidden_states", streams[modality])
            # A sample's bottleneck keeps only what its present modalities wrote.
            tokens = self._mean_modalities(updated, present)
        return streams

    def _fuse_cross_attention(self, streams, present, record, output_attentions):
        for index, depth in enumerate(range(self.config.fusion_layer, self.config.num_hidden_layers)):
            for modality in streams:
                layer = self.encoder_for(modality).layers[depth]
                streams[modality], attentions = self._run_layer(layer, streams[modality], None, output_attentions)
                record(modality, "attentions", attentions)
            if len(streams) == 2:
                rgb, thermal = streams["rgb"], streams["thermal"]
                rgb_present, thermal_present = (None, None) if present is None else (present[:, 0], present[:, 1])
                streams["rgb"] = self.rgb_cross_attention[index](rgb, thermal, thermal_present)
                streams["thermal"] = self.thermal_cross_attention[index](thermal, rgb, rgb_present)
            for modality in streams:
                record(modality, "hidden_states", streams[modality])
        return streams

    def _fuse_concat(self, streams, present, record, output_attentions):
        if self.modality_embeddings is None:  # fusion_layer = num_hidden_layers: nothing to fuse
            return streams
        modalities = list(streams)
        parts = [self.modality_embeddings(streams[m], _MODALITY_INDEX[m]) for m in modalities]
        lengths = [part.shape[1] for part in parts]
        joint = torch.cat(parts, dim=1)
        attention_mask = None
        if present is not None:  # no sample attends to the tokens of a modality it lost to modality dropout
            token_mask = torch.cat(
                [present[:, _MODALITY_INDEX[m], None].expand(-1, n) for m, n in zip(modalities, lengths)], dim=1
            )
            attention_mask = create_bidirectional_mask(config=self.config, inputs_embeds=joint, attention_mask=token_mask)
        for depth in range(self.config.fusion_layer, self.config.num_hidden_layers):
            joint, attentions = self._run_layer(self.rgb_vit.layers[depth], joint, attention_mask, output_attentions)
            start = 0
            for modality, length in zip(modalities, lengths):
                record(modality, "hidden_states", joint[:, start : start + length])
                record(modality, "attentions", None if attentions is None else attentions[:, :, start : start + length])
                start += length
        return dict(zip(modalities, joint.split(lengths, dim=1)))

    def _fuse_add(self, streams, present, record, output_attentions):
        fused = self._sum_modalities(streams, present)
        for depth in range(self.config.fusion_layer, self.config.num_hidden_layers):
            fused, attentions = self._run_layer(self.rgb_vit.layers[depth], fused, None, output_attentions)
            record("rgb", "attentions", attentions)
            record("rgb", "hidden_states", fused)
        return {"rgb": fused}

    def _classify(self, features, present):
        if self.config.fusion_type == "add":
            return self.classifier(features), {}
        if present is None:  # cached features hold both modalities
            present = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        weights = present.to(features.dtype).unsqueeze(-1)
        if self.config.fusion_type == "concat":
            # A missing or dropped modality's half of the head's input is zero, as in LateFusionViT.
            return self.classifier((features * weights).flatten(1)), {}
        return self.classifier((features * weights).sum(dim=1) / weights.sum(dim=1)), {}


# -- pretrained backbones --------------------------------------------------------------------------------------------

_BACKBONE_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "initializer_range",
    "layer_norm_eps",
    "image_size",
    "patch_size",
    "qkv_bias",
)


def backbone_config(config_class: type[_FERConfigBase], model_name: str | PathLike, **kwargs) -> _FERConfigBase:
    """A `config_class` whose encoder hyper-parameters are those of the ViT checkpoint `model_name` (a Hub id or a
    local folder); `kwargs` set the remaining fields."""
    from transformers import AutoConfig

    source = AutoConfig.from_pretrained(model_name)
    missing = [field for field in _BACKBONE_FIELDS if not hasattr(source, field)]
    if missing:
        raise ValueError(
            f"`model_name` must name a ViT checkpoint; {model_name!r} has a {type(source).__name__} without "
            f"{', '.join(missing)}."
        )
    backbone = {field: getattr(source, field) for field in _BACKBONE_FIELDS if field not in kwargs}
    config = config_class(**backbone, **{"model_name": str(model_name), **kwargs})
    # Where the weights come from, as after `from_pretrained` (the Trainer and the model card read it).
    config._name_or_path = str(model_name)
    return config


def widen_patch_embedding(weight: torch.Tensor, rgb_num_channels: int, thermal_num_channels: int) -> torch.Tensor:
    """Widens a pretrained RGB patch-embedding kernel `(hidden, c, p, p)` to RGB + thermal input channels.

    The RGB part is the pretrained kernel, and each thermal channel gets the pretrained kernel summed over its input
    channels divided by `thermal_num_channels` (with 3 thermal channels that is the pretrained kernel itself); both
    halves are then halved. So at initialisation the fused encoder reading an image as RGB and the same image as
    thermal sees exactly what the pretrained encoder sees for the RGB image alone.
    """
    if weight.shape[1] != rgb_num_channels:
        raise ValueError(
            f"The pretrained patch embedding has {weight.shape[1]} input channels; "
            f"`rgb_num_channels` is {rgb_num_channels}."
        )
    if thermal_num_channels == rgb_num_channels:
        thermal = weight
    else:
        thermal = weight.sum(dim=1, keepdim=True).div(thermal_num_channels).expand(-1, thermal_num_channels, -1, -1)
    return 0.5 * torch.cat([weight, thermal], dim=1)


def resize_position_embeddings(position_embeddings: torch.Tensor, grid_size: int) -> torch.Tensor:
    """ViT position embeddings `(1, 1 + n * n, hidden)` resampled to a `grid_size × grid_size` patch grid: bicubic
    on the grid of patch positions, the [CLS] position kept — the resampling of ViT's `interpolate_pos_encoding`,
    done once so that the model runs at the new resolution without it."""
    class_position, patch_positions = position_embeddings[:, :1], position_embeddings[:, 1:]
    old_size = int(round(patch_positions.shape[1] ** 0.5))
    if old_size * old_size != patch_positions.shape[1]:
        raise ValueError(f"The position embeddings {tuple(position_embeddings.shape)} are not on a square patch grid.")
    if old_size == grid_size:
        return position_embeddings
    dim = patch_positions.shape[-1]
    grid = patch_positions.reshape(1, old_size, old_size, dim).permute(0, 3, 1, 2)
    grid = nn.functional.interpolate(grid, size=(grid_size, grid_size), mode="bicubic", align_corners=False)
    return torch.cat([class_position, grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


def _fit_resolution(state: dict[str, torch.Tensor], model: ViTFERPreTrainedModel, model_name) -> None:
    """Resamples the checkpoint's position embeddings in `state` to the model's patch grid, where they differ."""
    grid_size = model.config.image_size // model.config.patch_size
    for key in [key for key in state if key.endswith("embeddings.position_embeddings")]:
        if state[key].shape[1] != 1 + grid_size * grid_size:
            old_size = int(round((state[key].shape[1] - 1) ** 0.5))
            logger.info(
                f"{str(model_name)!r}: position embeddings resampled from a {old_size}×{old_size} to a "
                f"{grid_size}×{grid_size} patch grid (image_size {model.config.image_size})."
            )
            state[key] = resize_position_embeddings(state[key], grid_size)


def _fer_model_class(model_type: str | None) -> type["ViTFERPreTrainedModel"] | None:
    """The vit-fer model class saved under `model_type`, or `None` for any other checkpoint."""
    pending, classes = [ViTFERPreTrainedModel], {}
    while pending:
        for subclass in pending.pop().__subclasses__():
            # Shared base classes (TwoStreamFERModel) have the base config, whose model type is ViT's.
            if subclass.config_class.model_type != _FERConfigBase.model_type:
                classes.setdefault(subclass.config_class.model_type, subclass)
            pending.append(subclass)
    return classes.get(model_type)


OUTPUT_LAYER_SUFFIXES = ("out_proj.weight", "out_proj.bias")


def _load_fer_checkpoint(model, model_name, source_class, **from_pretrained_kwargs) -> None:
    """Continues from a saved vit-fer model of the same architecture: every weight is taken over (position
    embeddings resampled to the model's resolution), except the heads' output layers when the labels differ."""
    if source_class is not type(model):
        raise ValueError(
            f"{str(model_name)!r} is a saved {source_class.__name__}; this model is a {type(model).__name__}. "
            "Build the checkpoint's architecture to continue its training (train.py and "
            "`vit_fer.factory.checkpoint_architecture` read it from the checkpoint)."
        )
    source = source_class.from_pretrained(model_name, **from_pretrained_kwargs)
    state = source.state_dict()
    _fit_resolution(state, model, model_name)
    config, source_config = model.config, source.config
    same_task = (
        source_config.num_labels == config.num_labels
        and dict(source_config.id2label) == dict(config.id2label)
        # An unset problem type is inferred from the first labels: it differs from nothing yet.
        and (None in (source_config.problem_type, config.problem_type)
             or source_config.problem_type == config.problem_type)
    )
    if not same_task:
        new = sorted(key for key in state if key.endswith(OUTPUT_LAYER_SUFFIXES))
        for key in new:
            del state[key]
        logger.warning(
            f"{str(model_name)!r} was trained for {source_config.problem_type or 'classification'} with labels "
            f"{list(source_config.id2label.values())}; this model has {config.problem_type or 'classification'} with "
            f"labels {list(config.id2label.values())}: new output layer(s) {new}, everything else from the checkpoint."
        )
    own = model.state_dict()
    mismatched = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}"
        for key, value in state.items()
        if key in own and value.shape != own[key].shape
    ]
    missing = sorted(set(own) - set(state) - {key for key in own if key.endswith(OUTPUT_LAYER_SUFFIXES)})
    unexpected = sorted(set(state) - set(own))
    if mismatched or missing or unexpected:
        raise ValueError(
            f"The saved {source_class.__name__} {str(model_name)!r} does not fit this model (another fusion design or "
            f"head size): shapes {mismatched}, missing {missing}, unexpected {unexpected}."
        )
    model.load_state_dict(state, strict=False)


@torch.no_grad()
def load_pretrained_backbone(model: ViTFERPreTrainedModel, model_name: str | PathLike, **from_pretrained_kwargs) -> None:
    """Loads the checkpoint `model_name` into `model`: a ViT checkpoint (a Hub id such as
    google/vit-base-patch16-224-in21k, or a local folder holding a `ViTModel` or `ViTForImageClassification`
    checkpoint) into every encoder, or a saved vit-fer model of the same architecture into the whole model.

    This is the one place where pretrained weights are adapted:
    - a ViT checkpoint is read by transformers' own `ViTModel.from_pretrained`, so old checkpoints are converted to
      the current layout exactly as for transformers' ViT (the in21k pooler is not used); an early-fusion concat
      encoder gets its patch embedding widened by [`widen_patch_embedding`]; late fusion loads it into both
      encoders; mid fusion into both streams (a thermal stream that ends at the fusion layer, `"concat"` or
      `"add"`, gets the checkpoint's embeddings and layers below `fusion_layer`); the head and fusion modules keep
      their fresh initialisation;
    - a saved vit-fer model (to continue its fine-tuning) gives every weight, its 6-channel patch embedding or
      its two late-fusion encoders included; when the model's labels or problem type differ from the checkpoint's,
      the heads' output layers are new (logged);
    - position embeddings of another resolution are resampled once to the model's `image_size` by
      [`resize_position_embeddings`] (bicubic on the patch grid, [CLS] kept).
    Missing or mis-shaped weights raise.
    """
    from transformers import PreTrainedConfig

    config_dict, _ = PreTrainedConfig.get_config_dict(model_name, **from_pretrained_kwargs)
    source_class = _fer_model_class(config_dict.get("model_type"))
    if source_class is not None:
        _load_fer_checkpoint(model, model_name, source_class, **from_pretrained_kwargs)
        return
    # The load report would flag the in21k pooler (or a classification checkpoint's head), which fine-tuning does
    # not use; real problems are raised below.
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        pretrained, loading_info = ViTModel.from_pretrained(
            model_name, add_pooling_layer=False, output_loading_info=True, **from_pretrained_kwargs
        )
    finally:
        logging.set_verbosity(verbosity)
    if loading_info["missing_keys"]:
        raise ValueError(
            f"The checkpoint {str(model_name)!r} lacks encoder weights {sorted(loading_info['missing_keys'])}; "
            "they would be left randomly initialised."
        )
    unexpected = sorted(key for key in loading_info["unexpected_keys"] if not key.startswith(("pooler.", "classifier.")))
    if unexpected:
        logger.warning(f"Weights of {str(model_name)!r} not used by the encoder: {unexpected}")
    state = pretrained.state_dict()
    _fit_resolution(state, model, model_name)
    config = model.config
    patch_key = "embeddings.patch_embeddings.projection.weight"
    if isinstance(config, EarlyFusionViTConfig) and config.fusion_type == "concat":
        state[patch_key] = widen_patch_embedding(state[patch_key], config.rgb_num_channels, config.thermal_num_channels)
    for encoder in model.backbone_modules():
        # A mid-fusion stream that ends at its fusion layer holds only the checkpoint's first layers.
        encoder_state = encoder.state_dict()
        mismatched = [
            f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(value.shape)}"
            if key in state
            else f"{key}: not in the checkpoint"
            for key, value in encoder_state.items()
            if key not in state or state[key].shape != value.shape
        ]
        if mismatched:
            raise ValueError(
                f"The ViT checkpoint {str(model_name)!r} does not fit this model's encoder: " + "; ".join(mismatched)
            )
        encoder.load_state_dict({key: state[key] for key in encoder_state}, strict=True)


__all__ = [
    "EarlyFusionViT",
    "FERClassifierOutput",
    "LateFusionViT",
    "MidFusionViT",
    "ViTFERPreTrainedModel",
    "ViTForFER",
    "backbone_config",
    "fer_loss",
    "load_pretrained_backbone",
    "resize_position_embeddings",
    "widen_patch_embedding",
]
