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
"""AdamW with per-unit parameter groups (backbone vs head learning rates, optional layer-wise decay) and a cosine
schedule with warmup.

A *unit* is the granularity of learning rates and of progressive unfreezing: `"embeddings"`, `"layers.{i}"` (layer
`i` of every encoder), `"layernorm"` (the encoders' final norm) and `"head"` (every parameter outside the encoders —
classifiers and fusion modules — and the LoRA adapter matrices inside them: new parameters, trained like the head).
"""

import re

from torch import nn
from torch.optim import SGD, AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_cosine_schedule_with_warmup


HEAD_UNIT = "head"
# ViT's learned tokens and position table are not weights to shrink towards zero (as in the original ViT/BEiT).
_NO_DECAY_NAMES = frozenset({"cls_token", "mask_token", "position_embeddings"})
_LAYER_PATTERN = re.compile(r"layers\.(\d+)\.")
# peft's names of LoRA's adapter parameters inside an adapted layer (`lora_A`, `lora_B`, `lora_magnitude_vector`, ...).
_ADAPTER_PATTERN = re.compile(r"\.lora_")
OPTIMIZER_TYPES = ("adamw", "sgd")


def parameter_units(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Splits the parameters of a vit-fer model into units, from the bottom of the encoders to the head.

    Args:
        model: a model with `backbone_modules()` returning its distinct `ViTModel` encoders.

    Returns:
        `{"embeddings": [...], "layers.0": [...], ..., "layers.{L-1}": [...], "layernorm": [...], "head": [...]}`,
        each a list of `(name in model, parameter)`. A unit gathers that part of every encoder (late fusion has two).
    """
    if not callable(getattr(model, "backbone_modules", None)):
        raise TypeError(f"`model` must provide `backbone_modules()` (a vit-fer model), got {type(model).__name__}.")
    encoders = model.backbone_modules()
    # Layer `i` is at the same depth in every encoder; a mid-fusion stream that ends at its fusion layer has only the
    # first layers.
    num_layers = max(len(encoder.layers) for encoder in encoders)

    model_names = {id(parameter): name for name, parameter in model.named_parameters()}
    units = {"embeddings": [], **{f"layers.{i}": [] for i in range(num_layers)}, "layernorm": []}
    in_encoders = set()
    for encoder in encoders:
        for local_name, parameter in encoder.named_parameters():
            if _ADAPTER_PATTERN.search(local_name):
                continue  # in the head's unit
            layer = _LAYER_PATTERN.match(local_name)
            if layer:
                unit = f"layers.{layer.group(1)}"
            elif local_name.startswith(("embeddings.", "layernorm.")):
                unit = local_name.split(".", 1)[0]
            else:
                raise ValueError(
                    f"Encoder parameter {model_names[id(parameter)]!r} is in no unit: expected embeddings, layers "
                    "and the final layernorm only (build encoders with `add_pooling_layer=False`)."
                )
            units[unit].append((model_names[id(parameter)], parameter))
            in_encoders.add(id(parameter))
    units[HEAD_UNIT] = [(name, p) for name, p in model.named_parameters() if id(p) not in in_encoders]
    return units


def count_layers(units: dict[str, list[tuple[str, nn.Parameter]]]) -> int:
    """The number of encoder layers `L` among the units returned by [`parameter_units`]."""
    return sum(unit.startswith("layers.") for unit in units)


def _uses_weight_decay(name: str, parameter: nn.Parameter) -> bool:
    """Biases, norm weights and ViT's tokens / position embeddings are exempt from weight decay."""
    return parameter.ndim > 1 and name.rsplit(".", 1)[-1] not in _NO_DECAY_NAMES


def get_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float = 0.01,
    backbone_lr_multiplier: float = 0.1,
    layer_lr_decay: float = 1.0,
) -> list[dict]:
    """Optimizer parameter groups for a vit-fer model: one or two per unit (with / without weight decay).

    The head (LoRA adapters included) trains at `learning_rate`, the encoders at `learning_rate *
    backbone_lr_multiplier`, scaled by layer-wise decay: with `L` layers, the final layernorm keeps the backbone rate,
    layer `i` gets `layer_lr_decay ** (L - i)` of it and the embeddings `layer_lr_decay ** (L + 1)`. Every parameter
    is included, trainable or not, so that unfreezing later trains it. The head's groups come first (the Trainer
    logs the first group's rate).

    Each group carries its `"unit"` name beside torch's `params`, `lr` and `weight_decay`.
    """
    if learning_rate <= 0:
        raise ValueError(f"`learning_rate` must be > 0, got {learning_rate}.")
    if weight_decay < 0:
        raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay}.")
    if backbone_lr_multiplier <= 0:
        raise ValueError(
            f"`backbone_lr_multiplier` must be > 0, got {backbone_lr_multiplier} (freeze the backbone instead)."
        )
    if not 0 < layer_lr_decay <= 1:
        raise ValueError(f"`layer_lr_decay` must be in (0, 1], got {layer_lr_decay}.")

    units = parameter_units(model)
    num_layers = count_layers(units)
    backbone_lr = learning_rate * backbone_lr_multiplier
    # Units bottom-up: embeddings, layers.0 .. layers.{L-1}, layernorm — their distance from the top sets the decay.
    unit_lrs = {unit: backbone_lr * layer_lr_decay ** (num_layers + 1 - depth) for depth, unit in enumerate(units)}
    unit_lrs[HEAD_UNIT] = learning_rate

    groups = []
    for unit in [HEAD_UNIT, *reversed([unit for unit in units if unit != HEAD_UNIT])]:
        for decays in (True, False):
            params = [p for name, p in units[unit] if _uses_weight_decay(name, p) == decays]
            if params:
                group_decay = weight_decay if decays else 0.0
                groups.append({"params": params, "lr": unit_lrs[unit], "weight_decay": group_decay, "unit": unit})
    return groups


