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
    """A file that cannot be used as an image: unreadable, truncated, of an unsupported array type, or holding values
    the model must not see (empty, not finite, the wrong bit depth for its role, transparent). `reason` names the
    kind of problem, for counts by reason."""

    def __init__(self, message: str, reason: str = "unreadable"):
        super().__init__(message)
        self.reason = reason


_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# 16-bit and float frames are radiometric data: converted to RGB they would saturate to white.
_NOT_PHOTO_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def check_image_values(image: Any, modality: str, where: Any) -> None:
    """
    Refuses a decoded image whose values the model would silently misread, naming `where` (its file) and why:
    no pixels; NaN or infinite temperatures; a 16-bit or float frame given as the RGB image (it would turn white);
    transparency (alpha below 255, which converting to RGB or grayscale would drop, changing what is seen).

    Raises:
        `ImageFileError` with `reason` "empty", "not finite", "wrong bit depth" or "transparency".
    """
    if isinstance(image, PIL.Image.Image):
        if image.width == 0 or image.height == 0:
            raise ImageFileError(f"{where}: empty image ({image.width}x{image.height} pixels).", "empty")
        if modality == "rgb" and image.mode in _NOT_PHOTO_MODES:
            raise ImageFileError(
                f"{where}: expected an RGB photo (8-bit), got a {image.mode} single-channel frame — a radiometric "
                "thermal image? Give it as the thermal image.",
                "wrong bit depth",
            )
        alpha = None
        if image.mode in _ALPHA_MODES:
            alpha = image.getchannel("A")
        elif image.mode == "P" and "transparency" in image.info:
            alpha = image.convert("RGBA").getchannel("A")
        if alpha is not None and alpha.getextrema()[0] < 255:
            raise ImageFileError(
                f"{where}: has transparent pixels (alpha below 255), which reading it as {modality} would drop, "
                "changing what the model sees; save it without transparency.",
                "transparency",
            )
        if image.mode == "F":
            image = np.asarray(image)
        else:
            return
    array = np.asarray(image)
    if array.size == 0:
        raise ImageFileError(f"{where}: empty image (array of shape {array.shape}).", "empty")
    if modality == "rgb" and array.dtype not in (np.uint8, np.float32, np.float64, np.float16):
        raise ImageFileError(
            f"{where}: a {array.dtype} array given as the RGB image; RGB photos are 8-bit (uint8).", "wrong bit depth"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        count = int((~np.isfinite(array)).sum())
        raise ImageFileError(f"{where}: {count} values are NaN or infinite.", "not finite")


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


def load_rgb_file(path: str | os.PathLike) -> PIL.Image.Image:
    """Decodes an RGB photo; the image keeps its mode (the processor converts it to RGB).

    Raises:
        `ImageFileError` for an unreadable file, or what [`check_image_values`] refuses (e.g. a 16-bit or float
        single-channel frame: a thermal capture).
    """
    image = _open_image(Path(path), verify=True)
    check_image_values(image, "rgb", path)
    return image


def load_thermal_file(path: str | os.PathLike) -> PIL.Image.Image | np.ndarray:
    """
    Decodes a thermal frame without changing its values: a PIL image (modes L, RGB/P, I;16, F) for image files,
    a numpy array for `.npy` files. Refuses what [`check_image_values`] refuses.
    """
    path = Path(path)
    image = np.asarray(_load_npy(path, mmap=False)) if path.suffix.lower() == ".npy" else _open_image(path, verify=True)
    check_image_values(image, "thermal", path)
    return image


def probe_image_file(path: str | os.PathLike, *, full_decode: bool = True, modality: str | None = None) -> tuple[int, int]:
    """
    Checks that `path` can be decoded and returns its `(width, height)`.

    Args:
        path (`str` or `os.PathLike`):
            Image or `.npy` file.
        full_decode (`bool`, *optional*, defaults to `True`):
            Decode every pixel, which detects truncated files; `False` reads only the header.
        modality (`str`, *optional*):
            The file's role, `"rgb"` or `"thermal"`: with `full_decode`, its values are checked as
            [`check_image_values`] does.

    Raises:
        `ImageFileError` naming the file and the cause.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        array = _load_npy(path, mmap=not full_decode)
        if array.size == 0:
            raise ImageFileError(f"{path}: empty image (array of shape {array.shape}).", "empty")
        if full_decode and modality is not None:
            check_image_values(np.asarray(array), modality, path)
        height, width = (extent for extent in array.shape if extent != 1)
        return width, height
    with _open_image(path, verify=full_decode) as image:
        if image.width == 0 or image.height == 0:
            raise ImageFileError(f"{path}: empty image ({image.width}x{image.height} pixels).", "empty")
        if full_decode and modality is not None:
            check_image_values(image, modality, path)
        return image.size


def load_image(value: Any, modality: str) -> Any:
    """Decodes `value` when it is a file path (per `modality`, `"rgb"` or `"thermal"`); images and arrays pass as
    they are, nested lists (a `datasets` array column) become arrays."""
    if isinstance(value, (str, os.PathLike)):
        return load_rgb_file(value) if modality == "rgb" else load_thermal_file(value)
    if isinstance(value, list):
        return np.asarray(value)
    return value
