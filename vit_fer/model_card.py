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
"""Model cards and Hub repositories of trained vit-fer models.

A training output folder holds everything a Hub repository needs: weights, `config.json` with `auto_map`, the
model and processor code, `preprocessor_config.json`, the run's `run_config.json` and `all_results.json`, and the
plots. [`write_model_card`] turns those files into `README.md` — the YAML metadata (with a `model-index` of the
evaluation results) and the text, from the Jinja templates of `model_cards/`. `vit_fer.hub.publish` uploads the
folder.

Only the model and its image processor are required: a folder saved by your own `Trainer` script (no
`run_config.json`, `all_results.json` with whatever `trainer.save_metrics("all", ...)` wrote, or none) gets a card
that says what the folder does not record.
"""

import argparse
import json
import math
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from safetensors import safe_open
from transformers.image_utils import PILImageResampling

from .configuration_vit_fer import MIN_TRANSFORMERS_VERSION


# Installed wheels carry the templates as `vit_fer/model_cards` (pyproject maps the top-level folder there); a
# source checkout has them at the repository's top.
_PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATE_DIR = next(
    (folder for folder in (_PACKAGE_DIR / "model_cards", _PACKAGE_DIR.parent / "model_cards") if folder.is_dir()),
    _PACKAGE_DIR / "model_cards",
)
LAYOUT_TEMPLATE = "model_card.md.jinja"
ARCHITECTURE_TEMPLATES = {
    "ViTForFER": "vit_for_fer.md.jinja",
    "EarlyFusionViT": "early_fusion_vit.md.jinja",
    "LateFusionViT": "late_fusion_vit.md.jinja",
    "MidFusionViT": "mid_fusion_vit.md.jinja",
}

CARD_NAME = "README.md"
RESULTS_NAME = "all_results.json"
RUN_CONFIG_NAME = "run_config.json"
CROSS_VALIDATION_NAME = "cross_validation.json"
"""A cross-validated run's fold folder records here which fold it is and, once every fold ran, the mean ± std of
the folds' test scores (see `vit_fer.cross_validation`)."""
PLOTS = ("confusion_matrix.png", "learning_curves.png")
OVERLAYS_DIR = "explanations"
"""Subfolder of the explanation overlays of test samples (train.py writes them; the card shows one)."""

# `all_results.json` prefixes (the Trainer's `metric_key_prefix`) and the dataset split each one scored.
SPLITS = {"eval": "validation", "test": "test"}
# (key in all_results.json, name in the card, model-index metric type, metric args)
METRICS = (
    ("accuracy", "accuracy", "accuracy", None),
    ("macro_f1", "macro-F1", "f1", {"average": "macro"}),
    ("uar", "UAR", "recall", {"average": "macro"}),
)
# The same for the other problem types (`config.problem_type`), and what soft labels add to single-label's.
METRICS_BY_PROBLEM_TYPE = {
    "single_label_classification": METRICS,
    "multi_label_classification": (
        ("macro_f1", "macro-F1", "f1", {"average": "macro"}),
        ("mAP", "mAP", "mean_average_precision", None),
    ),
    "regression": (("rmse", "RMSE", "rmse", None), ("ccc", "CCC", "ccc", None)),
}
SOFT_LABEL_METRICS = (
    ("cross_entropy", "cross-entropy (soft labels)", "cross_entropy", None),
    ("kl_divergence", "KL divergence (soft labels)", "kl_divergence", None),
)
# The per-label table of each problem type: its title and the (key prefix, column name) of each score.
PER_LABEL_SCORES = {
    "single_label_classification": ("Recall per expression", (("recall", "recall"),)),
    "multi_label_classification": ("F1 per expression (sigmoid ≥ 0.5)", (("f1", "F1"),)),
    "regression": ("Per target", (("rmse", "RMSE"), ("ccc", "CCC"))),
}
SYNTHETIC_DATASET = ("vit-fer-synthetic", "synthetic RGB-thermal FER (vit-fer synthesize)")
"""model-index dataset type and name of the synthetic benchmark (train.py without --dataset_dir / --dataset_name)."""

