"""The `Trainer` side of fine-tuning: the training arguments vit-fer adds, a `Trainer` whose optimizer has the
backbone / head learning rates (and which sets the CPU malloc policy), cached encoder features, and a check that
distributed replicas stayed in sync."""

import datetime
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.distributed as dist
from torch.optim import AdamW
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments
from transformers.trainer_pt_utils import nested_gather
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput

from .allocator import MALLOC_POLICIES, set_malloc_policy
from .lora import DEFAULT_TARGET_MODULES, check_lora_arguments
from .optimization import get_parameter_groups
from .output_dir import CHECKPOINT_PATTERN
from .progress import EpochProgressCallback


logger = logging.getLogger(__name__)

STRATEGIES = ("classifier_only", "full", "progressive", "lora")
RUN_SUMMARY_NAME = "run_summary.json"
"""File of each checkpoint with the training loss summed and the time spent up to it, for whole-run figures."""
MALLOC_POLICY_CHOICES = ("auto", *MALLOC_POLICIES)


@dataclass
class FERTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the fine-tuning strategies of vit-fer and defaults suited to it: evaluation and
    checkpoints every epoch, the best checkpoint on validation macro-F1, a cosine schedule with 10 % warmup."""

    strategy: str = field(
        default="full",
        metadata={
            "help": "Fine-tuning strategy: 'classifier_only' (frozen backbone), 'full', 'progressive' (head first, "
            "then the backbone is unfrozen, all at once or top-down; see --head_only_epochs, --layers_per_stage), or "
            "'lora' (low-rank adapters on the frozen encoders through peft, merged into the saved weights; see "
            "--lora_*). One strategy per run: progressive unfreezing does not combine with LoRA."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA: rank of the adapters."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA: scaling (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA: dropout on the adapters' input."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        metadata={
            "help": "LoRA: the encoder modules adapted, by their name inside an encoder or its last parts (q_proj, "
            "k_proj, v_proj, o_proj, mlp.fc1, mlp.fc2, ...); every encoder of the model is adapted. The head and "
            "fusion modules train fully; adapters and head at --learning_rate."
        },
    )
    head_only_epochs: int = field(
        default=1, metadata={"help": "Progressive: epochs during which only the head (and fusion modules) train."}
    )
    layers_per_stage: int | None = field(
        default=None,
        metadata={"help": "Progressive: encoder layers released per stage, top-down; unset releases all at once."},
    )
    epochs_per_stage: int = field(default=1, metadata={"help": "Progressive: epochs between two releases."})
    backbone_lr_multiplier: float = field(
        default=0.1, metadata={"help": "The encoders' learning rate as a fraction of --learning_rate (the head's)."}
    )
    layer_lr_decay: float = field(
        default=1.0, metadata={"help": "Layer-wise learning-rate decay of the encoders (1.0: none)."}
    )
    cache_features: bool = field(
        default=False,
        metadata={
            "help": "Classifier-only: compute the frozen encoders' features once and train the head on them "
            "(no training augmentation then)."
        },
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without improvement of the best metric."}
    )
    test_reports: bool = field(
        default=True,
        metadata={
            "help": "After training, write overlays of three test pairs with their explanation maps (explanations/) "
            "and the robustness report (robustness.json, robustness.png): the report evaluates the test split "
            "again for each modality missing and each corruption at each of its severities, which takes minutes "
            "on a large test split. false skips both (sweeps, cross-validation); `vit-fer explain` and `vit-fer "
            "evaluate` write them for the saved model later."
        },
    )
    write_space: bool = field(
        default=False,
        metadata={"help": "Also write a Gradio Space for the model to OUTPUT_DIR/space (needs --hub_model_id)."},
    )
    malloc_policy: str = field(
        default="auto",
        metadata={
            "help": "Training on CPU (glibc): 'retain' keeps freed memory for the next step (fastest: no page "
            "faults), 'release' returns it at once (lowest resident memory), 'default' leaves glibc's own "
            "thresholds; 'auto' is release with --activation_checkpointing, retain otherwise. See vit_fer/allocator.py."
        },
    )

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh in an --output_dir holding an earlier run: deletes that run's checkpoints and saved "
            "files, nothing else; refuses the current directory or a folder holding the dataset."
        },
    )

    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the model and results go. Unset: a new folder outputs/<design>-<date>-<time>, e.g. "
            "outputs/late-attention-20260101-120000 (required with several processes)."
        },
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on the validation split."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to write a checkpoint."})
    logging_strategy: str = field(default="steps", metadata={"help": "When to log the training loss."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best is always kept)."})
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "End with the checkpoint best on validation (never on test)."}
    )
    metric_for_best_model: str | None = field(
        default="macro_f1", metadata={"help": "Validation metric choosing the best checkpoint: macro_f1 or uar."}
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(
        default=0.1, metadata={"help": "Warmup optimizer steps; a value below 1 is a fraction of all steps."}
    )
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay of weight matrices."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep the image columns that the lazy transforms read."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={
            "help": "DDP's search for parameters a step did not use. Off: every trainable parameter of a vit-fer "
            "model takes part in every step (modality dropout masks, progressive unfreezing zeroes gradients), so "
            "the search would only cost an extra pass over the autograd graph per step."
        },
    )

    def __post_init__(self):
        # The Trainer would name an unset output_dir "trainer_output"; train.py names it after the model instead.
        self.output_dir_given = self.output_dir is not None
        if not self.output_dir_given and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(
                "--output_dir is required with several processes: each would otherwise name its own folder."
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {self.strategy!r}.")
        if self.strategy == "lora":
            check_lora_arguments(self.lora_r, self.lora_alpha, self.lora_dropout, self.lora_target_modules)
        if self.cache_features and self.strategy != "classifier_only":
            raise ValueError(
                "`cache_features` needs a frozen backbone: use it with strategy='classifier_only', "
                f"got strategy={self.strategy!r}."
            )
        if self.write_space:
            from .space import check_space_repo_id

            # Checked before training: the Space names the model by its Hub id.
            if self.hub_model_id is None:
                raise ValueError("`write_space` needs `hub_model_id` (namespace/name), the id the Space loads.")
            check_space_repo_id(self.hub_model_id)
        if self.malloc_policy not in MALLOC_POLICY_CHOICES:
            raise ValueError(f"`malloc_policy` must be one of {MALLOC_POLICY_CHOICES}, got {self.malloc_policy!r}.")
        if self.metric_for_best_model not in (None, "macro_f1", "uar", "accuracy", "loss", "mAP", "ccc"):
            raise ValueError(
                "`metric_for_best_model` must be one of macro_f1, uar, accuracy, loss, mAP (multi-label), ccc "
                "(regression) (validation metrics), "
                f"got {self.metric_for_best_model!r}."
            )
        # accelerate shards only across accelerators: on CPU it would silently train unsharded DDP replicas instead.
        use_fsdp = self.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
        if use_fsdp and not torch.accelerator.is_available():
            raise ValueError(
                "`fsdp` needs accelerators (GPUs), and this machine has none: accelerate would ignore it and train "
                "one unsharded copy of the model per process. Drop --fsdp: on CPU, processes train over DDP (gloo)."
            )
        self._distribute_on_cpu()
        super().__post_init__()
        # Pinned memory serves host-to-accelerator copies only; without an accelerator torch warns at every epoch.
        if self.dataloader_pin_memory and not torch.accelerator.is_available():
            self.dataloader_pin_memory = False

    def _distribute_on_cpu(self) -> None:
        """A multi-process launch (torchrun, `accelerate launch`) on a machine without accelerator runs distributed
        on CPU over gloo — without `--use_cpu` the `Trainer` would train one independent model per process."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size < 2 or torch.accelerator.is_available():
            return
        if self.ddp_backend not in (None, "gloo", "ccl", "mpi"):
            raise ValueError(
                f"`ddp_backend` {self.ddp_backend!r} needs accelerators, and this machine has none: launched as "
                f"{world_size} processes on CPU, add --use_cpu --ddp_backend gloo."
            )
        if not self.use_cpu or self.ddp_backend is None:
            logger.warning(
                "Launched as %d processes on a machine without accelerator: distributed training on CPU over gloo "
                "(as with --use_cpu --ddp_backend gloo).",
                world_size,
            )
            self.use_cpu, self.ddp_backend = True, self.ddp_backend or "gloo"

    @property
    def cpu_malloc_policy(self) -> str:
        """The malloc policy of a run on CPU, with "auto" resolved: memory back at once when activation
        checkpointing is on (its saving is the point of it), kept for reuse otherwise (speed)."""
        if self.malloc_policy != "auto":
            return self.malloc_policy
        return "release" if self.activation_checkpointing else "retain"


