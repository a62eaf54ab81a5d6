#!/usr/bin/env python
"""Fine-tunes a vit-fer model — RGB, thermal, or RGB + thermal fusion — with the HF `Trainer`, evaluates it on the
test split, and writes a complete, shareable model folder.

    python train.py                                   # the offline demo on the built-in synthetic data
    python train.py --model_name_or_path google/vit-base-patch16-224-in21k --dataset_dir DATA \\
        --mode combined --fusion_strategy late --fusion_type attention --strategy progressive
    python train.py args.yaml                         # the same arguments from a YAML or JSON file
    torchrun --nproc_per_node 2 train.py ...          # or `accelerate launch`: several processes

vit-fer's options (model, data, fine-tuning strategy) come first below; the Trainer's own options follow.
"""

import json
import logging
import platform
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import datasets
import torch
import transformers
from transformers import EarlyStoppingCallback, set_seed
from transformers.image_processing_utils import ImageProcessingMixin

import vit_fer
from vit_fer import (
    FER_LABELS,
    ProgressiveUnfreezingCallback,
    build_compute_metrics,
    create_multimodal_vit_model,
    load_fer_dataset,
    load_fer_metric,
)
from vit_fer.arguments import FERArgumentParser, user_errors
from vit_fer.calibration import calibrate_after_training
from vit_fer.cross_validation import check_cross_validation_arguments, parse_num_folds, run_cross_validation
from vit_fer.explain import write_test_overlays
from vit_fer.factory import checkpoint_architecture
from vit_fer.image_processing_vit_fer import ViTFERImageProcessor
from vit_fer.hub import create_hub_repo, publish
from vit_fer.model_card import SYNTHETIC_DATASET, design_name, write_model_card
from vit_fer.inference import FERPipeline
from vit_fer.lora import apply_lora, count_trainable_parameters, lora_target_names, merge_lora, save_adapter
from vit_fer.output_dir import ADAPTER_DIR, hold_output_dir
from vit_fer.space import write_space
from vit_fer.plots import plot_confusion_matrix, plot_learning_curves
from vit_fer.robustness import robustness_report
from vit_fer.data import MODALITIES, load_fer_folds
from vit_fer.data.loading import DEFAULT_SHUFFLE_BUFFER_SIZE
from vit_fer.data.targets import dataset_problem_type
from vit_fer.synthetic import synthetic_benchmark
from vit_fer.trainer import (
    FERTrainer,
    FERTrainingArguments,
    cache_encoder_features,
    check_replicas_in_sync,
    default_output_dir,
)
from vit_fer.transforms import FERDataCollator, FERTransform, input_names_for_config, with_fer_transforms


logger = logging.getLogger("train")

# `python train.py` with no arguments: a small early-fusion model trained from scratch on the synthetic benchmark, in
# a few minutes on 2 CPU cores (the Hub's pretrained weights are not needed offline).
DEMO_ARGUMENTS = {
    "mode": "combined",
    "fusion_strategy": "early",
    "fusion_type": "concat",
    "image_size": 48,
    "patch_size": 8,
    "hidden_size": 96,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 192,
    # The head of ViT-B's width: the demo's 0.920 and the fusion matrix were measured with it (hidden_size // 2 = 48
    # trains to 0.870 in the same budget).
    "classifier_hidden_size": 384,
    "synthetic_num_samples": 2000,
    "num_train_epochs": 30,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 128,
    "learning_rate": 1e-3,
    "backbone_lr_multiplier": 1.0,
    "logging_steps": 50,
    "save_total_limit": 1,
    "output_dir": "outputs/demo",
    "overwrite_output_dir": True,
}


# The validation metrics and loss name of the learning curves of the problem types other than single-label.
LEARNING_CURVES = {
    "multi_label_classification": (("eval_macro_f1", "eval_mAP"), "binary cross-entropy"),
    "regression": (("eval_ccc",), "mean squared error"),
}


