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
"""Progressive unfreezing of the encoders during `Trainer` training: head first, then the backbone top-down."""

import logging
from functools import partial

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .optimization import HEAD_UNIT, count_layers, parameter_units


STRATEGIES = ("gradient_gate", "requires_grad")

logger = logging.getLogger(__name__)


class ProgressiveUnfreezingCallback(TrainerCallback):
    """Trains the head alone for `head_only_epochs` epochs, then releases the encoders: all at once, or the top
    `layers_per_stage` layers (with the final layernorm) every `epochs_per_stage` epochs, down to the embeddings,
    which are released with the last layer — the schedule of [`ViTFERPreTrainedModel.unfreeze_last_n_layers`].

    Two ways to hold a part of the model frozen:

    - `strategy="gradient_gate"` (default, safe under DistributedDataParallel): every parameter keeps
      `requires_grad=True`, so DDP synchronises all of them and the Trainer's optimizer holds all of them. The
      gradients of frozen units are zeroed as backward produces them (before DDP's all-reduce and gradient clipping,
      so the norm clipped and logged is that of the trained part) and removed before the optimizer step: torch's
      optimizers skip a parameter whose `.grad` is `None`, so it gets no update, no weight decay and no moment
      estimates until its release. The backward pass still runs through frozen layers.
    - `strategy="requires_grad"` (single process only): flips `requires_grad` with
      `model.unfreeze_last_n_layers(n)`, which also saves the backward pass through frozen layers. The optimizer
      must hold every parameter from the start ([`get_optimizer_and_scheduler`] does; the Trainer's own does not).

    The stage is recomputed from `state.epoch` at every epoch start, so resuming from a checkpoint resumes it.

    Args:
        head_only_epochs: epochs during which only the head trains.
        layers_per_stage: layers released per stage, top-down; `None` releases the whole backbone at once.
        epochs_per_stage: epochs between two releases.
        strategy: `"gradient_gate"` or `"requires_grad"`.
    """

    def __init__(
        self,
        head_only_epochs: int = 1,
        layers_per_stage: int | None = None,
        epochs_per_stage: int = 1,
        strategy: str = "gradient_gate",
    ):
        if head_only_epochs < 0:
            raise ValueError(f"`head_only_epochs` must be >= 0, got {head_only_epochs}.")
        if layers_per_stage is not None and layers_per_stage < 1:
            raise ValueError(f"`layers_per_stage` must be >= 1 or None (all at once), got {layers_per_stage}.")
        if epochs_per_stage < 1:
            raise ValueError(f"`epochs_per_stage` must be >= 1, got {epochs_per_stage}.")
        if strategy not in STRATEGIES:
            raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {strategy!r}.")
        self.head_only_epochs = head_only_epochs
        self.layers_per_stage = layers_per_stage
        self.epochs_per_stage = epochs_per_stage
        self.strategy = strategy
        self.frozen_units: frozenset[str] = frozenset()
        self._units: dict[str, list[tuple[str, nn.Parameter]]] = {}
        self._hook_handles: list[torch.utils.hooks.RemovableHandle] = []
        self._released: int | None = None
        self.stages: list[tuple[int, str]] = []
        """(0-based epoch, what trains from then on) at each change during training: for logs and plots."""

    def num_unfrozen_layers(self, epoch: int, num_layers: int) -> int:
        """How many top encoder layers train during (0-based) `epoch`; `num_layers` means the whole backbone."""
        if epoch < self.head_only_epochs:
            return 0
        if self.layers_per_stage is None:
            return num_layers
        stage = 1 + (epoch - self.head_only_epochs) // self.epochs_per_stage
        return min(num_layers, stage * self.layers_per_stage)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: nn.Module, **kwargs
    ):
        self._units = parameter_units(model)
        self._released = None
        self.stages = []
        if self.strategy == "requires_grad":
            if args.world_size > 1:
                raise ValueError(
                    f"strategy='requires_grad' is single-process only (world_size={args.world_size}): DDP never "
                    "synchronises a parameter frozen when it wrapped the model, and one frozen later breaks "
                    "find_unused_parameters=False (the Trainer's choice with activation checkpointing). Use "
                    "strategy='gradient_gate'."
                )
            optimized = {id(p) for group in kwargs["optimizer"].param_groups for p in group["params"]}
            missing = [name for name, p in model.named_parameters() if id(p) not in optimized]
            if missing:
                raise ValueError(
                    f"strategy='requires_grad' needs every parameter in the optimizer, which lacks {missing[:5]} "
                    f"({len(missing)} in all); build it with `get_optimizer_and_scheduler`."
                )
            return
        frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
        if frozen:
            raise ValueError(
                f"strategy='gradient_gate' needs every parameter to require grad when training starts (DDP and the "
                f"Trainer's optimizer ignore the others), but {frozen[:5]} ({len(frozen)} in all) do not: call "
                "`model.unfreeze_backbone()` before building the Trainer; the callback holds frozen units itself."
            )
        for unit, parameters in self._units.items():
            for _, parameter in parameters:
                self._hook_handles.append(parameter.register_hook(partial(self._gate_gradient, unit)))

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: nn.Module, **kwargs
    ):
        num_layers = count_layers(self._units)
        released = self.num_unfrozen_layers(int(state.epoch), num_layers)
        if self.strategy == "requires_grad":
            model.unfreeze_last_n_layers(released)
        trainable = {HEAD_UNIT, *(f"layers.{i}" for i in range(num_layers - released, num_layers))}
        if released > 0:
            trainable.add("layernorm")
        if released == num_layers:
            trainable.add("embeddings")
        self.frozen_units = frozenset(self._units) - trainable
        if released != self._released:
            stage = (
                "head only, encoders frozen" if released == 0
                else "head and the whole encoder" if released == num_layers
                else f"head and the top {released} of {num_layers} encoder layers"
            )  # fmt: skip
            self.stages.append((int(state.epoch), stage))
            if state.is_world_process_zero:
                logger.info("Epoch %d: training the %s.", int(state.epoch) + 1, stage)
        self._released = released

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.strategy == "gradient_gate":
            for unit in self.frozen_units:
                for _, parameter in self._units[unit]:
                    parameter.grad = None

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles.clear()

    def _gate_gradient(self, unit: str, grad: torch.Tensor) -> torch.Tensor | None:
        return torch.zeros_like(grad) if unit in self.frozen_units else None