class FERTrainer(Trainer):
    """A `Trainer` whose AdamW has vit-fer's parameter groups ([`get_parameter_groups`]): the backbone at
    `learning_rate × backbone_lr_multiplier` (optionally decayed layer-wise), the head and fusion modules at
    `learning_rate`, no weight decay on biases, norms and ViT's tokens — with frozen parameters included, so that
    unfreezing later trains them. The schedule is the Trainer's own (`lr_scheduler_type`, cosine with warmup by
    default), built once the Trainer knows the number of optimizer steps — the same pair
    [`get_optimizer_and_scheduler`] gives a hand-written loop. On CPU it sets the process's malloc policy
    (`--malloc_policy`, see vit_fer/allocator.py) when it is built."""

    args: FERTrainingArguments

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One line per epoch and one bar (vit_fer/progress.py), not a dictionary per logging step.
        for callback in (ProgressCallback, PrinterCallback):
            self.remove_callback(callback)
        self.add_callback(EpochProgressCallback())
        # The host allocator is on the hot path only when the steps run on CPU.
        if self.args.device.type == "cpu" and set_malloc_policy(self.args.cpu_malloc_policy):
            logger.info("malloc policy: %s", self.args.cpu_malloc_policy)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """The `Trainer`'s training, with a summary (`train_loss`, runtime, speeds) of the whole run: a resumed run
        adds what it trains to the figures its checkpoint recorded ([`RUN_SUMMARY_NAME`]), where the `Trainer`
        alone reports the last segment only (and a `train_loss` of 0.0 when nothing was left to train)."""
        self._earlier = {"steps": 0, "train_loss_sum": 0.0, "train_runtime": 0.0}
        if isinstance(resume_from_checkpoint, (str, Path)):
            summary = Path(resume_from_checkpoint) / RUN_SUMMARY_NAME
            if summary.is_file():
                self._earlier = json.loads(summary.read_text())
            else:
                logger.warning("%s has no %s: train_loss and the speeds will cover only the resumed part.",
                               resume_from_checkpoint, RUN_SUMMARY_NAME)
        self._segment_start = time.time()
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        metrics = output.metrics
        steps = output.global_step
        segment_steps = steps - self._initial_global_step
        loss_sum = self._earlier["train_loss_sum"] + output.training_loss * segment_steps
        runtime = self._earlier["train_runtime"] + metrics["train_runtime"]
        samples_per_step = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        whole = {
            "train_loss": loss_sum / max(steps, 1),
            "train_runtime": round(runtime, 4),
            "train_steps_per_second": round(steps / runtime, 3) if runtime else 0.0,
            "train_samples_per_second": round(steps * samples_per_step / runtime, 3) if runtime else 0.0,
        }
        metrics.update(whole)
        # The final log entry (learning curves, trainer_state) says the same.
        for entry in reversed(self.state.log_history):
            if "train_loss" in entry:
                entry.update(whole)
                break
        return TrainOutput(output.global_step, whole["train_loss"], metrics)

    def _save_checkpoint(self, model, trial) -> None:
        # Written before the Trainer's files, so a checkpoint complete for the Trainer (trainer_state.json is its
        # last file) always has it. The loss not yet logged is averaged over processes as the Trainer's logs are.
        pending = nested_gather(self._tr_loss, self.args.parallel_mode).mean().item()
        summary = {
            "steps": self.state.global_step,
            "train_loss_sum": self._earlier["train_loss_sum"] + self._total_loss_scalar + pending,
            "train_runtime": self._earlier["train_runtime"] + time.time() - self._segment_start,
        }
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / RUN_SUMMARY_NAME).write_text(json.dumps(summary))
        super()._save_checkpoint(model, trial)

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            groups = get_parameter_groups(
                self.model if model is None else model,
                learning_rate=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                backbone_lr_multiplier=self.args.backbone_lr_multiplier,
                layer_lr_decay=self.args.layer_lr_decay,
            )
            self.optimizer = AdamW(
                groups,
                lr=self.args.learning_rate,
                betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon,
            )
        return self.optimizer


