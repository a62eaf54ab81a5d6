"""Tiny ViT checkpoints and model variants shared by the model tests (the real code paths at toy sizes)."""

from pathlib import Path

import torch
from transformers import TrainingArguments, ViTConfig, ViTModel


TINY_VIT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
)

# Every architecture and fusion design, as `create_multimodal_vit_model` arguments.
VARIANTS = {
    "rgb": dict(mode="rgb"),
    "thermal": dict(mode="thermal"),
    "early-concat": dict(mode="combined", fusion_strategy="early", fusion_type="concat"),
    "early-add": dict(mode="combined", fusion_strategy="early", fusion_type="add"),
    "late-concat": dict(mode="combined", fusion_strategy="late", fusion_type="concat"),
    "late-add": dict(mode="combined", fusion_strategy="late", fusion_type="add"),
    "late-attention": dict(mode="combined", fusion_strategy="late", fusion_type="attention"),
    "late-prediction-mean": dict(mode="combined", fusion_strategy="late", fusion_layer="prediction"),
    "late-prediction-weighted": dict(
        mode="combined", fusion_strategy="late", fusion_layer="prediction", prediction_fusion="weighted"
    ),
    "late-shared": dict(mode="combined", fusion_strategy="late", fusion_type="concat", share_encoder=True),
    # Mid fusion at the middle layer of the 2-layer tiny ViT.
    "mid-bottleneck": dict(mode="combined", fusion_strategy="mid", fusion_type="bottleneck", fusion_layer=1),
    "mid-cross_attention": dict(mode="combined", fusion_strategy="mid", fusion_type="cross_attention", fusion_layer=1),
    "mid-concat": dict(mode="combined", fusion_strategy="mid", fusion_type="concat", fusion_layer=1),
    "mid-add": dict(mode="combined", fusion_strategy="mid", fusion_type="add", fusion_layer=1),
}
MID_VARIANTS = [variant for variant in VARIANTS if variant.startswith("mid-")]


def write_tiny_vit(path: Path, seed: int = 0) -> Path:
    """Writes a randomly initialised tiny `ViTModel` checkpoint (with pooler, like google/vit-base-patch16-224-in21k)."""
    torch.manual_seed(seed)
    ViTModel(ViTConfig(**TINY_VIT)).save_pretrained(path)
    return path


def make_inputs(model, batch_size: int = 4, seed: int = 0, with_labels: bool = True) -> dict[str, torch.Tensor]:
    """A random batch in the format `model` expects."""
    generator = torch.Generator().manual_seed(seed)
    size = model.config.image_size
    # Single-modality models read their modality, RGB or thermal, as `pixel_values`.
    inputs = {"pixel_values": torch.randn(batch_size, 3, size, size, generator=generator)}
    if not hasattr(model.config, "modality"):
        inputs["thermal_pixel_values"] = torch.randn(batch_size, 3, size, size, generator=generator)
    if with_labels:
        inputs["labels"] = torch.randint(0, model.config.num_labels, (batch_size,), generator=generator)
    return inputs


def tiny_training_arguments(output_dir: Path, **overrides) -> TrainingArguments:
    """`TrainingArguments` for a few CPU steps without checkpoints, logging integrations or progress bars."""
    defaults = dict(
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        max_steps=4,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    return TrainingArguments(output_dir=str(output_dir), **{**defaults, **overrides})


def run_without_vit_fer(script: str, *arguments, tmp_path: Path) -> dict:
    """Runs `script` (which sets `sys.modules["vit_fer"] = None`, as a Hub user has no vit_fer) in a fresh Python
    outside the repository, offline, with its own remote-code cache; returns the JSON of its last output line."""
    import json
    import os
    import subprocess
    import sys

    environment = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", script, *map(str, arguments)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository root, so the vit_fer folder is not importable by path either
        env={key: value for key, value in environment.items() if key != "PYTHONPATH"},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])
