"""Every thermal format, written to a file as a camera would and decoded, gives the expected processor tensor."""

import numpy as np
import pytest
import torch
from PIL import Image

from vit_fer.image_processing_vit_fer import ViTFERImageProcessor
from vit_fer.thermal import ImageFileError, load_image, load_thermal_file, probe_image_file


HEIGHT, WIDTH = 12, 16


def temperature_map() -> np.ndarray:
    """°C from 15 to 45 across the width: inside and beyond both ends of the default 20-40 °C window."""
    return np.tile(np.linspace(15.0, 45.0, WIDTH, dtype=np.float32), (HEIGHT, 1))


def unit_processor(**kwargs) -> ViTFERImageProcessor:
    # Same size as the inputs and no normalisation: the output is the unit form itself.
    return ViTFERImageProcessor(size={"height": HEIGHT, "width": WIDTH}, do_normalize=False, **kwargs)


def window(temperature: np.ndarray, low: float = 20.0, high: float = 40.0) -> torch.Tensor:
    unit = torch.from_numpy(np.clip((temperature - low) / (high - low), 0, 1)).float()
    return unit.expand(3, HEIGHT, WIDTH)


def decode(path, **kwargs) -> torch.Tensor:
    return unit_processor(**kwargs)(thermal_images=load_thermal_file(path))["thermal_pixel_values"][0]


def test_float_temperature_npy(tmp_path):
    np.save(tmp_path / "frame.npy", temperature_map())
    torch.testing.assert_close(decode(tmp_path / "frame.npy"), window(temperature_map()))


@pytest.mark.parametrize("extension", ["png", "tiff"])
def test_sixteen_bit_radiometric_counts(tmp_path, extension):
    counts = np.round((temperature_map() + 273.15) * 100).astype(np.uint16)  # centi-kelvin, FLIR TLinear
    Image.fromarray(counts).save(tmp_path / f"frame.{extension}")
    assert load_thermal_file(tmp_path / f"frame.{extension}").mode == "I;16"
    # Counts are 0.01 K apart: the decoded window may be off by half a count.
    torch.testing.assert_close(
        decode(tmp_path / f"frame.{extension}"), window(temperature_map()), atol=0.005 / 20, rtol=0
    )


def test_raw_conversion_and_window_are_configurable(tmp_path):
    counts = np.round((temperature_map() + 273.15) * 10).astype(np.uint16)  # deci-kelvin
    Image.fromarray(counts).save(tmp_path / "frame.png")
    decoded = decode(tmp_path / "frame.png", thermal_raw_scale=0.1, thermal_temperature_range=(25.0, 35.0))
    torch.testing.assert_close(decoded, window(temperature_map(), 25.0, 35.0), atol=0.05 / 10, rtol=0)


def test_float_tiff_is_read_as_celsius(tmp_path):
    Image.fromarray(temperature_map()).save(tmp_path / "frame.tiff")
    torch.testing.assert_close(decode(tmp_path / "frame.tiff"), window(temperature_map()))


def test_eight_bit_grayscale_is_replicated(tmp_path):
    gray = np.arange(HEIGHT * WIDTH, dtype=np.uint8).reshape(HEIGHT, WIDTH)
    Image.fromarray(gray).save(tmp_path / "frame.png")
    expected = torch.from_numpy(gray / 255.0).float().expand(3, HEIGHT, WIDTH)
    torch.testing.assert_close(decode(tmp_path / "frame.png"), expected)


def test_eight_bit_pseudo_colour_keeps_its_channels(tmp_path):
    palette = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(palette).save(tmp_path / "frame.png")
    expected = torch.from_numpy(palette / 255.0).float().permute(2, 0, 1)
    torch.testing.assert_close(decode(tmp_path / "frame.png"), expected)
    # A palette-indexed PNG ("P" mode) gives the colours it indexes.
    Image.fromarray(palette).quantize(colors=16).save(tmp_path / "indexed.png")
    indexed = np.asarray(Image.open(tmp_path / "indexed.png").convert("RGB"))
    torch.testing.assert_close(
        decode(tmp_path / "indexed.png"), torch.from_numpy(indexed / 255.0).float().permute(2, 0, 1)
    )


def test_torch_and_numpy_inputs_agree():
    processor = unit_processor()
    temperatures = temperature_map()
    from_numpy = processor(thermal_images=temperatures)["thermal_pixel_values"]
    from_torch = processor(thermal_images=torch.from_numpy(temperatures))["thermal_pixel_values"]
    torch.testing.assert_close(from_torch, from_numpy, atol=0, rtol=0)


def test_pickled_npy_is_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageFileError, match="objects.npy"):
        load_thermal_file(tmp_path / "objects.npy")


def test_multi_channel_npy_is_refused(tmp_path):
    np.save(tmp_path / "rgb.npy", np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32))
    with pytest.raises(ImageFileError, match="single-channel"):
        load_thermal_file(tmp_path / "rgb.npy")


@pytest.mark.parametrize("full_decode", [True, False])
def test_probe_reads_sizes(tmp_path, full_decode):
    np.save(tmp_path / "frame.npy", temperature_map()[None])  # (1, H, W) is a single-channel frame too
    Image.fromarray(temperature_map()).save(tmp_path / "frame.tiff")
    assert probe_image_file(tmp_path / "frame.npy", full_decode=full_decode) == (WIDTH, HEIGHT)
    assert probe_image_file(tmp_path / "frame.tiff", full_decode=full_decode) == (WIDTH, HEIGHT)


def test_truncated_files_are_caught_by_a_full_decode(tmp_path):
    noise = np.random.default_rng(0).integers(0, 2**16, (64, 64), dtype=np.uint16)
    Image.fromarray(noise).save(tmp_path / "frame.png")
    data = (tmp_path / "frame.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageFileError, match="truncated.png"):
        probe_image_file(tmp_path / "truncated.png")
    with pytest.raises(ImageFileError, match="truncated.png"):
        load_thermal_file(tmp_path / "truncated.png")
    np.save(tmp_path / "frame.npy", temperature_map())
    data = (tmp_path / "frame.npy").read_bytes()
    (tmp_path / "truncated.npy").write_bytes(data[: len(data) - 40])
    with pytest.raises(ImageFileError, match="truncated.npy"):
        probe_image_file(tmp_path / "truncated.npy")


def test_load_image_passes_decoded_values_through(tmp_path):
    image = Image.new("L", (4, 4))
    assert load_image(image, "thermal") is image
    np.testing.assert_array_equal(load_image([[1, 2], [3, 4]], "thermal"), np.array([[1, 2], [3, 4]]))
    Image.new("RGB", (5, 3)).save(tmp_path / "face.jpg")
    assert load_image(str(tmp_path / "face.jpg"), "rgb").size == (5, 3)
