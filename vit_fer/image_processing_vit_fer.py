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
"""Image processor of the vit-fer models: RGB faces, thermal faces, or registered RGB + thermal pairs.

Every input is first brought to a float32 array of shape `(3, height, width)` with values in [0, 1] (its "unit"
form), then resized to `size` and normalised with the modality's mean and standard deviation. Thermal inputs reach
the unit form according to what they hold:

| thermal input                                          | read as                    | unit form                |
|--------------------------------------------------------|----------------------------|--------------------------|
| 8-bit grayscale (PIL "L", `uint8` 2-D array)           | display intensity          | /255, replicated to 3 ch |
| 8-bit pseudo-colour (PIL "RGB"/"P", `uint8` 3-channel) | palette-rendered intensity | /255, channels kept      |
| 16-bit grayscale PNG/TIFF (PIL "I;16", `uint16` array) | raw radiometric counts     | counts → °C → window     |
| float array or float TIFF (PIL "F", `.npy`)            | temperature in °C          | window, replicated       |

Raw counts become °C as `counts * thermal_raw_scale + thermal_raw_offset`; the default (0.01, -273.15) is the
centi-kelvin convention of FLIR's TLinear radiometric streams. Temperatures map linearly from
`thermal_temperature_range` (°C) to [0, 1] and saturate outside it, as a camera's display range does.

Resizing works on float32 planes (PIL mode "F"), so 16-bit and float thermal precision is never quantised to 8 bits.

This file travels with every checkpoint (`trust_remote_code=True`): it imports nothing but transformers, numpy,
PIL and torch.
"""

from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import PIL.Image
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor, get_size_dict
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import ImagesKwargs
from transformers.utils import TensorType, is_torch_available


if is_torch_available():
    import torch

ImageLike = Union[PIL.Image.Image, np.ndarray, "torch.Tensor"]

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

DEFAULT_INPUT_NAMES = {"rgb": "pixel_values", "thermal": "thermal_pixel_values"}
"""Model argument fed by each modality in the fusion models — also the key under which the image processor returns
that modality."""


def input_names_for_config(config: Any) -> dict[str, str]:
    """
    Which model argument each modality feeds: a single-modality `ViTFERConfig` reads its modality as
    `pixel_values`; the fusion models read RGB as `pixel_values` and thermal as `thermal_pixel_values`.
    """
    modality = getattr(config, "modality", None)
    return {modality: "pixel_values"} if modality is not None else dict(DEFAULT_INPUT_NAMES)


class ViTFERImageProcessorKwargs(ImagesKwargs, total=False):
    """Keyword arguments of [`ViTFERImageProcessor`] beyond the standard image ones."""

    thermal_image_mean: float | list[float] | tuple[float, ...] | None
    thermal_image_std: float | list[float] | tuple[float, ...] | None
    thermal_temperature_range: list[float] | tuple[float, float] | None
    thermal_raw_scale: float | None
    thermal_raw_offset: float | None


def _as_float_triple(name: str, value: float | Sequence[float]) -> tuple[float, float, float]:
    values = (value,) * 3 if isinstance(value, (int, float)) else tuple(value)
    if len(values) != 3:
        raise ValueError(f"`{name}` must be a float or 3 floats (one per channel), got {value!r}.")
    return tuple(float(v) for v in values)


def _to_numpy(image: ImageLike, argument: str) -> np.ndarray | PIL.Image.Image:
    if isinstance(image, PIL.Image.Image | np.ndarray):
        return image
    if is_torch_available() and isinstance(image, torch.Tensor):
        return image.detach().cpu().numpy()
    raise TypeError(
        f"`{argument}` must hold PIL images, numpy arrays or torch tensors, got {type(image).__name__}. "
        "Decode files first (vit_fer.thermal.load_thermal_file / load_rgb_file)."
    )


def _channels_last(array: np.ndarray, argument: str) -> np.ndarray:
    """Returns `array` as (height, width, channels), accepting 2-D, channels-first and channels-last layouts."""
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3:
        if array.shape[-1] in (1, 3):
            return array
        if array.shape[0] in (1, 3):
            return np.moveaxis(array, 0, -1)
    raise ValueError(
        f"`{argument}` must hold 2-D images or 3-D images with 1 or 3 channels (first or last), got an array of "
        f"shape {array.shape}. Pass a batch as a list of images."
    )


