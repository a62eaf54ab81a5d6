"""Decoding of image files as the cameras write them, keeping what the thermal formats carry.

PIL keeps 16-bit PNG/TIFF frames as mode "I;16" (raw radiometric counts) and float TIFFs as mode "F" (°C);
`.npy` files hold float temperature maps in °C (or integer frames) and are read without unpickling. Nothing is
converted here: [`ViTFERImageProcessor`] interprets the decoded values (see its module docstring for the table).
"""

import os
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File extensions decoded by PIL, for both modalities."""

THERMAL_EXTENSIONS = IMAGE_EXTENSIONS + (".npy",)
"""File extensions accepted for thermal frames: images plus numpy temperature arrays."""

_NPY_DTYPES = ("float16", "float32", "float64", "uint8", "uint16")


class ImageFileError(ValueError):
    """A file that cannot be used as an image: unreadable, truncated, or of an unsupported array type."""


def is_image_file(path: str | os.PathLike, modality: str) -> bool:
    """Whether `path` has an extension this project decodes for `modality` (`"rgb"` or `"thermal"`)."""
    extensions = THERMAL_EXTENSIONS if modality == "thermal" else IMAGE_EXTENSIONS
    return Path(path).suffix.lower() in extensions


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        # `allow_pickle=False`: a `.npy` of objects would run arbitrary code when unpickled.
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError, EOFError) as error:
        raise ImageFileError(f"{path}: unreadable numpy array ({error}).") from error
    squeezed_ndim = sum(1 for extent in array.shape if extent != 1)
    if array.dtype.name not in _NPY_DTYPES or array.ndim not in (2, 3) or squeezed_ndim != 2:
        raise ImageFileError(
            f"{path}: a thermal .npy must be a single-channel 2-D array of float (°C), uint16 (counts) or uint8, got "
            f"dtype {array.dtype} and shape {array.shape}."
        )
    return array


def _open_image(path: Path, verify: bool) -> PIL.Image.Image:
    try:
        image = PIL.Image.open(path)
        if verify:
            # `load()` decodes every pixel, which is what exposes truncated files (`verify()` alone misses them
            # for JPEG).
            image.load()
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise ImageFileError(f"{path}: unreadable or truncated image ({error}).") from error
    return image


# 16-bit and float frames are radiometric data: converted to RGB they would saturate to white.
_NOT_PHOTO_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def load_rgb_file(path: str | os.PathLike) -> PIL.Image.Image:
    """Decodes an RGB photo; the image keeps its mode (the processor converts it to RGB).

    Raises:
        `ImageFileError` for an unreadable file, or a 16-bit or float single-channel frame (a thermal capture).
    """
    image = _open_image(Path(path), verify=True)
    if image.mode in _NOT_PHOTO_MODES:
        raise ImageFileError(
            f"{path}: expected an RGB photo (8-bit), got a {image.mode} single-channel frame — a radiometric thermal "
            "image? Give it as the thermal image."
        )
    return image


def load_thermal_file(path: str | os.PathLike) -> PIL.Image.Image | np.ndarray:
    """
    Decodes a thermal frame without changing its values: a PIL image (modes L, RGB/P, I;16, F) for image files,
    a numpy array for `.npy` files.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return np.asarray(_load_npy(path, mmap=False))
    return _open_image(path, verify=True)


def probe_image_file(path: str | os.PathLike, *, full_decode: bool = True) -> tuple[int, int]:
    """
    Checks that `path` can be decoded and returns its `(width, height)`.

    Args:
        path (`str` or `os.PathLike`):
            Image or `.npy` file.
        full_decode (`bool`, *optional*, defaults to `True`):
            Decode every pixel, which detects truncated files; `False` reads only the header.

    Raises:
        `ImageFileError` naming the file and the cause.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        array = _load_npy(path, mmap=not full_decode)
        height, width = (extent for extent in array.shape if extent != 1)
        return width, height
    with _open_image(path, verify=full_decode) as image:
        return image.size


def load_image(value: Any, modality: str) -> Any:
    """Decodes `value` when it is a file path (per `modality`, `"rgb"` or `"thermal"`); images and arrays pass as
    they are, nested lists (a `datasets` array column) become arrays."""
    if isinstance(value, (str, os.PathLike)):
        return load_rgb_file(value) if modality == "rgb" else load_thermal_file(value)
    if isinstance(value, list):
        return np.asarray(value)
    return value