SOURCE_URL_KEY = "Source"
"""The `[project.urls]` entry of pyproject.toml that links a card to the project's source code."""
ORIGINAL_IMPLEMENTATION = "https://github.com/reicraftscodes/group-4-dissertation"

DESIGNS = {
    "ViTForFER": lambda config: f"ViT on {config['modality'].upper() if config['modality'] == 'rgb' else 'thermal'} faces",
    "EarlyFusionViT": lambda config: f"Early-fusion ViT, RGB + thermal ({config['fusion_type']})",
    "LateFusionViT": lambda config: "Late-fusion ViT, RGB + thermal ("
    + (
        f"{config['fusion_type']} feature fusion"
        if config.get("fusion_layer") == "feature"
        else f"{config.get('prediction_fusion')} prediction fusion"
    )
    + (", shared encoder)" if config.get("share_encoder") else ")"),
    "MidFusionViT": lambda config: f"Mid-fusion ViT, RGB + thermal ({config['fusion_type']} from layer "
    f"{config['fusion_layer']} of {config['num_hidden_layers']}" + (", shared encoder)" if config.get("share_encoder") else ")"),
}
"""The model's design in words, from its config: the card's title."""

STRATEGY_DESCRIPTIONS = {
    "classifier_only": "encoders frozen, only the head (and fusion modules) trained",
    "full": "encoders and head trained together",
    "progressive": "the head first, then the encoders unfrozen",
    "lora": "LoRA adapters on the frozen encoders (through peft) and the head trained, the adapters then merged into "
    "the saved weights",
}
# (key of run_config["training"], row name): shown when present; every argument is in run_config.json.
TRAINING_ROWS = (
    ("num_train_epochs", "epochs"),
    ("per_device_train_batch_size", "batch size per device"),
    ("gradient_accumulation_steps", "gradient accumulation steps"),
    ("lr_scheduler_type", "learning-rate schedule"),
    ("warmup_steps", "warmup steps (a fraction below 1 is of the total)"),
    ("weight_decay", "weight decay"),
    ("layer_lr_decay", "layer-wise learning-rate decay of the encoders"),
    ("label_smoothing_factor", "label smoothing"),
    ("seed", "seed"),
)
PROGRESSIVE_ROWS = (
    ("head_only_epochs", "epochs training the head only"),
    ("layers_per_stage", "encoder layers released per stage (unset: all at once)"),
    ("epochs_per_stage", "epochs per stage"),
)
def read_json(folder: Path, name: str) -> dict[str, Any]:
    """The JSON object of the run file `folder/name`; a missing or malformed file raises an error naming it."""
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a vit-fer output folder holds {name} (written by train.py).")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}.") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(content).__name__}.")
    return content


def require_key(mapping: dict[str, Any], key: str, where: str) -> Any:
    """`mapping[key]`; a missing key raises a `ValueError` naming `where` and the keys it has."""
    if key not in mapping:
        raise ValueError(f"{where} has no `{key}`; got keys {sorted(mapping)}.")
    return mapping[key]


def source_url() -> str | None:
    """The project's source link, from the installed package's metadata (pyproject.toml `[project.urls]`)."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("vit-fer").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    return next((url.split(",", 1)[1].strip() for url in urls if url.split(",", 1)[0].strip() == SOURCE_URL_KEY), None)


def design_name(architecture: str, config: dict[str, Any]) -> str:
    """The model's design in words, e.g. "Late-fusion ViT, RGB + thermal (attention feature fusion)"."""
    return DESIGNS[architecture](config) + " for facial expression recognition" if architecture in DESIGNS else architecture


def _read_optional(folder: Path, name: str) -> dict[str, Any] | None:
    return read_json(folder, name) if (folder / name).is_file() else None