@torch.no_grad()
def cache_encoder_features(
    model, dataset: datasets.Dataset, collator, batch_size: int = 32, device: torch.device | None = None
) -> datasets.Dataset:
    """Runs the (frozen) encoders once over `dataset` — transformed samples, deterministic — and returns a dataset
    of `encoder_features` and `labels` on which the head trains exactly as on the images (see
    `forward(encoder_features=...)`)."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    features, labels = [], []
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[index] for index in range(start, min(start + batch_size, len(dataset)))])
        labels.append(batch.pop("labels"))
        features.append(model.extract_features(**{key: value.to(device) for key, value in batch.items()}).cpu())
    model.train(was_training)
    cached = datasets.Dataset.from_dict(
        {"encoder_features": torch.cat(features).numpy(), "labels": torch.cat(labels).numpy()}
    )
    return cached.with_format("torch")


def check_replicas_in_sync(model: torch.nn.Module) -> None:
    """Raises if the processes of a distributed run hold different weights (e.g. a parameter DDP never
    synchronised). A no-op in a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    # One checksum per parameter, on the parameters' device (NCCL gathers GPU tensors only).
    local = torch.stack([p.detach().double().sum() for p in model.parameters()])
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    gathered = [checksums.cpu().numpy() for checksums in gathered]
    names = [name for name, _ in model.named_parameters()]
    differing = sorted({names[i] for other in gathered[1:] for i in np.flatnonzero(other != gathered[0])})
    if differing:
        raise RuntimeError(
            f"The {len(gathered)} processes ended with different weights for {differing[:5]} ({len(differing)} in "
            "all): some parameters were not synchronised."
        )


