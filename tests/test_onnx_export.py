"""ONNX export (`vit-fer export-onnx`): the graph run by ONNX Runtime gives PyTorch's logits for every architecture,
with named inputs, a dynamic batch axis, and the config, label names and processor settings beside it."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from tiny_models import VARIANTS

from vit_fer.cli import main
from vit_fer.onnx_export import export_onnx


pytestmark = pytest.mark.end_to_end(longest=True)


# Every architecture and fusion design; "thermal" is left out: the same class and graph as "rgb", only the config's
# modality differs (each export takes seconds).
@pytest.mark.parametrize("variant", [variant for variant in VARIANTS if variant != "thermal"])
def test_onnxruntime_logits_match_pytorch(saved_fer_model, variant, tmp_path):
    from transformers import AutoModelForImageClassification

    model_dir = saved_fer_model(variant)
    path = export_onnx(model_dir, tmp_path / "model.onnx")

    model = AutoModelForImageClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()]
    assert names == (["pixel_values"] if variant == "rgb" else ["pixel_values", "thermal_pixel_values"])
    generator = torch.Generator().manual_seed(1)
    for batch_size in (1, 5):  # the export traced batch 2: the batch axis is dynamic
        inputs = {name: torch.randn(batch_size, 3, 32, 32, generator=generator) for name in names}
        with torch.no_grad():
            expected = model(**inputs)
        arrays = session.run(None, {name: value.numpy() for name, value in inputs.items()})
        outputs = dict(zip([output.name for output in session.get_outputs()], arrays, strict=True))
        assert outputs["logits"].shape == (batch_size, model.config.num_labels)
        assert np.abs(outputs["logits"] - expected.logits.numpy()).max() <= 1e-4
        if expected.modality_weights is not None:
            assert np.abs(outputs["modality_weights"] - expected.modality_weights.numpy()).max() <= 1e-4
        else:
            assert "modality_weights" not in outputs


def test_export_writes_labels_and_processor_beside_the_graph_and_never_overwrites(
    saved_fer_model, synthetic_dataset_dir, tmp_path
):
    from vit_fer.inference import load_fer_pipeline

    model_dir = saved_fer_model("early-concat")
    output = tmp_path / "export" / "fer.onnx"
    assert main(["export-onnx", str(model_dir), str(output)]) == 0
    for name in ("config.json", "preprocessor_config.json", "image_processing_vit_fer.py", "configuration_vit_fer.py"):
        assert (output.parent / name).read_bytes() == (model_dir / name).read_bytes()
    config = json.loads((output.parent / "config.json").read_text())
    metadata = {prop.key: prop.value for prop in onnx.load(str(output)).metadata_props}
    assert json.loads(metadata["id2label"]) == config["id2label"]
    assert metadata["architecture"] == "EarlyFusionViT"

    # What an ONNX Runtime server does with the folder: the processor and labels from it, the graph from the file,
    # without vit-fer.
    rgb = next((synthetic_dataset_dir / "rgb").rglob("*.jpg"))
    thermal = synthetic_dataset_dir / "thermal" / rgb.relative_to(synthetic_dataset_dir / "rgb").with_suffix(".png")
    code = f"""
import sys
sys.modules["vit_fer"] = None
import onnxruntime
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor
config = AutoConfig.from_pretrained({str(output.parent)!r}, trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained({str(output.parent)!r}, trust_remote_code=True)
inputs = processor(images=Image.open({str(rgb)!r}), thermal_images=Image.open({str(thermal)!r}), return_tensors="np")
session = onnxruntime.InferenceSession({str(output)!r}, providers=["CPUExecutionProvider"])
logits, = session.run(["logits"], {{name: inputs[name] for name in ("pixel_values", "thermal_pixel_values")}})
print(config.id2label[int(logits[0].argmax())])
"""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path)}
    served = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    expected = load_fer_pipeline(model_dir)({"rgb": str(rgb), "thermal": str(thermal)}, top_k=1)
    assert served.stdout.strip() == expected["predictions"][0]["label"]

    before = output.read_bytes()
    with pytest.raises(FileExistsError, match="not overwritten"):
        export_onnx(model_dir, output)
    assert output.read_bytes() == before
    # A different model's config beside the target is not replaced either.
    other = tmp_path / "other" / "fer.onnx"
    other.parent.mkdir()
    (other.parent / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="config.json"):
        export_onnx(model_dir, other)
    assert (other.parent / "config.json").read_text() == "{}" and not other.exists()
