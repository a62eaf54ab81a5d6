"""What the benchmarks run: models of a chosen backbone size (random weights), their batches, and the train and
inference steps that are timed."""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, ViTConfig, ViTForImageClassification

from harness import Report, Spread, ratios, time_interleaved
from vit_fer import (
    EarlyFusionViT,
    EarlyFusionViTConfig,
    LateFusionViT,
    LateFusionViTConfig,
    MidFusionViT,
    MidFusionViTConfig,
    ViTFERConfig,
    ViTForFER,
)


# The standard ViT/DeiT encoder sizes at 224 px, patch 16; "base" is google/vit-base-patch16-224-in21k.
PATCH_SIZE = 16
SIZES = {
    "tiny": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}

REFERENCE = "ViTForImageClassification"

# What the timed steps compute in: fp32, or bf16 autocast (mixed precision, as `--bf16` trains).
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16}

# Our architectures and fusion designs, as (model class, config class, config fields).
VARIANTS = {
    "ViTForFER": (ViTForFER, ViTFERConfig, {}),
    "early-concat": (EarlyFusionViT, EarlyFusionViTConfig, dict(fusion_type="concat")),
    "early-add": (EarlyFusionViT, EarlyFusionViTConfig, dict(fusion_type="add")),
    "late-concat": (LateFusionViT, LateFusionViTConfig, dict(fusion_type="concat")),
    "late-add": (LateFusionViT, LateFusionViTConfig, dict(fusion_type="add")),
    "late-attention": (LateFusionViT, LateFusionViTConfig, dict(fusion_type="attention")),
    "late-prediction-mean": (LateFusionViT, LateFusionViTConfig, dict(fusion_layer="prediction")),
    "late-prediction-weighted": (
        LateFusionViT,
        LateFusionViTConfig,
        dict(fusion_layer="prediction", prediction_fusion="weighted"),
    ),
}
# The mid-fusion designs at fusion layers 4 and 8 (of 12), timed by the "mid" group of run.py.
MID_VARIANTS = {
    f"mid-{fusion_type}-k{fusion_layer}": (
        MidFusionViT,
        MidFusionViTConfig,
        dict(fusion_type=fusion_type, fusion_layer=fusion_layer),
    )
    for fusion_type in ("add", "bottleneck", "cross_attention", "concat")
    for fusion_layer in (4, 8)
}
VARIANTS.update(MID_VARIANTS)


