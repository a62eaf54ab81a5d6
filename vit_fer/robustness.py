"""How a trained model holds up when the inputs are not those it was trained on: a missing modality, thermal noise,
thermal drift, RGB brightness and blur, and RGB-thermal misregistration, each at several severities.

[`robustness_report`] scores a model (accuracy and macro-F1, with the package's `evaluate` FER metric) on a split
(a `datasets.Dataset` from `load_fer_dataset`) under each condition, and writes `robustness.json` and
`robustness.png`. The corruptions act on the images in the processor's unit form (decoded, in [0, 1], at the
stored resolution, before resizing and normalisation), so that every image format goes through them alike:

- thermal quantities in °C are converted through the processor's temperature window (`thermal_temperature_range`):
  for radiometric inputs (16-bit counts, float °C) this is a shift of the temperatures themselves, saturating at
  the window's ends as the processor does; for 8-bit thermal images it assumes the window maps the 8-bit range;
- pixel quantities (blur sigma, shift) are in pixels of the stored images.
"""

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageFilter
import torch

from .evaluation import load_fer_metric
from .explain import model_modalities
from .thermal import load_image
from .transforms import DEFAULT_INPUT_NAMES, input_names_for_config


logger = logging.getLogger(__name__)

REPORT_NAME = "robustness.json"
PLOT_NAME = "robustness.png"


@dataclass(frozen=True)
class Corruption:
    """One kind of input degradation: the modality it hits, its severities (in `unit`), and what it does to a pair
    of unit-form images `{"rgb": (3, h, w), "thermal": (3, h, w)}` at one severity, given the °C → unit factor."""

    name: str
    modality: str
    description: str
    unit: str
    severities: tuple[float, ...]
    apply: Callable[[dict[str, np.ndarray], float, float, np.random.Generator], dict[str, np.ndarray]]
    identity: float = 0.0
    """The severity that leaves the images as they are (the clean point of the plot)."""


def _thermal_noise(pair, sigma, per_degree, rng):
    noise = rng.normal(0.0, sigma * per_degree, size=pair["thermal"].shape[1:]).astype(np.float32)
    return {**pair, "thermal": np.clip(pair["thermal"] + noise[None], 0.0, 1.0)}


def _thermal_offset(pair, degrees, per_degree, rng):
    return {**pair, "thermal": np.clip(pair["thermal"] + degrees * per_degree, 0.0, 1.0).astype(np.float32)}


def _rgb_brightness(pair, factor, per_degree, rng):
    return {**pair, "rgb": np.clip(pair["rgb"] * factor, 0.0, 1.0).astype(np.float32)}


def _rgb_blur(pair, sigma, per_degree, rng):
    image = PIL.Image.fromarray(np.round(np.moveaxis(pair["rgb"], 0, -1) * 255).astype(np.uint8))
    blurred = np.asarray(image.filter(PIL.ImageFilter.GaussianBlur(radius=sigma)), dtype=np.float32) / 255.0
    return {**pair, "rgb": np.ascontiguousarray(np.moveaxis(blurred, -1, 0))}


def _misregistration(pair, shift, per_degree, rng):
    # The thermal frame moves right by `shift` pixels; the uncovered edge repeats the border column.
    shift = int(shift)
    shifted = np.pad(pair["thermal"], ((0, 0), (0, 0), (shift, 0)), mode="edge")[:, :, : pair["thermal"].shape[2]]
    return {**pair, "thermal": np.ascontiguousarray(shifted)}


CORRUPTIONS = (
    Corruption("thermal_noise", "thermal", "thermal sensor noise", "°C (std of Gaussian noise per pixel)",
               (0.25, 0.5, 1.0, 2.0), _thermal_noise),
    Corruption("thermal_offset", "thermal", "thermal offset (ambient / calibration drift)", "°C added everywhere",
               (-4.0, -2.0, 2.0, 4.0), _thermal_offset),
    Corruption("rgb_brightness", "rgb", "RGB brightness", "factor on the RGB values", (0.4, 0.7, 1.4, 2.0),
               _rgb_brightness, identity=1.0),
    Corruption("rgb_blur", "rgb", "RGB blur (defocus)", "Gaussian sigma (pixels)", (0.5, 1.0, 2.0, 3.0), _rgb_blur),
    Corruption("misregistration", "pair", "RGB-thermal misregistration", "thermal shift (pixels)", (1, 2, 4, 8),
               _misregistration),
)  # fmt: skip


