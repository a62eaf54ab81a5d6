"""ViTFERImageProcessor: outputs, normalisation, save/load round trips (also as Hub remote code), input errors."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoImageProcessor

# From the package, as users import it: its first use registers the processor with AutoImageProcessor (importing
# the submodule directly registers nothing, and the round trip below would then ask for trust_remote_code).
from vit_fer import ViTFERImageProcessor


def custom_processor():
    return ViTFERImageProcessor(
        size={"height": 24, "width": 40},
        image_mean=(0.4, 0.5, 0.6),
        image_std=(0.2, 0.25, 0.3),
        thermal_image_mean=0.3,
        thermal_image_std=0.4,
        thermal_temperature_range=(25.0, 38.0),
        thermal_raw_scale=0.1,
        thermal_raw_offset=-273.15,
    )


def sample_inputs():
    generator = np.random.default_rng(0)
    rgb = Image.fromarray(generator.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    counts = generator.integers(2950, 3100, (30, 50)).astype(np.uint16)  # deci-kelvin: 21.85 to 36.85 °C
    return rgb, counts


def test_rgb_and_thermal_outputs_are_normalised_unit_images():
    processor = ViTFERImageProcessor(size=16)
    colour = (200, 100, 50)
    temperature = 31.0
    outputs = processor(
        images=[Image.new("RGB", (20, 20), colour)] * 2,
        thermal_images=[np.full((20, 20), temperature, dtype=np.float32)] * 2,
    )
    assert set(outputs) == {"pixel_values", "thermal_pixel_values"}
    assert outputs["pixel_values"].shape == outputs["thermal_pixel_values"].shape == (2, 3, 16, 16)
    expected_rgb = (torch.tensor(colour) / 255 - 0.5) / 0.5
    torch.testing.assert_close(outputs["pixel_values"][0, :, 5, 5], expected_rgb)
    low, high = processor.thermal_temperature_range
    expected_thermal = ((temperature - low) / (high - low) - 0.5) / 0.5
    torch.testing.assert_close(outputs["thermal_pixel_values"], torch.full((2, 3, 16, 16), expected_thermal))


def test_single_modality_calls_return_only_their_key():
    processor = ViTFERImageProcessor(size=8)
    assert set(processor(images=Image.new("RGB", (8, 8)))) == {"pixel_values"}
    assert set(processor(thermal_images=Image.new("L", (8, 8)))) == {"thermal_pixel_values"}
    assert isinstance(processor(images=Image.new("RGB", (8, 8)), return_tensors="np")["pixel_values"], np.ndarray)


def test_resizing_keeps_sub_8_bit_thermal_precision():
    processor = ViTFERImageProcessor(size=16, do_normalize=False)
    # 0.03 °C is under half an 8-bit level of the 20 °C window: an 8-bit resize would merge the two images.
    cool, warm = (np.full((40, 40), t, dtype=np.float32) for t in (30.0, 30.03))
    outputs = processor(thermal_images=[cool, warm])["thermal_pixel_values"]
    low, high = processor.thermal_temperature_range
    difference = outputs[1] - outputs[0]
    torch.testing.assert_close(difference, torch.full_like(difference, 0.03 / (high - low)), atol=1e-5, rtol=0)


def test_save_and_load_round_trip(tmp_path):
    processor = custom_processor()
    processor.save_pretrained(tmp_path)
    assert {"preprocessor_config.json", "image_processing_vit_fer.py"} <= set(os.listdir(tmp_path))
    for loaded in (ViTFERImageProcessor.from_pretrained(tmp_path), AutoImageProcessor.from_pretrained(tmp_path)):
        assert type(loaded) is ViTFERImageProcessor
        assert loaded.to_dict() == processor.to_dict()
        rgb, counts = sample_inputs()
        expected = processor(images=rgb, thermal_images=counts)
        actual = loaded(images=rgb, thermal_images=counts)
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], atol=0, rtol=0)


def test_from_pretrained_overrides_thermal_settings(tmp_path):
    ViTFERImageProcessor().save_pretrained(tmp_path)
    loaded = ViTFERImageProcessor.from_pretrained(tmp_path, thermal_temperature_range=(15.0, 45.0))
    assert loaded.thermal_temperature_range == (15.0, 45.0)


REMOTE_LOADER = textwrap.dedent(
    """
    import sys
    sys.modules["vit_fer"] = None  # what a Hub user has: no vit_fer package
    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file, save_file
    from transformers import AutoImageProcessor

    folder, inputs_file, outputs_file = sys.argv[1:4]
    inputs = load_file(inputs_file)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    print(type(processor).__name__, type(processor).__module__)
    outputs = processor(
        images=Image.fromarray(inputs["rgb"].numpy()), thermal_images=inputs["counts"].numpy().astype(np.uint16)
    )
    save_file(dict(outputs), outputs_file)
    """
)


def test_auto_image_processor_loads_saved_code_without_vit_fer(tmp_path):
    processor = custom_processor()
    folder = tmp_path / "checkpoint"
    processor.save_pretrained(folder)
    assert json.loads((folder / "preprocessor_config.json").read_text())["auto_map"] == {
        "AutoImageProcessor": "image_processing_vit_fer.ViTFERImageProcessor"
    }
    rgb, counts = sample_inputs()
    # safetensors has no uint16: the counts travel as int32 and are cast back.
    save_file(
        {"rgb": torch.tensor(np.asarray(rgb)), "counts": torch.from_numpy(counts.astype(np.int32))}, tmp_path / "in.st"
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    completed = subprocess.run(
        [sys.executable, "-c", REMOTE_LOADER, str(folder), str(tmp_path / "in.st"), str(tmp_path / "out.st")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    name, module = completed.stdout.split()[-2:]
    assert name == "ViTFERImageProcessor" and not module.startswith("vit_fer")
    remote = load_file(tmp_path / "out.st")
    local = processor(images=rgb, thermal_images=counts)
    for key in ("pixel_values", "thermal_pixel_values"):
        torch.testing.assert_close(remote[key], local[key], atol=0, rtol=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "got neither"),
        (dict(images=[Image.new("RGB", (8, 8))] * 2, thermal_images=[Image.new("L", (8, 8))]), "one to one"),
        (dict(images=np.zeros((8, 8, 3), dtype=np.uint16)), "uint8 or float"),
        (dict(images=np.full((8, 8, 3), 2.0, dtype=np.float32)), r"\[0, 1\]"),
        (dict(images=np.zeros((2, 8, 8, 3), dtype=np.uint8)), "list of images"),
        (dict(images=[]), "empty list"),
        (dict(images="face.jpg"), "load_rgb_file"),
        (dict(thermal_images=np.zeros((8, 8), dtype=np.int32)), "dtype int32"),
        (dict(thermal_images=np.zeros((8, 8, 3), dtype=np.float32)), "single-channel"),
        (dict(thermal_images=np.full((8, 8), np.nan, dtype=np.float32)), "NaN"),
        (dict(thermal_images=Image.new("RGBA", (8, 8), (0, 0, 0, 0))), "transparent"),
        (dict(thermal_images=Image.new("1", (8, 8))), "Unsupported thermal image mode"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ViTFERImageProcessor(size=8)(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(thermal_temperature_range=(40.0, 20.0)), "low < high"),
        (dict(image_std=(0.5, 0.0, 0.5)), "positive"),
        (dict(image_mean=(0.5, 0.5)), "3 floats"),
        (dict(size={"shortest_edge": 32}), "'height' and 'width'"),
        (dict(thermal_raw_scale=0), "non-zero"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViTFERImageProcessor(**kwargs)
