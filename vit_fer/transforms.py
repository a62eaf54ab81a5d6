"""Lazy per-sample transforms of FER datasets and the collator that batches them for the `Trainer`.

Training transforms draw one geometric augmentation per sample (random resized crop, horizontal flip, small
rotation) and apply it identically to the RGB and thermal images, so a registered pair stays registered; photometric
jitter is drawn per modality. Evaluation transforms only resize. Both end in the image processor's
`preprocess_unit`, the one normalisation path shared with inference.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import PIL.Image
import torch

from .image_processing_vit_fer import DEFAULT_INPUT_NAMES, ViTFERImageProcessor, input_names_for_config
from .thermal import load_image


@dataclass(frozen=True)
class AugmentationConfig:
    """
    Ranges of the training augmentation.

    Args:
        crop_scale (`tuple[float, float]`): Area fraction of the random resized crop.
        crop_ratio (`tuple[float, float]`): Aspect-ratio range of the crop.
        flip_probability (`float`): Probability of a horizontal flip.
        max_rotation (`float`): Largest rotation in degrees, either way.
        brightness, contrast, saturation (`float`): RGB jitter: factors drawn from `[1 - x, 1 + x]`.
        thermal_gain (`float`): Thermal gain jitter: factor drawn from `[1 - x, 1 + x]` (calibration drift).
        thermal_offset (`float`): Thermal offset jitter in unit range (0.03 is 0.6 °C of a 20 °C window).
    """

    crop_scale: tuple[float, float] = (0.75, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    flip_probability: float = 0.5
    max_rotation: float = 10.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    thermal_gain: float = 0.05
    thermal_offset: float = 0.03


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


@dataclass(frozen=True)
class Geometry:
    """One draw of the geometric augmentation: a crop box in fractions of the image, a flip, a rotation."""

    box: tuple[float, float, float, float]
    flip: bool
    rotation: float

    @classmethod
    def draw(
        cls, config: AugmentationConfig, width: int, height: int, generator: torch.Generator | None = None
    ) -> "Geometry":
        log_low, log_high = math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1])
        box = (0.0, 0.0, 1.0, 1.0)
        for _ in range(10):
            area = _uniform(*config.crop_scale, generator) * width * height
            ratio = math.exp(_uniform(log_low, log_high, generator))
            crop_width, crop_height = math.sqrt(area * ratio) / width, math.sqrt(area / ratio) / height
            if crop_width <= 1.0 and crop_height <= 1.0:
                left = _uniform(0.0, 1.0 - crop_width, generator)
                top = _uniform(0.0, 1.0 - crop_height, generator)
                box = (left, top, crop_width, crop_height)
                break
        flip = torch.rand((), generator=generator).item() < config.flip_probability
        rotation = _uniform(-config.max_rotation, config.max_rotation, generator)
        return cls(box=box, flip=flip, rotation=rotation)

    def apply(self, unit: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
        """Warps a `(channels, height, width)` float array to `size` `(height, width)`."""
        planes = [PIL.Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32)) for plane in unit]
        in_width, in_height = planes[0].size
        out_height, out_width = size
        left, top, crop_width, crop_height = self.box
        # The affine warp samples without low-pass filtering: shrink first with an antialiased resize, so that the
        # crop meets the output at about one input pixel per output pixel.
        reduction = min(crop_width * in_width / out_width, crop_height * in_height / out_height)
        if reduction > 1.0:
            in_width, in_height = max(1, round(in_width / reduction)), max(1, round(in_height / reduction))
            planes = [plane.resize((in_width, in_height), resample=resample) for plane in planes]
        # Output pixel → fraction of the output (mirrored when flipped) → input pixel → rotation about the crop
        # centre; PIL's affine transform wants this output-to-input map.
        to_fraction = np.array(
            [
                [(-1.0 if self.flip else 1.0) / out_width, 0.0, 1.0 if self.flip else 0.0],
                [0.0, 1.0 / out_height, 0.0],
                [0, 0, 1],
            ]
        )
        to_input = np.array(
            [[crop_width * in_width, 0.0, left * in_width], [0.0, crop_height * in_height, top * in_height], [0, 0, 1]]
        )
        centre_x, centre_y = (left + crop_width / 2) * in_width, (top + crop_height / 2) * in_height
        cos, sin = math.cos(math.radians(self.rotation)), math.sin(math.radians(self.rotation))
        rotate = np.array(
            [
                [cos, -sin, centre_x - cos * centre_x + sin * centre_y],
                [sin, cos, centre_y - sin * centre_x - cos * centre_y],
                [0, 0, 1],
            ]
        )
        coefficients = tuple((rotate @ to_input @ to_fraction)[:2].ravel().tolist())
        return np.stack(
            [
                np.asarray(
                    plane.transform(
                        (out_width, out_height), PIL.Image.Transform.AFFINE, coefficients, resample=resample
                    )
                )
                for plane in planes
            ]
        )


def _jitter_rgb(unit: np.ndarray, config: AugmentationConfig, generator: torch.Generator | None) -> np.ndarray:
    gray = unit.mean(axis=0, keepdims=True)
    saturation = _uniform(1 - config.saturation, 1 + config.saturation, generator)
    unit = gray + (unit - gray) * saturation
    contrast = _uniform(1 - config.contrast, 1 + config.contrast, generator)
    unit = unit.mean() + (unit - unit.mean()) * contrast
    unit = unit * _uniform(1 - config.brightness, 1 + config.brightness, generator)
    return np.clip(unit, 0.0, 1.0).astype(np.float32)


def _jitter_thermal(unit: np.ndarray, config: AugmentationConfig, generator: torch.Generator | None) -> np.ndarray:
    gain = _uniform(1 - config.thermal_gain, 1 + config.thermal_gain, generator)
    offset = _uniform(-config.thermal_offset, config.thermal_offset, generator)
    return np.clip(unit * gain + offset, 0.0, 1.0).astype(np.float32)


class PairedAugmentation:
    """
    Training augmentation of a registered pair: one geometry for both modalities, photometric jitter per modality.

    Args:
        size (`tuple[int, int]`): Output `(height, width)`.
        config (`AugmentationConfig`, *optional*): Augmentation ranges.
        resample (`int`, *optional*, defaults to bilinear): PIL resampling filter.
    """

    def __init__(
        self,
        size: tuple[int, int],
        config: AugmentationConfig | None = None,
        resample: int = PIL.Image.Resampling.BILINEAR,
    ):
        self.size = size
        self.config = config or AugmentationConfig()
        self.resample = resample

    def __call__(
        self, units: Mapping[str, np.ndarray], generator: torch.Generator | None = None
    ) -> dict[str, np.ndarray]:
        """Augments `{modality: (3, height, width) unit array}`; all arrays must have one size."""
        shapes = {modality: unit.shape[1:] for modality, unit in units.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"A pair must have one image size to stay registered, got {shapes}.")
        height, width = next(iter(shapes.values()))
        geometry = Geometry.draw(self.config, width, height, generator)
        jitter = {"rgb": _jitter_rgb, "thermal": _jitter_thermal}
        return {
            modality: jitter[modality](geometry.apply(unit, self.size, self.resample), self.config, generator)
            for modality, unit in units.items()
        }


class FERTransform:
    """
    A `datasets` transform (`with_transform` / `set_transform`) turning a batch of `rgb` / `thermal` / `label`
    columns into model inputs and `labels`.

    Args:
        image_processor (`ViTFERImageProcessor`): Decodes values to unit form, resizes and normalises.
        train (`bool`, *optional*, defaults to `False`): Apply the paired training augmentation.
        input_names (`Mapping[str, str]`, *optional*): Model argument of each modality to feed (see
            `input_names_for_config`); defaults to both modalities as the fusion models read them.
        augmentation (`AugmentationConfig`, *optional*): Augmentation ranges for training.
        generator (`torch.Generator`, *optional*): Source of the augmentation draws; defaults to torch's global
            generator, which the `Trainer` seeds (and seeds per data-loader worker).
        columns (`Mapping[str, str]`, *optional*): The column holding each modality's images; defaults to the
            modality's name (`rgb`, `thermal`). [`with_fer_transforms`] names them after the model inputs instead.
    """

    def __init__(
        self,
        image_processor: ViTFERImageProcessor,
        *,
        train: bool = False,
        input_names: Mapping[str, str] | None = None,
        augmentation: AugmentationConfig | None = None,
        generator: torch.Generator | None = None,
        columns: Mapping[str, str] | None = None,
    ):
        self.image_processor = image_processor
        self.input_names = dict(input_names or DEFAULT_INPUT_NAMES)
        self.columns = {modality: (columns or {}).get(modality, modality) for modality in self.input_names}
        unknown = set(self.input_names) - set(DEFAULT_INPUT_NAMES)
        if unknown:
            raise ValueError(f"`input_names` keys must be modalities {tuple(DEFAULT_INPUT_NAMES)}, got {sorted(unknown)}.")
        size = (image_processor.size["height"], image_processor.size["width"])
        self.augmentation = PairedAugmentation(size, augmentation, int(image_processor.resample)) if train else None
        self.generator = generator

    def __call__(self, batch: Mapping[str, Sequence[Any]]) -> dict[str, list]:
        missing = [column for column in self.columns.values() if column not in batch]
        if missing:
            raise ValueError(
                f"The model reads {sorted(self.input_names)}, but the dataset has no {missing} column "
                f"(columns: {sorted(batch)}). A Trainer with remove_unused_columns=True drops every column that is "
                "not a forward() argument before this transform reads it: prepare the splits with "
                "`with_fer_transforms` (which names the image columns after the model inputs), or set "
                "remove_unused_columns=False in TrainingArguments."
            )
        to_unit = {"rgb": self.image_processor.rgb_to_unit, "thermal": self.image_processor.thermal_to_unit}
        units: dict[str, list[np.ndarray]] = {modality: [] for modality in self.input_names}
        for index in range(len(next(iter(batch.values())))):
            sample = {}
            for modality in self.input_names:
                value = batch[self.columns[modality]][index]
                if value is None:
                    raise ValueError(f"Sample {index} of the batch has no {modality} image.")
                sample[modality] = to_unit[modality](load_image(value, modality))
            if self.augmentation is not None:
                sample = self.augmentation(sample, self.generator)
            for modality, unit in sample.items():
                units[modality].append(unit)
        features = self.image_processor.preprocess_unit(
            images=units.get("rgb"), thermal_images=units.get("thermal"), return_tensors="pt"
        )
        result = {name: list(features[DEFAULT_INPUT_NAMES[modality]]) for modality, name in self.input_names.items()}
        if "label" in batch:
            result["labels"] = list(batch["label"])
        return result


# Samples a streamed split transforms at once: the tensors of one such batch are all that the transform holds.
STREAM_TRANSFORM_BATCH_SIZE = 16


def with_fer_transforms(
    dataset: datasets.DatasetDict | datasets.IterableDatasetDict,
    image_processor: ViTFERImageProcessor,
    *,
    input_names: Mapping[str, str] | None = None,
    augmentation: AugmentationConfig | None = None,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """
    The splits of `dataset` with lazy transforms: the paired training augmentation on `train`, deterministic
    evaluation transforms on the others. They are ready for any `transformers.Trainer`, `remove_unused_columns`
    on or off: the image columns are renamed after the model inputs they become (`rgb` → `pixel_values`,
    `thermal` → `thermal_pixel_values` for a fusion model), so the Trainer, which keeps only the columns named like
    `forward()`'s arguments (and `label`), keeps them for the transforms to read. Streamed splits
    (`IterableDataset`, from `load_fer_dataset(..., streaming=True)`) get the same transforms through
    `IterableDataset.map`, after the train split's shuffle buffer (which so holds paths, not tensors), and yield
    only the model inputs and `labels`.
    """
    names = dict(input_names or DEFAULT_INPUT_NAMES)
    splits = {}
    for split, part in dataset.items():
        renames = {modality: name for modality, name in names.items() if modality in part.column_names}
        transform = FERTransform(
            image_processor, train=split == "train", input_names=names, augmentation=augmentation, columns=renames
        )
        renamed = part.rename_columns(renames)
        if isinstance(part, datasets.IterableDataset):
            splits[split] = renamed.map(
                transform,
                batched=True,
                batch_size=STREAM_TRANSFORM_BATCH_SIZE,
                remove_columns=list(renamed.column_names),
            )
        else:
            splits[split] = renamed.with_transform(transform)
    return type(dataset)(splits)


class FERDataCollator:
    """
    Stacks transformed samples into a batch: each model input (`pixel_values`, `thermal_pixel_values`) as a
    float tensor and `labels` as a long tensor of class indices, or a float tensor `(batch, n)` of vector labels
    (multi-hot, class probabilities, regression targets). Samples must carry the same inputs: a batch mixing samples
    with and without a modality is an error.
    """

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("Cannot collate an empty list of samples.")
        keys = set(features[0])
        for index, feature in enumerate(features):
            if set(feature) != keys:
                raise ValueError(
                    f"Sample {index} carries {sorted(feature)} but sample 0 carries {sorted(keys)}: a batch must "
                    "not mix samples with and without a modality."
                )
            empty = [key for key, value in feature.items() if value is None]
            if empty:
                raise ValueError(f"Sample {index} has no value for {empty}.")
        batch = {
            key: torch.stack([torch.as_tensor(feature[key], dtype=torch.float32) for feature in features])
            for key in sorted(keys - {"labels"})
        }
        if "labels" in keys:
            labels = [feature["labels"] for feature in features]
            if isinstance(labels[0], (int, np.integer)) or (torch.is_tensor(labels[0]) and labels[0].ndim == 0):
                batch["labels"] = torch.tensor([int(label) for label in labels], dtype=torch.long)
            else:  # multi-hot, class probabilities or regression targets (`vit_fer.data.targets`)
                batch["labels"] = torch.stack([torch.as_tensor(label, dtype=torch.float32) for label in labels])
        return batch