@dataclass(frozen=True)
class Workload:
    """The settings every measurement of a run shares."""

    size: str
    image_size: int
    batch_size: int
    device: torch.device
    attn_implementation: str = "sdpa"
    precision: str = "fp32"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of the timed steps, None for fp32."""
        return AUTOCAST_DTYPES[self.precision]

    @property
    def matmul_dtype(self) -> torch.dtype:
        """The dtype the encoders' matrix products run in."""
        return self.autocast_dtype or torch.float32

    def backbone(self) -> dict[str, int]:
        return dict(SIZES[self.size], image_size=self.image_size, patch_size=PATCH_SIZE)

    @property
    def tokens(self) -> int:
        """Sequence length of the encoder: the patches and the [CLS] token."""
        return (self.image_size // PATCH_SIZE) ** 2 + 1

    @property
    def largest_matmul(self) -> tuple[int, int, int]:
        """(rows, inner, columns) of the encoder's largest product, the first MLP matrix on the whole batch."""
        size = SIZES[self.size]
        return self.batch_size * self.tokens, size["hidden_size"], size["intermediate_size"]

    def train_bytes(self, name: str) -> int:
        """Rough memory of training `name` at this size: 16 bytes per parameter (weights, gradients, two AdamW
        moments), one or two encoders. Used to keep the models timed side by side within a memory budget."""
        size = SIZES[self.size]
        hidden, layers = size["hidden_size"], size["num_hidden_layers"]
        parameters = layers * (4 * hidden**2 + 2 * hidden * size["intermediate_size"]) + self.tokens * hidden
        encoders = 2 if VARIANTS.get(name, (None,))[0] in (LateFusionViT, MidFusionViT) else 1
        return 16 * parameters * encoders


def build_model(name: str, workload: Workload, seed: int = 0, **config_fields) -> PreTrainedModel:
    """`name` (a key of `VARIANTS`, or `REFERENCE` for transformers' `ViTForImageClassification`) at the workload's
    size, with random weights drawn from `seed`, in train mode on the workload's device."""
    if name != REFERENCE and name not in VARIANTS:
        raise ValueError(f"`name` must be {REFERENCE!r} or one of {sorted(VARIANTS)}, got {name!r}.")
    fields = dict(workload.backbone(), attn_implementation=workload.attn_implementation, num_labels=7)
    torch.manual_seed(seed)
    if name == REFERENCE:
        model = ViTForImageClassification(ViTConfig(**fields, **config_fields))
    else:
        model_class, config_class, variant_fields = VARIANTS[name]
        model = model_class(config_class(**fields, **variant_fields, **config_fields))
    return model.to(workload.device).train()


def make_batch(model: PreTrainedModel, batch_size: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random batch in the input format of `model` (thermal images for the fusion models), with labels."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, 3, model.config.image_size, model.config.image_size)
    batch = {"pixel_values": torch.randn(shape, generator=generator)}
    if isinstance(model, (EarlyFusionViT, LateFusionViT, MidFusionViT)):
        batch["thermal_pixel_values"] = torch.randn(shape, generator=generator)
    batch["labels"] = torch.randint(0, model.config.num_labels, (batch_size,), generator=generator)
    return {key: value.to(device) for key, value in batch.items()}


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision in `dtype` on `device`, or nothing when `dtype` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class TrainStep:
    """One optimisation step — forward, backward, AdamW step — of `model` on a fixed `batch`.

    AdamW holds only the parameters that require grad when the step is built, as the `Trainer` does. `losses` keeps
    every step's loss, so that two precisions can be compared after the same steps.
    """

    def __init__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], dtype: torch.dtype | None = None):
        self.model, self.batch, self.dtype = model.train(), batch, dtype
        self.device = next(model.parameters()).device
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        self.losses: list[float] = []

    def __call__(self) -> None:
        with autocast(self.device, self.dtype):
            loss = self.model(**self.batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses.append(loss.detach())

    def final_loss(self) -> float:
        return float(self.losses[-1])


class InferenceStep:
    """One batched forward pass of `model` in eval mode without autograd, as at prediction time."""

    def __init__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], dtype: torch.dtype | None = None):
        self.model, self.dtype = model.eval(), dtype
        self.inputs = {key: value for key, value in batch.items() if key != "labels"}
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def __call__(self) -> None:
        with autocast(self.device, self.dtype):
            self.model(**self.inputs)



@dataclass
class Bench:
    """What a measurement group is given: the shared workload, the repetition settings and the report to fill."""

    workload: Workload
    repetitions: int
    warmup: int
    report: Report

    def time(self, cases: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
        """Seconds per call of each case (see `harness.time_interleaved`)."""
        return time_interleaved(cases, self.repetitions, self.warmup, self.workload.device)

    def throughput(self, seconds: list[float], samples: int | None = None) -> Spread:
        """Samples per second of calls that each process `samples` (default: a batch)."""
        samples = self.workload.batch_size if samples is None else samples
        return Spread.of([samples / value for value in seconds])

    def compare(
        self,
        group: str,
        cases: dict[str, tuple[torch.nn.Module, dict[str, torch.Tensor], torch.dtype | None]],
        baseline: str,
        modes: tuple[str, ...] = ("train", "inference"),
    ) -> dict[str, dict[str, TrainStep | InferenceStep]]:
        """Times `cases` (name: model, batch, autocast dtype) side by side in each mode, and reports each one's
        throughput and its speed-up over `baseline` (baseline time / case time). Returns the steps, per mode."""
        steps = {}
        for mode in modes:
            step_class = TrainStep if mode == "train" else InferenceStep
            steps[mode] = {name: step_class(model, batch, dtype) for name, (model, batch, dtype) in cases.items()}
            readings = self.time(steps[mode])
            for name, seconds in readings.items():
                self.report.add(group, f"{mode}.{name}", self.throughput(seconds), "samples/s")
            for name, speedup in ratios(readings, baseline, speedup=True).items():
                self.report.add(group, f"{mode}.{name}.speedup", speedup, f"× {baseline}")
        return steps