@dataclass
class ModelArguments:
    """Which model to build and from which checkpoint."""

    _argument_group_name = "model (vit-fer)"

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "ViT checkpoint whose weights the encoders start from: a Hub id such as "
            "google/vit-base-patch16-224-in21k, or a folder with a ViTModel / ViTForImageClassification checkpoint; "
            "or a saved vit-fer model (e.g. outputs/demo) whose fine-tuning continues, in its architecture (a new "
            "output layer when its labels differ). Unset: encoders are randomly initialised with the sizes below "
            "(training from scratch, as the demo does)."
        },
    )
    mode: str | None = field(
        default=None,
        metadata={"help": "'rgb', 'thermal' (one modality) or 'combined' (fusion). Default: a saved vit-fer model's, "
                  "else 'rgb'."},
    )
    fusion_strategy: str | None = field(
        default=None,
        metadata={"help": "Combined mode: 'early', 'mid' or 'late' fusion. Default: a saved vit-fer model's, else "
                  "'early'."},
    )
    fusion_type: str | None = field(
        default=None,
        metadata={"help": "Early: 'concat' or 'add'. Mid: 'bottleneck' (default), 'cross_attention', 'concat' or "
                  "'add'. Late feature fusion: 'concat', 'add' or 'attention'."},
    )
    fusion_layer: str | None = field(
        default=None,
        metadata={"help": "Mid fusion: the layer index, 0 to num_hidden_layers, from which RGB and thermal interact "
                  "(default 8). Late fusion: 'feature' or 'prediction'."},
    )
    prediction_fusion: str | None = field(
        default=None, metadata={"help": "Late prediction fusion: 'mean' or 'weighted' (learned modality weights)."}
    )
    modality_dropout: float | None = field(
        default=None,
        metadata={"help": "Mid and late fusion: probability of dropping one modality of a training sample."},
    )
    classifier_dropout: float = field(default=0.1, metadata={"help": "Dropout before the head's hidden layer."})
    classifier_hidden_size: int | None = field(
        default=None,
        metadata={"help": "Width of the head's hidden layer (default: the encoder's hidden_size // 2, as in the "
                  "original implementation)."},
    )
    problem_type: str | None = field(
        default=None,
        metadata={
            "help": "As transformers' config.problem_type: 'single_label_classification' (class names; or "
            "probability vectors: soft labels), 'multi_label_classification' (lists of class names, multi-hot "
            "vectors) or 'regression' (numbers). Default: from the label column by transformers' rule (class names: "
            "single-label; lists of names: multi-label; one number: regression; several numbers: multi-label)."
        },
    )
    attn_implementation: str = field(
        default="sdpa",
        metadata={
            "help": "Attention kernel of the encoders: 'sdpa' (fused) or 'eager' (explicit softmax; on CPU with "
            "--bf16 about 10 %% faster at ViT-Base), or any other that transformers' ViT supports."
        },
    )
    hidden_size: int = field(default=768, metadata={"help": "From scratch only: encoder width."})
    num_hidden_layers: int = field(default=12, metadata={"help": "From scratch only: encoder depth."})
    num_attention_heads: int = field(default=12, metadata={"help": "From scratch only: attention heads."})
    intermediate_size: int = field(default=3072, metadata={"help": "From scratch only: MLP width."})
    patch_size: int = field(default=16, metadata={"help": "From scratch only: patch size."})
    activation_checkpointing_every_n_layers: int = field(
        default=1,
        metadata={"help": "With --activation_checkpointing: checkpoint every n-th encoder layer (memory/speed)."},
    )