def _score(metric, logits: torch.Tensor, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    results = metric.compute(predictions=logits.argmax(-1).numpy(), references=labels, num_labels=num_labels)
    return {"accuracy": results["accuracy"], "macro_f1": results["macro_f1"]}


@torch.no_grad()
def _logits(model, image_processor, units: list[dict[str, np.ndarray]], batch_size: int) -> torch.Tensor:
    names = input_names_for_config(model.config)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    logits = []
    for start in range(0, len(units), batch_size):
        batch = units[start : start + batch_size]
        present = [m for m in names if m in batch[0]]
        features = image_processor.preprocess_unit(
            images=[u["rgb"] for u in batch] if "rgb" in present else None,
            thermal_images=[u["thermal"] for u in batch] if "thermal" in present else None,
            return_tensors="pt",
        )
        inputs = {names[m]: features[DEFAULT_INPUT_NAMES[m]].to(device=device, dtype=dtype) for m in present}
        logits.append(model(**inputs).logits.float().cpu())
    return torch.cat(logits)


def robustness_report(
    model,
    image_processor,
    dataset,
    output_dir: str | Path | None = None,
    batch_size: int = 64,
    seed: int = 0,
    title: str | None = None,
) -> dict:
    """
    Accuracy and macro-F1 of `model` on `dataset` clean, with each modality missing, and under every corruption of
    `CORRUPTIONS` at each severity.

    Args:
        model: a vit-fer model (or one loaded by remote code), run in eval mode (its mode is restored).
        image_processor: its `ViTFERImageProcessor`.
        dataset (`datasets.Dataset`): a split as `load_fer_dataset` returns it (image columns, `label`).
        output_dir (`str` or `Path`, *optional*): where to write `robustness.json` and `robustness.png`.
        batch_size (`int`, *optional*, defaults to 64): evaluation batch size.
        seed (`int`, *optional*, defaults to 0): seed of the noise.
        title (`str`, *optional*): what was evaluated, for the plot's title (e.g. "test split, 200 pairs").

    Returns:
        The report: `clean`, `missing_modality` (per modality: scores, or `skipped` with the model's reason),
        `corruptions` (per corruption: `modality`, `unit`, `severities`, `accuracy`, `macro_f1` lists); corruptions
        of a modality the model does not read are left out.
    """
    modalities = model_modalities(model.config)
    missing_columns = [m for m in modalities if m not in dataset.column_names]
    if missing_columns:
        raise ValueError(f"The model reads {list(modalities)}, but the data has no {missing_columns} images.")
    low, high = image_processor.thermal_temperature_range
    per_degree = 1.0 / (high - low)
    to_unit = {"rgb": image_processor.rgb_to_unit, "thermal": image_processor.thermal_to_unit}
    units = [{m: to_unit[m](load_image(sample[m], m)) for m in modalities} for sample in dataset]
    labels = np.asarray(dataset["label"])
    num_labels = model.config.num_labels
    metric = load_fer_metric()

    was_training = model.training
    model.eval()
    try:
        report = {
            "num_samples": len(units),
            "num_labels": num_labels,
            "modalities": list(modalities),
            "clean": _score(metric, _logits(model, image_processor, units, batch_size), labels, num_labels),
            "missing_modality": {},
            "corruptions": {},
        }
        if len(modalities) == 2:
            for absent in modalities:
                kept = [{m: u[m] for m in u if m != absent} for u in units]
                try:
                    logits = _logits(model, image_processor, kept, batch_size)
                except ValueError as error:  # the model's own reason, e.g. early fusion needs both images
                    report["missing_modality"][absent] = {"skipped": str(error)}
                else:
                    report["missing_modality"][absent] = _score(metric, logits, labels, num_labels)
        else:
            reason = f"single-modality model: it reads {modalities[0]} only, so it has no other modality to lose."
            report["missing_modality"] = {modalities[0]: {"skipped": reason}}
        for corruption in CORRUPTIONS:
            needs = ("rgb", "thermal") if corruption.modality == "pair" else (corruption.modality,)
            if not set(needs) <= set(modalities):
                continue
            scores = {"accuracy": [], "macro_f1": []}
            for severity in corruption.severities:
                rng = np.random.default_rng([seed, CORRUPTIONS.index(corruption)])
                corrupted = [corruption.apply(u, severity, per_degree, rng) for u in units]
                result = _score(metric, _logits(model, image_processor, corrupted, batch_size), labels, num_labels)
                for key in scores:
                    scores[key].append(result[key])
            report["corruptions"][corruption.name] = {
                "description": corruption.description,
                "modality": corruption.modality,
                "unit": corruption.unit,
                "identity": corruption.identity,
                "severities": list(corruption.severities),
                **scores,
            }
    finally:
        model.train(was_training)
    if output_dir is not None:
        folder = Path(output_dir)
        (folder / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
        plot_robustness(report, folder / PLOT_NAME, title=title)
    return report


def plot_robustness(report: Mapping, path: str | Path, title: str | None = None) -> Path:
    """Writes the report as one figure: a panel per corruption (accuracy and macro-F1 against severity, the clean
    scores dashed, chance dotted) and a panel for the missing modalities."""
    from .plots import plt

    corruptions = report["corruptions"]
    panels = len(corruptions) + 1
    columns = min(3, panels)
    rows = -(-panels // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.3 * columns, 3.4 * rows), squeeze=False)
    axes = axes.ravel()
    clean = report["clean"]
    for axis, (name, result) in zip(axes, corruptions.items()):
        # The clean score sits at the severity that changes nothing, so each curve reads from "as trained" outwards.
        order = np.argsort([*result["severities"], result["identity"]])
        severities = np.asarray([*result["severities"], result["identity"]])[order]
        for key, marker, colour, name_shown in (("accuracy", "o-", "tab:blue", "accuracy"),
                                                 ("macro_f1", "s-", "tab:orange", "macro-F1")):
            values = np.asarray([*result[key], clean[key]])[order]
            axis.plot(severities, values, marker, color=colour, label=name_shown)
        axis.plot([result["identity"]], [clean["accuracy"]], "*", color="black", markersize=11, label="clean (as trained)")
        axis.set_xticks(severities, [f"{s:g}" for s in severities])
        axis.set_xlabel(result["unit"], fontsize=9)
        axis.set_title(result["description"], fontsize=10)
        axis.set_ylim(0, 1.02)
    missing_axis = axes[len(corruptions)]
    names, accuracy, macro_f1, notes = ["none (clean)"], [clean["accuracy"]], [clean["macro_f1"]], []
    for modality, result in report["missing_modality"].items():
        if "skipped" in result:
            notes.append(f"without {modality}: not possible")
            continue
        names.append(f"{modality} missing")
        accuracy.append(result["accuracy"])
        macro_f1.append(result["macro_f1"])
    missing_axis.set_title("missing modality", fontsize=10)
    missing_axis.set_ylim(0, 1.02)
    if len(names) > 1:
        positions = np.arange(len(names))
        missing_axis.bar(positions - 0.2, accuracy, width=0.4, color="tab:blue", label="accuracy")
        missing_axis.bar(positions + 0.2, macro_f1, width=0.4, color="tab:orange", label="macro-F1")
        missing_axis.set_xticks(positions, names, fontsize=9)
    else:
        missing_axis.set_xticks([])
    if notes:
        reason = next(r["skipped"] for r in report["missing_modality"].values() if "skipped" in r).split(":")[0]
        missing_axis.text(0.5, 0.5, "\n".join(notes) + f"\n({reason})", transform=missing_axis.transAxes,
                          ha="center", va="center", fontsize=9, wrap=True,
                          bbox={"facecolor": "white", "edgecolor": "gray"})
    for axis in axes[: len(corruptions) + 1]:
        axis.axhline(1 / report["num_labels"], color="gray", linestyle=":", linewidth=1, label="chance")
        axis.set_ylabel("score")
    for axis in axes[len(corruptions) + 1 :]:
        axis.axis("off")
    axes[0].legend(fontsize=8, loc="lower left")
    figure.suptitle(f"Robustness{f' — {title}' if title else ''} ({report['num_samples']} samples)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def load_model_split(model: str | Path, data: str | Path, split: str, config):
    """
    The `split` ("train", "validation", "test" or "all") of `data` (anything `load_fer_dataset` reads) with the
    modalities and label order of the model of `config`. When the folder `model` holds the `run_config.json` of its
    training, the data is split as that training split it (sizes and seed): "test" is then the test split the model
    never saw.
    """
    import datasets

    from .data import SPLITS, load_fer_dataset

    if split not in (*SPLITS, "all"):
        raise ValueError(f"`split` must be one of {(*SPLITS, 'all')}, got {split!r}.")
    run_config_path = Path(model) / "run_config.json"
    settings = {}
    if run_config_path.is_file():
        run_config = json.loads(run_config_path.read_text())
        settings = {key: run_config["data"][key] for key in ("validation_size", "test_size")}
        settings["seed"] = run_config["training"]["seed"]
        logger.info("Splitting %s as the model's training did: %s", data, settings)
    dataset = load_fer_dataset(data, modalities=model_modalities(config), **settings)
    if split == "all":
        part = datasets.concatenate_datasets(list(dataset.values()))
    elif split not in dataset:
        raise ValueError(f"{data} has no {split} split; it has {sorted(dataset)}.")
    else:
        part = dataset[split]
    if part.features["label"].names != [config.id2label[index] for index in range(config.num_labels)]:
        part = part.align_labels_with_mapping(config.label2id, "label")
    return part


def evaluate_saved_model(
    model: str | Path,
    data: str | Path,
    split: str = "test",
    output_dir: str | Path | None = None,
    device: str | None = None,
) -> tuple[dict, Path]:
    """
    The robustness report of a saved model (folder or Hub id, loaded like the pipeline, remote code included) on a
    split of `data` (see [`load_model_split`]).

    Returns:
        `(report, output folder)`: the report is written there (default: the model folder when it is local, else the
        current directory).
    """
    from .inference import load_fer_pipeline

    classifier = load_fer_pipeline(model, device=device)
    part = load_model_split(model, data, split, classifier.model.config)
    folder = Path(output_dir) if output_dir is not None else Path(model) if Path(model).is_dir() else Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    report = robustness_report(
        classifier.model, classifier.image_processor, part, folder, title=f"{split} split of {Path(data).name}"
    )
    return report, folder


def format_report(report: Mapping) -> str:
    """The report as text: the clean scores, then each condition's accuracy and macro-F1."""
    clean = report["clean"]
    lines = [f"{'condition':<44}{'accuracy':>10}{'macro-F1':>10}", f"{'clean':<44}{clean['accuracy']:>10.3f}{clean['macro_f1']:>10.3f}"]
    for modality, result in report["missing_modality"].items():
        if "skipped" in result:
            lines.append(f"{modality + ' missing':<44}  not possible: {result['skipped']}")
        else:
            lines.append(f"{modality + ' missing':<44}{result['accuracy']:>10.3f}{result['macro_f1']:>10.3f}")
    for name, result in report["corruptions"].items():
        for severity, accuracy, macro_f1 in zip(result["severities"], result["accuracy"], result["macro_f1"], strict=True):
            condition = f"{name} {severity:g} ({result['unit'].split(' (')[0]})"
            lines.append(f"{condition:<44}{accuracy:>10.3f}{macro_f1:>10.3f}")
    return "\n".join(lines)
