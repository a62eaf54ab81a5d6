"""LoRA fine-tuning (`--strategy lora`) through `peft`: low-rank adapters on the encoders' linear projections (by
default the attention query and value projections of every encoder), the head and fusion modules trained fully,
every other encoder weight frozen; at the end the adapters are merged into the weights, so the saved model is a
plain vit-fer folder that loads without peft.

    peft_model = apply_lora(model, r=8, alpha=16, dropout=0.1)   # `model` is adapted in place, its class unchanged
    ...train `model`...
    save_adapter(peft_model, output_dir / "adapter")             # peft's adapter_config.json + its safetensors
    model = merge_lora(peft_model)                                # the same object, adapters folded into its weights

The Trainer trains `model` itself, not the `PeftModel`: its checkpoints are then the whole model's state (adapters
included), which resuming and reloading the best checkpoint load as for any strategy. The head and fusion modules are
peft's `modules_to_save`, so the adapter folder carries them and `PeftModel.from_pretrained(start, folder)`
rebuilds the fine-tuned model from the model the run started from (the same `--model_name_or_path` and design).
"""

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

from torch import nn


logger = logging.getLogger(__name__)

DEFAULT_TARGET_MODULES = ("q_proj", "v_proj")
"""The attention query and value projections of transformers' ViT layers (`layers.N.attention.q_proj` / `v_proj`;
transformers 4 named them `attention.attention.query` / `value`)."""
# The encoder modules peft's LoRA can adapt.
_ADAPTABLE = (nn.Linear, nn.Conv2d)
_ARGUMENT = "--lora_target_modules"


def require_peft() -> None:
    """Raises a `ValueError` saying how to install peft when it is missing (it is an optional dependency)."""
    try:
        import peft  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"--strategy lora needs peft, which is not installed ({error}): pip install 'vit-fer[lora]'."
        ) from error


def check_lora_arguments(r: int, alpha: float, dropout: float, target_modules: Sequence[str]) -> None:
    """Checks the LoRA options before anything is built; raises a `ValueError` naming the option."""
    if r < 1:
        raise ValueError(f"--lora_r must be a positive integer, got {r}.")
    if alpha <= 0:
        raise ValueError(f"--lora_alpha must be > 0, got {alpha}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"--lora_dropout must be in [0, 1), got {dropout}.")
    if not target_modules:
        raise ValueError(f"{_ARGUMENT} must name at least one module, e.g. {' '.join(DEFAULT_TARGET_MODULES)}.")
    require_peft()


def lora_target_names(model: nn.Module, target_modules: Sequence[str]) -> list[str]:
    """The full names (in `model`) of the encoder modules that LoRA adapts: every linear or convolution module of
    every encoder (`model.backbone_modules()`) whose name inside the encoder is one of `target_modules` or ends with
    `"." + name` (peft's rule: `q_proj` is each layer's `attention.q_proj`, `mlp.fc1` each layer's MLP input).
    Modules outside the encoders (head, fusion modules, mid fusion's cross-attention) are never adapted.

    Raises a `ValueError` naming `--lora_target_modules` when one of the names matches no such module.
    """
    encoders = {id(encoder) for encoder in model.backbone_modules()}
    candidates = []
    for encoder_name, encoder in model.named_children():
        if id(encoder) in encoders:
            candidates += [
                (f"{encoder_name}.{name}", name)
                for name, module in encoder.named_modules()
                if isinstance(module, _ADAPTABLE)
            ]
    targets, unmatched = [], []
    for wanted in target_modules:
        matches = [full for full, local in candidates if local == wanted or local.endswith(f".{wanted}")]
        if not matches:
            unmatched.append(wanted)
        targets += [full for full in matches if full not in targets]
    if unmatched:
        # The names a user can give: the encoder's module names without their layer index.
        available = sorted({local.split(".", 2)[2] if local.startswith("layers.") else local
                            for _, local in candidates})  # fmt: skip
        raise ValueError(
            f"{_ARGUMENT} {' '.join(unmatched)} matches no linear or convolution module of the encoders; expected "
            f"names among {', '.join(available)} (transformers 5's ViT; version 4's query / value are q_proj / "
            f"v_proj)."
        )
    return targets


def fully_trained_module_names(model: nn.Module) -> list[str]:
    """The modules outside the encoders — the head(s) and fusion modules — which train fully under LoRA (peft's
    `modules_to_save`). A `ModuleList` (mid fusion's cross-attention blocks) is listed block by block, which peft
    needs."""
    encoders = {id(encoder) for encoder in model.backbone_modules()}
    names = []
    for name, module in model.named_children():
        if id(module) in encoders:
            continue
        if isinstance(module, nn.ModuleList):
            names += [f"{name}.{index}" for index in range(len(module))]
        else:
            names.append(name)
    return names


def apply_lora(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.1,
    target_modules: Sequence[str] = DEFAULT_TARGET_MODULES,
):
    """Adds LoRA adapters of rank `r` (scaled by `alpha / r`, with `dropout` on their input) to the encoder modules
    named by `target_modules` (see [`lora_target_names`]), freezes every other encoder parameter, and makes the head
    and fusion modules train fully. `model` is changed in place and keeps its class; train it directly.

    Returns:
        the `peft.PeftModel` wrapping `model`, for [`save_adapter`] and [`merge_lora`].
    """
    require_peft()
    from peft import LoraConfig, get_peft_model

    targets = lora_target_names(model, target_modules)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        modules_to_save=fully_trained_module_names(model),
    )
    total = sum(parameter.numel() for parameter in model.parameters())
    with warnings.catch_warnings():
        # peft asks the model `is_gradient_checkpointing`, which transformers 5 deprecates in favour of its new name.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    trainable, _ = count_trainable_parameters(model)
    logger.info(
        "LoRA r=%d on %d encoder modules (%s): %d of the model's %d parameters trainable (%.2f %%), the head and "
        "fusion modules included.",
        r, len(targets), ", ".join(target_modules), trainable, total, 100 * trainable / total,
    )  # fmt: skip
    return peft_model


def count_trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """`(trainable, total)`: the parameters that require grad, and the model's own parameters — without the LoRA
    matrices and peft's trainable copies of the head, i.e. the size of the saved (merged) model."""
    trainable = total = 0
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            trainable += parameter.numel()
        if ".lora_" not in name and ".modules_to_save." not in name:
            total += parameter.numel()
    return trainable, total


def save_adapter(peft_model, folder: str | Path) -> Path:
    """Writes the adapter alone — peft's `adapter_config.json` and `adapter_model.safetensors` (LoRA matrices, head
    and fusion modules) — to `folder`, for `PeftModel.from_pretrained(model_the_run_started_from, folder)`."""
    peft_model.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def merge_lora(peft_model) -> nn.Module:
    """Folds the adapters into the encoder weights and puts the trained head and fusion modules back in place:
    returns the model (the object `apply_lora` adapted) as a plain vit-fer model, every parameter trainable again, as
    `from_pretrained` would give it."""
    model = peft_model.merge_and_unload()
    model.requires_grad_(True)
    return model