def get_optimizer_and_scheduler(
    model: nn.Module,
    learning_rate: float = 5e-5,
    weight_decay: float = 0.01,
    warmup_steps: int = 1000,
    num_training_steps: int = 10000,
    optimizer_type: str = "adamw",
    backbone_lr_multiplier: float = 0.1,
    layer_lr_decay: float = 1.0,
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_epsilon: float = 1e-8,
) -> tuple[Optimizer, LambdaLR]:
    """AdamW (or SGD) over [`get_parameter_groups`] and transformers' cosine schedule with linear warmup.

    The first six arguments are the original implementation's, in its order, so positional calls written against it
    mean the same here.

    Pass the pair to `Trainer(optimizers=(optimizer, scheduler))`; the Trainer steps the scheduler once per
    optimizer step, so `warmup_steps` and `num_training_steps` count optimizer steps.

    Args:
        model: a vit-fer model (see [`parameter_units`]).
        learning_rate: peak learning rate of the head.
        weight_decay: weight decay of weight matrices (not of biases, norms, tokens, position embeddings); decoupled
            for AdamW, L2 for SGD.
        warmup_steps: steps of linear warmup from 0 to the peak rates.
        num_training_steps: total optimizer steps; the rates reach 0 at the end of the cosine.
        optimizer_type: `"adamw"`, or `"sgd"` (Nesterov momentum 0.9, as in the original implementation).
        backbone_lr_multiplier: the encoders' peak rate as a fraction of `learning_rate`.
        layer_lr_decay: layer-wise learning-rate decay of the encoders; 1.0 disables it.
        adam_betas: AdamW's `betas`.
        adam_epsilon: AdamW's `eps`.

    Returns:
        `(optimizer, scheduler)`.
    """
    if num_training_steps <= 0:
        raise ValueError(f"`num_training_steps` must be > 0, got {num_training_steps}.")
    if not 0 <= warmup_steps <= num_training_steps:
        raise ValueError(
            f"`warmup_steps` must be in [0, num_training_steps={num_training_steps}], got {warmup_steps}."
        )
    if not isinstance(optimizer_type, str) or optimizer_type.lower() not in OPTIMIZER_TYPES:
        raise ValueError(f"`optimizer_type` must be one of {OPTIMIZER_TYPES}, got {optimizer_type!r}.")
    groups = get_parameter_groups(model, learning_rate, weight_decay, backbone_lr_multiplier, layer_lr_decay)
    if optimizer_type.lower() == "adamw":
        optimizer = AdamW(groups, lr=learning_rate, betas=adam_betas, eps=adam_epsilon)
    else:
        optimizer = SGD(groups, lr=learning_rate, momentum=0.9, nesterov=True)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup_steps, num_training_steps)
    return optimizer, scheduler