def default_output_dir(config, now: datetime.datetime | None = None) -> Path:
    """outputs/<design>-<YYYYmmdd-HHMMSS>: a new folder per run, named after the model's design (`rgb`,
    `early-concat`, `late-attention`, `late-prediction-weighted`, ...), never one an earlier run wrote."""
    family = config.model_type.removeprefix("vit-fer").strip("-").removesuffix("-fusion")
    if not family:
        parts = [config.modality]
    elif getattr(config, "fusion_layer", None) == "prediction":
        parts = [family, "prediction", config.prediction_fusion]
    else:
        parts = [family, getattr(config, "fusion_type", None)]
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("outputs") / "-".join(str(part) for part in [*parts, stamp] if part)


def checkpoint_is_complete(folder: str | Path) -> bool:
    """Whether a `checkpoint-N` folder was completely written. The `Trainer` writes `trainer_state.json` last, and in
    place: a run killed while saving leaves a folder without it, or with the file empty or cut short."""
    try:
        json.loads((Path(folder) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest `checkpoint-N` folder of `output_dir` that was completely written ([`checkpoint_is_complete`]);
    resuming skips the others (the Trainer deletes an older checkpoint only once a newer one is complete)."""
    folders = [path for path in Path(output_dir).glob("checkpoint-*") if CHECKPOINT_PATTERN.fullmatch(path.name)]
    folders.sort(key=lambda path: int(path.name.split("-")[1]), reverse=True)
    for folder in folders:
        if checkpoint_is_complete(folder):
            return folder
        logger.warning("Skipping %s: it was not completely written (the run was interrupted while saving).", folder)
    return None