def _batch(images: Any, argument: str) -> list:
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"`{argument}` is an empty list.")
        return list(images)
    return [images]


class ViTFERImageProcessor(BaseImageProcessor):
    r"""
    Image processor for [`ViTForFER`], [`EarlyFusionViT`] and [`LateFusionViT`]: turns RGB images into
    `pixel_values` and thermal images into `thermal_pixel_values`, each of shape `(batch, 3, height, width)`.

    Args:
        do_resize (`bool`, *optional*, defaults to `True`):
            Whether to resize images to `size`.
        size (`dict[str, int]` or `int`, *optional*, defaults to `{"height": 224, "width": 224}`):
            Output size; an int means a square.
        resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BILINEAR`):
            Resampling filter used for resizing.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to normalise the unit-range images with the mean and standard deviation below.
        image_mean (`float` or `tuple[float, float, float]`, *optional*, defaults to 0.5):
            Per-channel mean of RGB images (google/vit-base-patch16-224-in21k was trained with 0.5).
        image_std (`float` or `tuple[float, float, float]`, *optional*, defaults to 0.5):
            Per-channel standard deviation of RGB images.
        thermal_image_mean (`float` or `tuple[float, float, float]`, *optional*, defaults to 0.5):
            Per-channel mean of unit-range thermal images.
        thermal_image_std (`float` or `tuple[float, float, float]`, *optional*, defaults to 0.5):
            Per-channel standard deviation of unit-range thermal images.
        thermal_temperature_range (`tuple[float, float]`, *optional*, defaults to `(20.0, 40.0)`):
            Temperature window in °C mapped to [0, 1] for radiometric (16-bit counts) and float temperature inputs;
            temperatures outside it saturate.
        thermal_raw_scale (`float`, *optional*, defaults to 0.01):
            Scale of the counts → °C conversion of 16-bit radiometric images: `°C = counts * scale + offset`.
        thermal_raw_offset (`float`, *optional*, defaults to -273.15):
            Offset of the counts → °C conversion. The defaults read counts as centi-kelvin (FLIR TLinear).

    Example:

    ```python
    >>> import numpy as np
    >>> from PIL import Image
    >>> from vit_fer import ViTFERImageProcessor

    >>> processor = ViTFERImageProcessor(size=32)
    >>> rgb = Image.new("RGB", (64, 64))
    >>> temperatures = np.full((64, 64), 34.0, dtype=np.float32)  # °C
    >>> inputs = processor(images=rgb, thermal_images=temperatures)
    >>> inputs["pixel_values"].shape, inputs["thermal_pixel_values"].shape
    (torch.Size([1, 3, 32, 32]), torch.Size([1, 3, 32, 32]))
    ```"""

    model_input_names = ["pixel_values", "thermal_pixel_values"]
    valid_kwargs = ViTFERImageProcessorKwargs

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | int | None = None,
        resample: PILImageResampling | int = PILImageResampling.BILINEAR,
        do_normalize: bool = True,
        image_mean: float | Sequence[float] = 0.5,
        image_std: float | Sequence[float] = 0.5,
        thermal_image_mean: float | Sequence[float] = 0.5,
        thermal_image_std: float | Sequence[float] = 0.5,
        thermal_temperature_range: Sequence[float] = (20.0, 40.0),
        thermal_raw_scale: float = 0.01,
        thermal_raw_offset: float = -273.15,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.do_resize = do_resize
        self.size = get_size_dict(size if size is not None else {"height": 224, "width": 224})
        if set(self.size) != {"height", "width"}:
            raise ValueError(f"`size` must be an int or a dict with 'height' and 'width', got {size!r}.")
        self.resample = PILImageResampling(resample)
        self.do_normalize = do_normalize
        self.image_mean = _as_float_triple("image_mean", image_mean)
        self.image_std = _as_float_triple("image_std", image_std)
        self.thermal_image_mean = _as_float_triple("thermal_image_mean", thermal_image_mean)
        self.thermal_image_std = _as_float_triple("thermal_image_std", thermal_image_std)
        for name, std in (("image_std", self.image_std), ("thermal_image_std", self.thermal_image_std)):
            if min(std) <= 0:
                raise ValueError(f"`{name}` must be positive, got {std}.")
        window = tuple(float(t) for t in thermal_temperature_range)
        if len(window) != 2 or not window[0] < window[1]:
            raise ValueError(
                "`thermal_temperature_range` must be (low, high) in °C with low < high, got "
                f"{thermal_temperature_range!r}."
            )
        self.thermal_temperature_range = window
        if thermal_raw_scale == 0:
            raise ValueError("`thermal_raw_scale` must be non-zero (°C = counts * scale + offset).")
        self.thermal_raw_scale = float(thermal_raw_scale)
        self.thermal_raw_offset = float(thermal_raw_offset)

    def preprocess(
        self,
        images: ImageLike | list[ImageLike] | None = None,
        thermal_images: ImageLike | list[ImageLike] | None = None,
        return_tensors: str | TensorType | None = "pt",
    ) -> BatchFeature:
        """
        Preprocesses a batch (or a single image) of RGB images, thermal images, or registered pairs of both.

        Args:
            images (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them, *optional*):
                RGB images: PIL images of any mode convertible to RGB, `uint8` arrays, or float arrays in [0, 1].
            thermal_images (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them, *optional*):
                Thermal images in one of the formats of the module docstring.
            return_tensors (`str` or `TensorType`, *optional*, defaults to `"pt"`):
                `"pt"` for torch tensors, `"np"` for numpy arrays.

        Returns:
            [`BatchFeature`] with `pixel_values` (from `images`) and/or `thermal_pixel_values` (from
            `thermal_images`).
        """
        if images is None and thermal_images is None:
            raise ValueError("Pass `images` (RGB), `thermal_images`, or both; got neither.")
        rgb = None if images is None else [self.rgb_to_unit(image) for image in _batch(images, "images")]
        thermal = (
            None
            if thermal_images is None
            else [self.thermal_to_unit(image) for image in _batch(thermal_images, "thermal_images")]
        )
        if rgb is not None and thermal is not None and len(rgb) != len(thermal):
            raise ValueError(
                f"`images` and `thermal_images` must pair up one to one, got {len(rgb)} RGB and {len(thermal)} "
                "thermal images."
            )
        return self.preprocess_unit(rgb, thermal, return_tensors=return_tensors)

    # The base class's `__call__` needs `images`; ours takes either modality alone.
    __call__ = preprocess

    def preprocess_unit(
        self,
        images: Sequence[np.ndarray] | None = None,
        thermal_images: Sequence[np.ndarray] | None = None,
        return_tensors: str | TensorType | None = "pt",
    ) -> BatchFeature:
        """
        Resizes and normalises images already in unit form (float `(3, height, width)` arrays in [0, 1], as
        returned by [`~ViTFERImageProcessor.rgb_to_unit`] and [`~ViTFERImageProcessor.thermal_to_unit`]).
        Training-time augmentation works on the unit form and finishes here, so there is one normalisation path.
        """
        data = {}
        for key, arrays, mean, std in (
            ("pixel_values", images, self.image_mean, self.image_std),
            ("thermal_pixel_values", thermal_images, self.thermal_image_mean, self.thermal_image_std),
        ):
            if arrays is not None:
                data[key] = np.stack([self._finish(array, mean, std, key) for array in arrays])
        return BatchFeature(data=data, tensor_type=return_tensors)

    def rgb_to_unit(self, image: ImageLike) -> np.ndarray:
        """Converts one RGB image to float32 `(3, height, width)` in [0, 1]."""
        image = _to_numpy(image, "images")
        if isinstance(image, PIL.Image.Image):
            image = np.asarray(image.convert("RGB"))
        array = _channels_last(image, "images")
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
        elif np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32)
            if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
                raise ValueError(
                    "Float RGB `images` must hold finite values in [0, 1], got values in "
                    f"[{np.nanmin(array)}, {np.nanmax(array)}]."
                )
        else:
            raise ValueError(f"RGB `images` must be uint8 or float in [0, 1], got dtype {array.dtype}.")
        if array.shape[-1] == 1:
            array = np.repeat(array, 3, axis=-1)
        return np.ascontiguousarray(np.moveaxis(array, -1, 0))

    def thermal_to_unit(self, image: ImageLike) -> np.ndarray:
        """Converts one thermal image (a format of the module docstring) to float32 `(3, height, width)` in [0, 1]."""
        image = _to_numpy(image, "thermal_images")
        if isinstance(image, PIL.Image.Image):
            image = self._thermal_pil_to_numpy(image)
        array = _channels_last(image, "thermal_images")
        if array.dtype == np.uint8:
            unit = array.astype(np.float32) / 255.0
        elif array.shape[-1] != 1:
            raise ValueError(
                "3-channel `thermal_images` must be 8-bit pseudo-colour (uint8); 16-bit counts and float temperatures "
                f"must be single-channel, got {array.shape[-1]} channels of dtype {array.dtype}."
            )
        elif array.dtype == np.uint16:
            unit = self.temperature_to_unit(
                array.astype(np.float64) * self.thermal_raw_scale + self.thermal_raw_offset
            )
        elif np.issubdtype(array.dtype, np.floating):
            unit = self.temperature_to_unit(array)
        else:
            raise ValueError(
                "`thermal_images` must be uint8 (grayscale or pseudo-colour), uint16 (raw radiometric counts) or "
                f"float (°C), got dtype {array.dtype}."
            )
        if unit.shape[-1] == 1:
            unit = np.repeat(unit, 3, axis=-1)
        return np.ascontiguousarray(np.moveaxis(unit, -1, 0))

    def temperature_to_unit(self, temperature: np.ndarray) -> np.ndarray:
        """Maps temperatures in °C through `thermal_temperature_range` to float32 in [0, 1] (saturating outside)."""
        temperature = np.asarray(temperature, dtype=np.float64)
        if not np.isfinite(temperature).all():
            raise ValueError("Thermal temperatures must be finite; found NaN or infinite values.")
        low, high = self.thermal_temperature_range
        return np.clip((temperature - low) / (high - low), 0.0, 1.0).astype(np.float32)

    @staticmethod
    def _thermal_pil_to_numpy(image: PIL.Image.Image) -> np.ndarray:
        if image.mode in _SIXTEEN_BIT_MODES:
            return np.asarray(image).astype(np.uint16)
        if image.mode == "I":
            # Some decoders widen 16-bit PNGs to 32-bit "I"; anything beyond 16 bits is not a radiometric frame.
            array = np.asarray(image)
            if array.min() < 0 or array.max() > np.iinfo(np.uint16).max:
                raise ValueError(
                    "32-bit integer thermal images must hold 16-bit radiometric counts in [0, 65535], got values in "
                    f"[{array.min()}, {array.max()}]."
                )
            return array.astype(np.uint16)
        if image.mode in ("L", "F", "RGB"):
            return np.asarray(image)
        if image.mode == "P":
            return np.asarray(image.convert("RGB"))
        if image.mode in ("LA", "RGBA"):
            alpha = np.asarray(image.getchannel("A"))
            if alpha.min() < 255:
                raise ValueError(
                    f"Thermal image of mode {image.mode} has transparent pixels; a thermal frame must be opaque."
                )
            return np.asarray(image.convert(image.mode[:-1]))
        raise ValueError(
            f"Unsupported thermal image mode {image.mode!r}: expected L (8-bit gray), RGB/P (8-bit pseudo-colour), "
            "I;16 (16-bit counts) or F (°C)."
        )

    def _finish(self, array: np.ndarray, mean: tuple, std: tuple, key: str) -> np.ndarray:
        if array.ndim != 3 or array.shape[0] != 3:
            raise ValueError(
                f"Unit-form images for `{key}` must be (3, height, width) arrays, got shape {array.shape}."
            )
        array = array.astype(np.float32, copy=False)
        height, width = self.size["height"], self.size["width"]
        if self.do_resize and array.shape[1:] != (height, width):
            array = np.stack(
                [
                    np.asarray(
                        PIL.Image.fromarray(np.ascontiguousarray(plane)).resize(
                            (width, height), resample=self.resample
                        )
                    )
                    for plane in array
                ]
            )
        if self.do_normalize:
            array = (array - np.asarray(mean, dtype=np.float32)[:, None, None]) / np.asarray(std, dtype=np.float32)[
                :, None, None
            ]
        return array


# Saving a processor always writes this file beside its config, so `AutoImageProcessor.from_pretrained(...,
# trust_remote_code=True)` works for every checkpoint without vit-fer installed.
ViTFERImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = ["ViTFERImageProcessor"]