def _dataset(run_config: dict[str, Any] | None) -> tuple[str | None, str | None, str | None]:
    """(model-index dataset type, dataset name, Hub dataset id or None) of the run; all None when not recorded."""
    if run_config is None:
        return None, None, None
    data_args = require_key(run_config, "data", RUN_CONFIG_NAME)
    hub_dataset = _hub_id(data_args["dataset_name"]) if data_args.get("dataset_name") else None
    dataset_name = require_key(run_config, "dataset_name", RUN_CONFIG_NAME)
    source = data_args.get("dataset_name") or data_args.get("dataset_dir")
    if hub_dataset:
        dataset_type = hub_dataset
    elif source:
        # A local folder or file: its own name, which says more than the `datasets` builder that read it.
        dataset_type = Path(str(source)).stem or str(source)
    else:
        dataset_type = SYNTHETIC_DATASET[0]
    return dataset_type, dataset_name, hub_dataset


def _metric(results: dict[str, Any], key: str) -> float:
    value = require_key(results, key, RESULTS_NAME)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{key}` in {RESULTS_NAME} must be a finite number, got {value!r}.")
    return value


def count_parameters(folder: Path) -> int:
    """Number of parameters stored in the folder's safetensors weights (one file or shards), read from the headers."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no *.safetensors weights.")
    total = 0
    for file in files:
        with safe_open(file, framework="pt") as weights:
            total += sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return total


def _labels(config: dict[str, Any]) -> list[str]:
    id2label = require_key(config, "id2label", "config.json")
    if sorted(int(index) for index in id2label) != list(range(len(id2label))):
        raise ValueError(f"config.json `id2label` keys must be 0 .. {len(id2label) - 1}, got {sorted(id2label)}.")
    return [id2label[str(index)] for index in range(len(id2label))]


def _architecture(config: dict[str, Any]) -> str:
    architectures = require_key(config, "architectures", "config.json")
    if len(architectures) != 1 or architectures[0] not in ARCHITECTURE_TEMPLATES:
        raise ValueError(
            f"config.json `architectures` must name one of {sorted(ARCHITECTURE_TEMPLATES)}, got {architectures!r}."
        )
    return architectures[0]


def _modality(architecture: str, config: dict[str, Any]) -> str:
    return config["modality"] if architecture == "ViTForFER" else "combined"


def _hub_id(name: str) -> str | None:
    """`name` if it is a Hub repository id (not a local folder), else None: metadata may only name Hub repos."""
    if Path(name).exists():
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _problem_type(config: dict[str, Any]) -> str:
    return config.get("problem_type") or "single_label_classification"


def _metrics(config: dict[str, Any], results: dict[str, Any] | None) -> tuple:
    """The card's metrics for the model's problem type (with the soft-label ones when the run scored them)."""
    metrics = METRICS_BY_PROBLEM_TYPE[_problem_type(config)]
    soft = any(key.endswith("_kl_divergence") for key in results or {})
    return metrics + SOFT_LABEL_METRICS if soft else metrics


def _evaluation(
    results: dict[str, Any] | None, labels: list[str], config: dict[str, Any], metrics: tuple
) -> list[dict[str, Any]]:
    """The evaluated splits of `all_results.json`, each with the `metrics` it has and its per-label scores (recall,
    F1 or RMSE and CCC, by problem type; all of them or none: a partial set means an inconsistent file). No file, or
    no evaluation in it: no splits."""
    _, scores = PER_LABEL_SCORES[_problem_type(config)]
    splits = []
    for prefix, split in SPLITS.items():
        if results is None or not any(key.startswith(f"{prefix}_") for key in results):
            continue
        keys = {(label, name): f"{prefix}_{key}_{label}" for label in labels for key, name in scores}
        splits.append(
            {
                "title": split,
                "metrics": {
                    key: _metric(results, f"{prefix}_{key}") for key, *_ in metrics if f"{prefix}_{key}" in results
                },
                "loss": _metric(results, f"{prefix}_loss") if f"{prefix}_loss" in results else None,
                # `_metric` names the first missing score when only some are there.
                "per_label": {cell: _metric(results, key) for cell, key in keys.items()}
                if any(key in results for key in keys.values())
                else {},
            }
        )
    return splits


def _card_data(
    config: dict[str, Any],
    run_config: dict[str, Any] | None,
    splits: list[dict[str, Any]],
    metrics: tuple,
    model_name: str,
    license: str,
) -> ModelCardData:
    """The card's YAML metadata: Hub filters (task, library, tags, base model, datasets) and the `model-index`."""
    architecture = _architecture(config)
    modality = _modality(architecture, config)
    tags = ["vit", "vit-fer", "facial-expression-recognition", "emotion-recognition"]
    if modality in ("thermal", "combined"):
        tags.append("thermal")
    if modality == "combined":
        fusion_tag = {"EarlyFusionViT": "early-fusion", "MidFusionViT": "mid-fusion"}.get(architecture, "late-fusion")
        tags += ["multimodal", "rgb-thermal", fusion_tag]
    dataset_type, dataset_name, hub_dataset = _dataset(run_config)
    eval_results = [
        EvalResult(
            task_type="image-classification",
            task_name="Facial expression recognition",
            dataset_type=dataset_type or "unrecorded",
            dataset_name=dataset_name or "unrecorded dataset",
            dataset_split=split["title"],
            metric_type=metric_type,
            metric_name=f"{name} ({split['title']})",
            metric_args=metric_args,
            metric_value=split["metrics"][key],
        )
        for split in splits
        for key, name, metric_type, metric_args in metrics
        if key in split["metrics"]
    ]
    base_checkpoint = _base_checkpoint(run_config)
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        license=license,
        tags=tags,
        base_model=None if base_checkpoint is None else _hub_id(str(base_checkpoint)),
        datasets=[hub_dataset] if hub_dataset else None,
        metrics=sorted({metric_type for _, _, metric_type, _ in metrics}) if eval_results else None,
        model_name=model_name,
        eval_results=eval_results or None,
        # Not a Hub-defined field: the transformers these files need (they refuse older ones at import).
        transformers_version=f">={MIN_TRANSFORMERS_VERSION}",
    )


def _base_checkpoint(run_config: dict[str, Any] | None) -> str | None:
    if run_config is None:
        return None
    model_args = require_key(run_config, "model", RUN_CONFIG_NAME)
    return require_key(model_args, "model_name_or_path", "run_config model")


def _training_rows(run_config: dict[str, Any], results: dict[str, Any]) -> list[tuple[str, str]]:
    model_args = require_key(run_config, "model", RUN_CONFIG_NAME)
    training = require_key(run_config, "training", RUN_CONFIG_NAME)
    base_checkpoint = require_key(model_args, "model_name_or_path", "run_config model")
    strategy = require_key(training, "strategy", "run_config training")
    if strategy not in STRATEGY_DESCRIPTIONS:
        raise ValueError(
            f"run_config training `strategy` must be one of {sorted(STRATEGY_DESCRIPTIONS)}, got {strategy!r}."
        )
    learning_rate = require_key(training, "learning_rate", "run_config training")
    rows = [
        (
            "base checkpoint",
            "none: encoders randomly initialised (trained from scratch)"
            if base_checkpoint is None
            else f"`{base_checkpoint}`",
        ),
        ("fine-tuning strategy", f"`{strategy}`: {STRATEGY_DESCRIPTIONS[strategy]}"),
        ("learning rate (head and fusion modules" + (", LoRA adapters)" if strategy == "lora" else ")"),
         f"{learning_rate:g}"),
    ]
    if "backbone_lr_multiplier" in training and strategy not in ("classifier_only", "lora"):
        multiplier = training["backbone_lr_multiplier"]
        rows.append(("learning rate (encoders)", f"{learning_rate * multiplier:g} ({multiplier:g} × head)"))
    shown = TRAINING_ROWS + (PROGRESSIVE_ROWS if strategy == "progressive" else ())
    rows += [(name, f"`{training[key]}`") for key, name in shown if key in training]
    if strategy == "lora":
        rows += _lora_rows(run_config, training)
    precision = "bf16 mixed" if training.get("bf16") else "fp16 mixed" if training.get("fp16") else "fp32"
    rows.append(("precision", precision))
    if training.get("load_best_model_at_end"):
        rows.append(("weights", f"the best checkpoint by validation `{training.get('metric_for_best_model')}`"))
    rows.append(("hardware", str(require_key(run_config, "hardware", RUN_CONFIG_NAME))))
    if "train_runtime" in results:
        rows.append(("training time", f"{_metric(results, 'train_runtime') / 60:.1f} min"))
    if "train_loss" in results:
        rows.append(("mean training loss", f"{_metric(results, 'train_loss'):.4f}"))
    rows.append(("vit-fer version", str(require_key(run_config, "vit_fer_version", RUN_CONFIG_NAME))))
    return rows


def _lora_rows(run_config: dict[str, Any], training: dict[str, Any]) -> list[tuple[str, str]]:
    targets = ", ".join(f"`{name}`" for name in require_key(training, "lora_target_modules", "run_config training"))
    rank, alpha = (require_key(training, key, "run_config training") for key in ("lora_r", "lora_alpha"))
    dropout = require_key(training, "lora_dropout", "run_config training")
    counts = require_key(run_config, "trainable_parameters", RUN_CONFIG_NAME)
    trainable, total = (require_key(counts, key, "run_config trainable_parameters") for key in ("trainable", "total"))
    return [
        (
            "LoRA",
            f"rank {rank}, alpha {alpha:g}, dropout {dropout:g} on {targets} of every encoder; merged into the saved "
            "weights (the adapter alone, for peft, in [`adapter/`](adapter))",
        ),
        ("trainable parameters", f"{trainable:,} of {total:,} ({100 * trainable / total:.2f} %): the LoRA matrices, "
                                 "the head and any fusion modules"),
    ]


def _usage_inputs(modality: str) -> str:
    rgb = 'rgb = Image.open("face.jpg")'
    thermal = (
        '# A 16-bit radiometric PNG (counts), a float array in °C, or an 8-bit thermal image; see "Inputs".\n'
        'thermal = Image.open("face_thermal.png")'
    )
    if modality == "rgb":
        return f"{rgb}\ninputs = processor(images=rgb)"
    if modality == "thermal":
        return f"{thermal}\ninputs = processor(thermal_images=thermal)"
    return f"{rgb}\n{thermal}\ninputs = processor(images=rgb, thermal_images=thermal)"


def _trust_context(folder: Path, config: dict[str, Any], results: dict[str, Any] | None) -> dict[str, Any]:
    """What the card says about calibration, explanations and robustness, from the files train.py writes for them
    (each part `None` when its files are absent)."""
    results = results or {}
    temperature = config.get("calibration_temperature", 1.0)
    calibration = None
    if temperature != 1.0 or (folder / "reliability_diagram.png").is_file():
        calibration = {
            "temperature": f"{temperature:.3f}",
            "rows": [
                (name, f"{results[f'test_{key}']:.4f}", f"{results[f'test_calibrated_{key}']:.4f}")
                for key, name in (("ece", "ECE (15 bins)"), ("nll", "NLL"), ("brier", "Brier score"))
                if f"test_{key}" in results and f"test_calibrated_{key}" in results
            ],
            "has_diagram": (folder / "reliability_diagram.png").is_file(),
        }
    overlays = sorted((folder / OVERLAYS_DIR).glob("*.png"))
    robustness = None
    if (folder / "robustness.json").is_file():
        report = read_json(folder, "robustness.json")
        rows = [
            (f"without {modality}", "–", f"not possible: {result['skipped']}" if "skipped" in result else f"{result['accuracy']:.3f}")
            for modality, result in report["missing_modality"].items()
        ]
        rows += [
            (
                result["description"],
                result["unit"],
                ", ".join(f"{s:g} → {a:.3f}" for s, a in zip(result["severities"], result["accuracy"], strict=True)),
            )
            for result in report["corruptions"].values()
        ]
        robustness = {
            "clean": f"{report['clean']['accuracy']:.3f}",
            "num_samples": report["num_samples"],
            "rows": rows,
            "has_plot": (folder / "robustness.png").is_file(),
        }
    return {
        "calibration": calibration,
        "overlay": overlays[0].relative_to(folder).as_posix() if overlays else None,
        "robustness": robustness,
    }


def _cross_validation(folder: Path, metrics: tuple) -> dict[str, Any] | None:
    """What the card says about the cross-validation the model is a fold of (`None` outside one)."""
    record = _read_optional(folder, CROSS_VALIDATION_NAME)
    if record is None:
        return None
    summary = record.get("summary", {})
    return {
        "scheme": record["scheme"],
        "fold": record["fold"],
        "num_folds": record["num_folds"],
        "test_subjects": ", ".join(record["test_subjects"]) if record.get("test_subjects") else None,
        "rows": [
            (name, f"{summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}")
            for key, name, *_ in metrics
            if key in summary
        ],
    }


def _environment() -> jinja2.Environment:
    if not (TEMPLATE_DIR / LAYOUT_TEMPLATE).is_file():
        raise FileNotFoundError(f"Model card templates not found in {TEMPLATE_DIR}; reinstall vit-fer.")
    # `ModelCard.from_template`'s whitespace settings (jinja2's defaults), with StrictUndefined: a template variable
    # the builder does not provide is an error, not an empty string in a card.
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), undefined=jinja2.StrictUndefined)


def card_context(
    output_dir: str | Path, repo_id: str | None = None, license: str = "apache-2.0"
) -> tuple[ModelCardData, dict[str, Any]]:
    """
    The metadata and the template variables of a trained checkpoint folder's card (see [`build_model_card`]):
    `ModelCard.from_template(card_data, template_path=TEMPLATE_DIR / LAYOUT_TEMPLATE, **context)` renders it.
    The arguments are those of [`build_model_card`].

    Returns:
        `(card_data, context)`: the card's [`~huggingface_hub.ModelCardData`] and the layout's other variables.
    """
    folder = Path(output_dir)
    config = read_json(folder, "config.json")
    processor = read_json(folder, "preprocessor_config.json")
    run_config = _read_optional(folder, RUN_CONFIG_NAME)
    results = _read_optional(folder, RESULTS_NAME)

    architecture = _architecture(config)
    modality = _modality(architecture, config)
    labels = _labels(config)
    metrics = _metrics(config, results)
    splits = _evaluation(results, labels, config, metrics)
    per_label_title, per_label_scores = PER_LABEL_SCORES[_problem_type(config)]
    model_name = repo_id.split("/")[-1] if repo_id else folder.resolve().name
    card_data = _card_data(config, run_config, splits, metrics, model_name, license)

    concat_head = config.get("fusion_type") == "concat" and (
        config.get("fusion_layer") == "feature" or architecture == "MidFusionViT"
    )
    # Mid fusion `add` at layer 0 sums the images: one encoder, as early fusion.
    one_stream = config.get("share_encoder") or (config.get("fusion_type") == "add" and config.get("fusion_layer") == 0)
    context = {
        "model_name": model_name,
        "model_id": repo_id or f"path/to/{model_name}",
        "architecture": architecture,
        "config": config,
        "processor": processor,
        "resample_name": PILImageResampling(processor["resample"]).name.lower(),
        "labels": labels,
        "modality": modality,
        "modality_phrase": {
            "rgb": "an RGB image",
            "thermal": "a thermal (long-wave infrared) image",
            "combined": "a registered pair of RGB and thermal images",
        }[modality],
        "reads_rgb": modality in ("rgb", "combined"),
        "reads_thermal": modality in ("thermal", "combined"),
        "num_parameters": count_parameters(folder),
        "num_encoders": 2 if architecture in ("LateFusionViT", "MidFusionViT") and not one_stream else 1,
        "num_classifier_heads": 2 if config.get("fusion_layer") == "prediction" else 1,
        "head_input_size": config["hidden_size"] * (2 if concat_head else 1),
        "title": f"{repo_id}: {design_name(architecture, config)}" if repo_id else design_name(architecture, config),
        "run_recorded": run_config is not None,
        "base_checkpoint": _base_checkpoint(run_config),
        "dataset_name": _dataset(run_config)[1] or "data this folder does not record",
        "vit_fer_version": run_config["vit_fer_version"] if run_config else None,
        "training_rows": _training_rows(run_config, results or {}) if run_config else [],
        "min_transformers_version": MIN_TRANSFORMERS_VERSION,
        "source_url": source_url(),
        "original_implementation": ORIGINAL_IMPLEMENTATION,
        "usage_inputs": _usage_inputs(modality),
        # The image-classification pipeline feeds its images to the processor as `images`, i.e. RGB.
        "has_pipeline": modality == "rgb",
        "problem_type": _problem_type(config),
        "metric_rows": [(name, key) for key, name, *_ in metrics] + [("loss", "loss")],
        "per_label_title": per_label_title,
        "per_label_columns": [name for _, name in per_label_scores],
        "splits": [
            {
                "title": split["title"],
                "scores": {
                    **{key: f"{split['metrics'][key]:.4f}" if key in split["metrics"] else "–" for key, *_ in metrics},
                    "loss": "–" if split["loss"] is None else f"{split['loss']:.4f}",
                },
                "per_label": {cell: f"{value:.4f}" for cell, value in split["per_label"].items()},
            }
            for split in splits
        ],
        "cross_validation": _cross_validation(folder, metrics),
        "has_confusion_matrix": (folder / PLOTS[0]).is_file(),
        "has_learning_curves": (folder / PLOTS[1]).is_file(),
        **_trust_context(folder, config, results),
    }
    context["architecture_section"] = _environment().get_template(ARCHITECTURE_TEMPLATES[architecture]).render(context)
    return card_data, context


def build_model_card(output_dir: str | Path, repo_id: str | None = None, license: str = "apache-2.0") -> ModelCard:
    """
    Builds the model card of a trained checkpoint folder from its files.

    Args:
        output_dir (`str` or `Path`):
            The training output folder: `config.json`, `*.safetensors`, `preprocessor_config.json`,
            `run_config.json`, `all_results.json` and, when present, the plots `confusion_matrix.png` and
            `learning_curves.png`.
        repo_id (`str`, *optional*):
            The Hub repository the card will live in: it names the model in the `model-index` and in the usage
            snippet. Defaults to the folder's name.
        license (`str`, *optional*, defaults to `"apache-2.0"`):
            The model's license (a Hub license id), e.g. to match the license of the training data.

    Returns:
        [`~huggingface_hub.ModelCard`] with the metadata and text; `str(card)` is the README.md content.
    """
    card_data, context = card_context(output_dir, repo_id=repo_id, license=license)
    # The variables `ModelCard.from_template` passes: the YAML metadata as `card_data`, and its fields.
    content = _environment().get_template(LAYOUT_TEMPLATE).render(
        card_data=card_data.to_yaml(), **{**card_data.to_dict(), **context}
    )
    return ModelCard(content)


def write_model_card(output_dir: str | Path, repo_id: str | None = None, license: str = "apache-2.0") -> Path:
    """Writes the model card of [`build_model_card`] to `output_dir/README.md` and returns its path."""
    path = Path(output_dir) / CARD_NAME
    build_model_card(output_dir, repo_id=repo_id, license=license).save(path)
    return path


def add_card_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vit-fer card`."""
    parser.add_argument("output_dir", type=Path, help="The training output folder.")
    parser.add_argument("--repo_id", help="The Hub repository the card is for (usage snippet, model-index name).")
    parser.add_argument("--license", default="apache-2.0", help="Hub license id of the model (default: apache-2.0).")


def run_card_command(args: argparse.Namespace) -> int:
    """`vit-fer card`: writes OUTPUT_DIR/README.md."""
    try:
        path = write_model_card(args.output_dir, repo_id=args.repo_id, license=args.license)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"vit-fer card: {error}") from error
    print(f"Wrote {path}")
    return 0


CARD_HELP = "(Re)generate README.md, the model card, of a trained checkpoint folder."


__all__ = [
    "add_card_arguments",
    "build_model_card",
    "card_context",
    "count_parameters",
    "read_json",
    "require_key",
    "run_card_command",
    "write_model_card",
]