@dataclass
class DataArguments:
    """Where the data comes from and how it is split and shown to the model."""

    _argument_group_name = "data (vit-fer)"

    dataset_dir: str | None = field(
        default=None,
        metadata={
            "help": "A folder (rgb/<label>/ + thermal/<label>/, a manifest.csv/jsonl, or the RGB/ + Thermal/ KTFE "
            "layout) or a manifest file. Unset: the synthetic RGB-thermal benchmark (generated on first use)."
        },
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` dataset (name or path) with image columns, instead."}
    )
    rgb_column: str = field(default="rgb", metadata={"help": "RGB image column of a manifest or dataset."})
    thermal_column: str = field(default="thermal", metadata={"help": "Thermal image column."})
    label_column: str = field(
        default="label",
        metadata={"help": "Label column: a class name, a list of class names, a probability vector, or numbers."},
    )
    target_names: list[str] | None = field(
        default=None, metadata={"help": "Regression: the targets' names (e.g. valence arousal); LABEL_i otherwise."}
    )
    subject_column: str = field(default="subject", metadata={"help": "Subject id column (subject-wise splits)."})
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Side of the square model input in pixels. Default: the checkpoint's resolution (224 from "
            "scratch); another size resamples the checkpoint's position embeddings once at load."
        },
    )
    validation_size: float = field(default=0.1, metadata={"help": "Validation fraction when the data has none."})
    test_size: float = field(default=0.1, metadata={"help": "Test fraction when the data has none."})
    cross_validation: str | None = field(
        default=None,
        metadata={
            "help": "Cross-validate: K (e.g. 5) subject-grouped folds, stratified by label where whole subjects allow "
            "(image-level with a warning when the data has no subject ids), or 'loso' (leave one subject out). Each "
            "fold is tested once, trained with the same settings and seed, in OUTPUT_DIR/fold-N; OUTPUT_DIR gets "
            "cv_results.json, README.md and cv_results.png (mean ± std). The folds replace the data's own split and "
            "--test_size; validation is carved from the other folds (--validation_size)."
        },
    )
    dataset_label_names: list[str] | None = field(
        default=None,
        metadata={"help": "Names of the dataset's integer labels, in index order (e.g. angry disgust fear happy neutral sad surprised)."},
    )
    skip_bad_samples: bool = field(
        default=False,
        metadata={
            "help": "Skip bad samples (unreadable, unpaired, unlabelled, empty, NaN/inf, wrong bit depth, transparent; "
            "counted by reason) instead of failing with their list."
        },
    )
    drop_duplicates: bool = field(
        default=False,
        metadata={"help": "Keep the first of samples sharing a file (repeated rows, a file in two splits), with a "
                  "warning and the count, instead of failing."},
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the data (datasets.IterableDataset): only the listing is read up front, the images as "
            "they are used, each checked then. Needs --max_steps. See --shuffle_buffer_size."
        },
    )
    shuffle_buffer_size: int = field(
        default=DEFAULT_SHUFFLE_BUFFER_SIZE,
        metadata={"help": "With --streaming: samples in the train split's shuffle buffer (file paths, or a dataset's "
                  "encoded images; never decoded tensors)."},
    )
    synthetic_dir: str = field(default="data", metadata={"help": "Where the synthetic benchmark is generated."})
    synthetic_num_samples: int = field(default=2000, metadata={"help": "Pairs in the synthetic benchmark."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic benchmark."})
    thermal_temperature_range: tuple[float, float] = field(
        default=(20.0, 40.0), metadata={"help": "Temperatures (°C) mapped to the thermal input's [0, 1] range."}
    )


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, FERTrainingArguments]:
    parser = FERArgumentParser(
        (ModelArguments, DataArguments, FERTrainingArguments),
        prog="train.py",
        description=__doc__,
        usage="python train.py [--OPTION VALUE ...] | python train.py ARGS.yaml | python train.py ARGS.json",
    )
    if not argv:
        print("No arguments: running the offline demo, i.e. python train.py " + " ".join(
            f"--{key} {value}" for key, value in DEMO_ARGUMENTS.items()
        ))
    return parser.parse_into_dataclasses(argv, defaults=DEMO_ARGUMENTS)


def check_arguments(model_args: ModelArguments, data_args: DataArguments, training_args: FERTrainingArguments):
    """Checks every argument before anything is built or read: the model's options by building it on the meta
    device (no weights), the processor's, and the data's sources and fractions. Raises `ValueError` naming the
    argument. Returns the model's configuration (of the design asked for, or of a saved vit-fer model's own, without
    the checkpoint's sizes)."""
    # A saved vit-fer model's design is read from its config.json alone (no weights).
    design = model_design(model_args)
    if design.get("fusion_layer") != "prediction":
        design.pop("prediction_fusion", None)
    saved = {key: design[key] for key in ("mode", "fusion_strategy", "fusion_type", "fusion_layer", "prediction_fusion")
             if key in design and getattr(model_args, key) is None}
    with torch.device("meta"):
        model = build_model(replace(model_args, model_name_or_path=None, **saved), data_args, training_args)
    if training_args.strategy == "lora":
        lora_target_names(model, training_args.lora_target_modules)
    ViTFERImageProcessor(size=data_args.image_size, thermal_temperature_range=data_args.thermal_temperature_range)
    check_data_arguments(data_args)
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError(
            "--streaming needs --max_steps: a streamed dataset has no length, so training is counted in steps, not "
            f"epochs (got --max_steps {training_args.max_steps})."
        )
    if data_args.streaming and training_args.cache_features:
        raise ValueError("--cache_features needs the whole dataset at once: drop it or --streaming.")
    if data_args.cross_validation is not None:
        if data_args.streaming:
            raise ValueError("--cross_validation needs the whole listing at once to make its folds: drop --streaming.")
        check_cross_validation_arguments(data_args.cross_validation, training_args)
    return model.config


def check_data_arguments(data_args: DataArguments) -> None:
    if data_args.dataset_dir is not None and not Path(data_args.dataset_dir).exists():
        raise ValueError(f"--dataset_dir {data_args.dataset_dir} does not exist.")
    for name in ("validation_size", "test_size"):
        if not 0.0 <= getattr(data_args, name) < 1.0:
            raise ValueError(f"--{name} must be in [0, 1), got {getattr(data_args, name)}.")
    if data_args.validation_size + data_args.test_size >= 1.0:
        raise ValueError(
            f"--validation_size + --test_size must be below 1, got {data_args.validation_size + data_args.test_size}."
        )
    for name in ("image_size", "synthetic_num_samples", "shuffle_buffer_size"):
        # --image_size None means the checkpoint's resolution, known only once the model is loaded.
        if getattr(data_args, name) is not None and getattr(data_args, name) < 1:
            raise ValueError(f"--{name} must be a positive integer, got {getattr(data_args, name)}.")


def data_sources(data_args: DataArguments) -> list[str]:
    """The local paths the data comes from, which `--overwrite_output_dir` must never touch."""
    candidates = [data_args.dataset_dir, data_args.dataset_name, data_args.synthetic_dir]
    return [path for path in candidates if path is not None and Path(path).exists()]


def model_design(model_args: ModelArguments) -> dict:
    """The architecture's `create_multimodal_vit_model` arguments: `--mode` / `--fusion_*`, by default a saved
    vit-fer model's own."""
    design = ("mode", "fusion_strategy", "fusion_type", "fusion_layer", "prediction_fusion", "modality_dropout")
    requested = {key: getattr(model_args, key) for key in design}
    return checkpoint_architecture(model_args.model_name_or_path, **requested)


def build_model(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: FERTrainingArguments,
    problem_type: str | None = None,
    id2label: dict[int, str] | None = None,
):
    """The model of [`model_design`] for `problem_type` and `id2label` (the FER labels by default), its weights from
    `--model_name_or_path` or randomly initialised."""
    path = model_args.model_name_or_path
    overrides = model_design(model_args)
    mode, fusion_strategy = overrides.pop("mode", "rgb"), overrides.pop("fusion_strategy", "early")
    combined = mode == "combined"
    if model_args.prediction_fusion is not None and not (combined and fusion_strategy == "late"):
        raise ValueError("['prediction_fusion'] apply to --mode combined --fusion_strategy late only.")
    if model_args.modality_dropout is not None and not (combined and fusion_strategy in ("mid", "late")):
        raise ValueError("['modality_dropout'] apply to --mode combined --fusion_strategy mid or late only.")
    fusion_layer = overrides.pop("fusion_layer", None)
    if combined and fusion_strategy == "mid" and isinstance(fusion_layer, str):
        if not fusion_layer.isdigit():
            raise ValueError(
                "--fusion_layer of --fusion_strategy mid is a layer index from 0 to num_hidden_layers, "
                f"got {fusion_layer!r}."
            )
        fusion_layer = int(fusion_layer)
    if model_args.model_name_or_path is None:
        overrides.update(
            hidden_size=model_args.hidden_size,
            num_hidden_layers=model_args.num_hidden_layers,
            num_attention_heads=model_args.num_attention_heads,
            intermediate_size=model_args.intermediate_size,
            patch_size=model_args.patch_size,
        )
    if model_args.classifier_hidden_size is not None:
        overrides["classifier_hidden_size"] = model_args.classifier_hidden_size
    if data_args.image_size is not None:
        overrides["image_size"] = data_args.image_size
    if id2label is not None:
        overrides.update(id2label=id2label, label2id={label: index for index, label in id2label.items()})
    model = create_multimodal_vit_model(
        mode=mode,
        fusion_strategy=fusion_strategy if combined else "early",
        fusion_type=overrides.pop("fusion_type", None),
        fusion_layer=fusion_layer,
        model_name=path,
        num_classes=len(id2label or FER_LABELS),
        problem_type=problem_type,
        freeze_backbone=training_args.strategy == "classifier_only",
        dropout_rate=model_args.classifier_dropout,
        attn_implementation=model_args.attn_implementation,
        **overrides,
    )
    if training_args.activation_checkpointing:
        model.activation_checkpointing_enable(every_n_layers=model_args.activation_checkpointing_every_n_layers)
    return model


def build_image_processor(model_args: ModelArguments, data_args: DataArguments) -> ViTFERImageProcessor:
    """RGB normalised as the backbone checkpoint was trained (its processor config, when it has one; 0.5 / 0.5 as
    the in21k ViT otherwise), thermal through the configured temperature window."""
    statistics = {}
    if model_args.model_name_or_path is not None:
        try:
            backbone, _ = ImageProcessingMixin.get_image_processor_dict(model_args.model_name_or_path)
            statistics = {key: backbone[key] for key in ("image_mean", "image_std") if key in backbone}
        except OSError:
            logger.info("%s has no image processor config: RGB is normalised with mean 0.5, std 0.5.",
                        model_args.model_name_or_path)
    return ViTFERImageProcessor(
        size={"height": data_args.image_size, "width": data_args.image_size},
        thermal_temperature_range=data_args.thermal_temperature_range,
        **statistics,
    )


def load_data(
    modalities: tuple[str, ...],
    data_args: DataArguments,
    training_args: FERTrainingArguments,
    problem_type: str | None = None,
):
    """The train / validation / test splits with `modalities`, the labels read for `problem_type` (see
    `vit_fer.data.targets`); with `--cross_validation`, those of each fold."""
    # Synthetic images are generated at the model's input size when known (224 otherwise; the processor resizes).
    source = data_args.dataset_name or data_args.dataset_dir or synthetic_benchmark(
        data_args.synthetic_dir, data_args.synthetic_num_samples, data_args.synthetic_seed, data_args.image_size or 224
    )
    options = dict(
        layout="dataset" if data_args.dataset_name else "auto",
        rgb_column=data_args.rgb_column,
        thermal_column=data_args.thermal_column,
        label_column=data_args.label_column,
        subject_column=data_args.subject_column,
        modalities=modalities,
        problem_type=problem_type,
        validation_size=data_args.validation_size,
        seed=training_args.seed,
        skip_bad_samples=data_args.skip_bad_samples,
        drop_duplicates=data_args.drop_duplicates,
        label_names=data_args.dataset_label_names,
    )
    with training_args.main_process_first(desc="dataset loading"):
        if data_args.cross_validation is not None:
            folds = load_fer_folds(source, num_folds=parse_num_folds(data_args.cross_validation), **options)
        else:
            folds = [
                load_fer_dataset(
                    source,
                    test_size=data_args.test_size,
                    streaming=data_args.streaming,
                    shuffle_buffer_size=data_args.shuffle_buffer_size,
                    **options,
                )
            ]
    for dataset in folds:
        missing = [split for split in ("train", "validation") if split not in dataset]
        if missing:
            raise ValueError(f"The dataset has no {missing} split; it has {sorted(dataset)}.")
    return folds if data_args.cross_validation is not None else folds[0]


def label_task(dataset, model_args: ModelArguments, data_args: DataArguments) -> tuple[str, dict[int, str]]:
    """The problem type of the loaded labels (`--problem_type`, or transformers' rule) and the model's labels: the
    FER classes, or the regression targets (`--target_names`)."""
    feature = dataset["train"].features["label"]
    problem_type = dataset_problem_type(feature, model_args.problem_type)
    if problem_type != "regression":
        names = feature.names if isinstance(feature, datasets.ClassLabel) else FER_LABELS
    else:
        names = data_args.target_names or [f"LABEL_{index}" for index in range(feature.length)]
        if len(names) != feature.length:
            raise ValueError(f"--target_names names {len(names)} targets; the labels have {feature.length}.")
    return problem_type, dict(enumerate(names))


def setup_logging(training_args: FERTrainingArguments) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(logging.WARNING if training_args.should_log else logging.ERROR)
    # transformers' own bars ("Writing model shards" at every checkpoint, "Loading weights"): the run has its own.
    transformers.utils.logging.disable_progress_bar()


def modalities_of(model_args: ModelArguments) -> tuple[str, ...]:
    mode = model_design(model_args).get("mode", "rgb")
    return MODALITIES if mode == "combined" else (mode,)


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: FERTrainingArguments,
    dataset: datasets.DatasetDict | None = None,
) -> dict:
    """Trains, evaluates and saves one model, on `dataset` (a cross-validation's fold) or the data's splits."""
    setup_logging(training_args)
    set_seed(training_args.seed)

    # The data first: the labels decide the model's problem type and head.
    if dataset is None:
        dataset = load_data(modalities_of(model_args), data_args, training_args, model_args.problem_type)
    problem_type, id2label = label_task(dataset, model_args, data_args)
    if problem_type == "regression" and training_args.metric_for_best_model == "macro_f1":
        training_args.metric_for_best_model = "ccc"  # the default's counterpart (greater is better for both)
    model = build_model(model_args, data_args, training_args, problem_type, id2label)
    # LoRA adapts `model` in place; the Trainer trains it as it is, and the adapters are merged after training.
    lora = trainable = None
    if training_args.strategy == "lora":
        lora = apply_lora(model, training_args.lora_r, training_args.lora_alpha, training_args.lora_dropout,
                          training_args.lora_target_modules)  # fmt: skip
        trainable = dict(zip(("trainable", "total"), count_trainable_parameters(model)))
        trainable["share"] = trainable["trainable"] / trainable["total"]
    output_dir = Path(training_args.output_dir)
    data_args.image_size = model.config.image_size  # the checkpoint's resolution unless --image_size said otherwise
    image_processor = build_image_processor(model_args, data_args)
    classes = problem_type == "single_label_classification" and isinstance(
        dataset["train"].features["label"], datasets.ClassLabel
    )
    collator = FERDataCollator()
    input_names = input_names_for_config(model.config)
    if training_args.cache_features:
        # The frozen encoders see each image once, through the deterministic (evaluation) transform.
        evaluation = FERTransform(image_processor, input_names=input_names)
        batch_size = training_args.per_device_eval_batch_size
        splits = {
            split: cache_encoder_features(model, part.with_transform(evaluation), collator, batch_size)
            for split, part in dataset.items()
        }
    else:
        splits = with_fer_transforms(dataset, image_processor, input_names=input_names)

    # Trainer.push_to_hub (which save_model runs too) would upload its auto-generated card over ours: the run is
    # published by `publish` at the end instead, to a repository created now so that a missing login fails early.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    repo_id = None
    if push_to_hub and training_args.should_save:
        repo_id = create_hub_repo(
            training_args.hub_model_id or output_dir.name,
            private=training_args.hub_private_repo,
            token=training_args.hub_token,
        )

    callbacks = []
    if training_args.strategy == "progressive":
        callbacks.append(
            ProgressiveUnfreezingCallback(
                head_only_epochs=training_args.head_only_epochs,
                layers_per_stage=training_args.layers_per_stage,
                epochs_per_stage=training_args.epochs_per_stage,
            )
        )
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))

    trainer = FERTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=collator,
        processing_class=image_processor,
        compute_metrics=build_compute_metrics(model.config.id2label, problem_type),
        callbacks=callbacks,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    if not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):  # sharded: each process holds its own shard
        check_replicas_in_sync(trainer.model)
    if lora is not None:
        # The adapter alone first (merging removes it); then everything below sees, and saves, the merged model.
        if trainer.is_world_process_zero():
            save_adapter(lora, output_dir / ADAPTER_DIR)
        merge_lora(lora)

    metrics = {**train_result.metrics}
    metrics.update(trainer.evaluate(metric_key_prefix="eval"))
    confusion = prediction = None
    if "test" in splits:
        prediction = trainer.predict(splits["test"], metric_key_prefix="test")
        metrics.update(prediction.metrics)
    if prediction is not None and classes:
        confusion = load_fer_metric().compute(
            predictions=prediction.predictions.argmax(-1),
            references=prediction.label_ids,
            num_labels=model.config.num_labels,
        )["confusion_matrix"]

    # The temperature goes into the config before saving; the reliability diagram shows test before and after.
    if classes:  # a softmax temperature fitted on class indices
        metrics.update(
            calibrate_after_training(
                trainer.model,
                trainer.predict(splits["validation"], metric_key_prefix="eval"),
                prediction,
                output_dir if trainer.is_world_process_zero() else None,
            )
        )
    trainer.save_model()  # the best checkpoint on validation: weights, config with auto_map, code, processor
    if trainer.is_world_process_zero():
        for split in ("train", "eval", "test"):
            split_metrics = {key: value for key, value in metrics.items() if key.startswith(f"{split}_")}
            if split_metrics:
                trainer.save_metrics(split, split_metrics)
        labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
        if confusion is not None:
            plot_confusion_matrix(confusion, labels, output_dir / "confusion_matrix.png", "test split")
        unfreezing = next((c for c in callbacks if isinstance(c, ProgressiveUnfreezingCallback)), None)
        metrics_plotted, loss_name = LEARNING_CURVES.get(problem_type, (None, None))
        plot_learning_curves(
            trainer.state.log_history,
            output_dir / "learning_curves.png",
            **({"metrics": metrics_plotted, "loss_name": loss_name} if metrics_plotted else {}),
            title=f"{design_name(type(model).__name__, model.config.to_dict())}: {output_dir.name}",
            best_step=trainer.state.best_global_step if training_args.load_best_model_at_end else None,
            stages=[stage for stage in unfreezing.stages if stage[0] > 0] if unfreezing else (),
            chance=1 / model.config.num_labels if classes else None,
        )
        if data_args.streaming:
            logger.info("Streamed data: no test overlays or robustness report (they need random access to the test "
                        "split); run `vit-fer explain` / `vit-fer evaluate` on the saved model.")
        elif "test" in dataset and classes and training_args.test_reports:
            # Where the model looked, and how it holds up under degraded inputs, on samples it never saw.
            classifier = FERPipeline(model=trainer.model, image_processor=image_processor)
            write_test_overlays(classifier, dataset["test"], output_dir)
            robustness_report(trainer.model, image_processor, dataset["test"], output_dir, title="test split")
        run_config = {
            "model": asdict(model_args),
            "data": asdict(data_args),
            "training": {**training_args.to_dict(), "push_to_hub": push_to_hub},
            "hardware": describe_hardware(training_args),
            "dataset_name": data_args.dataset_name or data_args.dataset_dir or SYNTHETIC_DATASET[1],
            "vit_fer_version": vit_fer.__version__,
        }
        if trainable is not None:
            run_config["trainable_parameters"] = trainable
        (output_dir / "run_config.json").write_text(json.dumps(run_config, indent=2, default=str))
        write_model_card(output_dir, repo_id=repo_id)
        if training_args.write_space:
            space = write_space(output_dir, output_dir / "space", repo_id=repo_id or training_args.hub_model_id)
            print(f"Wrote a Gradio Space to {space}")
        print_results(metrics, output_dir)
        if repo_id is not None:
            print(f"Published to {publish(output_dir, repo_id, token=training_args.hub_token)}")
    return metrics


def describe_hardware(training_args: FERTrainingArguments) -> str:
    device = training_args.device
    if device.type == "cuda":
        accelerator = torch.cuda.get_device_name(device)
    else:
        accelerator = f"{torch.get_num_threads()} CPU threads ({platform.processor() or platform.machine()})"
    return f"{training_args.world_size} process(es), {accelerator}, torch {torch.__version__}"


def print_results(metrics: dict, output_dir: Path) -> None:
    # The headline scores of the run's problem type: those of its metrics that are present.
    columns = [key for key in ("accuracy", "macro_f1", "uar", "mAP", "kl_divergence", "rmse", "ccc")
               if f"eval_{key}" in metrics]  # fmt: skip
    print(f"\n{'split':<12}" + "".join(f"{key:>15}" for key in columns))
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if f"{prefix}_{columns[0]}" in metrics:
            print(f"{split:<12}" + "".join(f"{metrics[f'{prefix}_{key}']:>15.3f}" for key in columns))
    print(f"— model, card and plots in {output_dir}\n")


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    # A mistake in the arguments, the output folder or the data ends the run in one message (exit status 2).
    with user_errors("train.py"):
        config = check_arguments(model_args, data_args, training_args)
        if not training_args.output_dir_given:
            training_args.output_dir = str(default_output_dir(config))
        if data_args.cross_validation is not None:
            setup_logging(training_args)
            folds = load_data(modalities_of(model_args), data_args, training_args, model_args.problem_type)
            return run_cross_validation(
                folds,
                lambda fold, fold_args: train(model_args, data_args, fold_args, fold),
                training_args,
                num_folds=parse_num_folds(data_args.cross_validation),
                protected=data_sources(data_args),
            )
        with hold_output_dir(training_args, protected=data_sources(data_args)):
            return train(model_args, data_args, training_args)


if __name__ == "__main__":
    main()
