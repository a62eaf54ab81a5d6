"""Explanation maps: every architecture, the math of both methods, the user's model left as it was, the pipeline's
`explain=True`, and `vit-fer explain` on a saved model loaded by remote code."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import TINY_VIT, VARIANTS, make_inputs

from vit_fer.cli import main
from vit_fer.explain import METHODS, attention_rollout_from_attentions, explain, grad_cam_from_tokens
from vit_fer.factory import create_multimodal_vit_model
from vit_fer.inference import load_fer_pipeline


def tiny(variant: str):
    torch.manual_seed(0)
    return create_multimodal_vit_model(model_name=None, **TINY_VIT, **VARIANTS[variant])


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("method", METHODS)
def test_one_map_per_modality_at_input_resolution(variant, method):
    model = tiny(variant)
    inputs = make_inputs(model, batch_size=3, with_labels=False)
    explanation = explain(model, **inputs, method=method)
    expected = {model.config.modality} if hasattr(model.config, "modality") else {"rgb", "thermal"}
    assert set(explanation.maps) == expected
    for heat in explanation.maps.values():
        assert heat.shape == (3, 32, 32)
        assert heat.min() >= 0 and heat.max() <= 1 and torch.isfinite(heat).all()
    with torch.no_grad():
        torch.testing.assert_close(explanation.logits, model.eval()(**inputs).logits)
    assert torch.equal(explanation.target, explanation.logits.argmax(-1))
    # Only early fusion reads both images with one encoder: its two maps are one map.
    assert explanation.shared == variant.startswith("early")
    if explanation.shared:
        assert torch.equal(explanation.maps["rgb"], explanation.maps["thermal"])


@pytest.mark.parametrize("variant", ["late-attention", "mid-bottleneck"])
def test_a_missing_modality_has_no_map(variant):
    model = tiny(variant)
    inputs = make_inputs(model, with_labels=False)
    explanation = explain(model, thermal_pixel_values=inputs["thermal_pixel_values"])
    assert set(explanation.maps) == {"thermal"}


def test_grad_cam_depends_on_the_class_and_rollout_does_not():
    model = tiny("late-concat")
    inputs = make_inputs(model, batch_size=2, with_labels=False)
    cams = [explain(model, **inputs, target=label).maps["rgb"] for label in ("fear", "happy")]
    rollouts = [explain(model, **inputs, method="attention_rollout", target=label).maps["rgb"] for label in (2, 3)]
    assert not torch.allclose(cams[0], cams[1])
    torch.testing.assert_close(rollouts[0], rollouts[1])


def test_grad_cam_weighs_patches_by_the_mean_gradient():
    # 4 patches, 2 channels: the score grows with channel 0 only, so the map follows channel 0 of each patch.
    tokens = torch.tensor([[[9.0, 9.0], [1.0, 5.0], [3.0, -2.0], [0.0, 7.0], [-1.0, 0.0]]])
    gradients = torch.zeros_like(tokens)
    gradients[:, 1:, 0] = 1.0
    cam = grad_cam_from_tokens(tokens, gradients, num_patches=4)
    torch.testing.assert_close(cam, torch.tensor([[1.0, 3.0, 0.0, 0.0]]))  # negatives dropped, [CLS] ignored


def test_rollout_follows_attention_through_the_layers():
    # Tokens: [CLS], patches 1-3. Layer 1: every token attends to patch 3. Layer 2: [CLS] attends to patch 1, the
    # others to themselves. With the residual path (A + I) / 2 at each layer, [CLS] keeps half of itself and takes half
    # of patch 1, which itself was half patch 3: rollout gives patch 3 0.5, patch 1 0.25, patch 2 nothing.
    first = torch.zeros(1, 1, 4, 4)
    first[..., :, 3] = 1.0
    second = torch.eye(4).expand(1, 1, 4, 4).clone()
    second[..., 0, :] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    relevance = attention_rollout_from_attentions([first, second], num_patches=3)
    torch.testing.assert_close(relevance, torch.tensor([[0.25, 0.0, 0.5]]))


def test_the_users_model_is_left_as_it_was():
    model = tiny("late-attention")
    model.train()
    model.freeze_backbone()
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    inputs = make_inputs(model, with_labels=False)
    for method in METHODS:
        explanation = explain(model, **inputs, method=method)
        assert explanation.maps["rgb"].max() == 1  # a frozen encoder still gets its Grad-CAM
    assert model.training
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert model.config._attn_implementation == model.rgb_vit.config._attn_implementation == "sdpa"


def test_bad_arguments():
    model = tiny("rgb")
    inputs = make_inputs(model, with_labels=False)
    with pytest.raises(ValueError, match="method"):
        explain(model, **inputs, method="lime")
    with pytest.raises(ValueError, match="target"):
        explain(model, **inputs, target="bored")
    with pytest.raises(ValueError, match="target"):
        explain(model, **inputs, target=7)


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(0)
    # Not the model's 32 px, and not square: maps come back at each image's own size.
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(folder / "face.png")
    np.save(folder / "face_thermal.npy", rng.uniform(30, 36, (40, 48)).astype(np.float32))
    return {"rgb": str(folder / "face.png"), "thermal": str(folder / "face_thermal.npy")}


def test_pipeline_returns_maps_at_each_images_size(saved_fer_model, pair_files):
    classifier = load_fer_pipeline(saved_fer_model("late-prediction-weighted"))
    plain = classifier(pair_files)
    result = classifier(pair_files, explain=True, explain_method="attention_rollout", explain_label="fear")
    assert "explanation" not in plain
    # The same predictions with or without maps (pytest.approx compares flat numbers only, not the label dicts).
    assert [p["label"] for p in result["predictions"]] == [p["label"] for p in plain["predictions"]]
    assert [p["score"] for p in result["predictions"]] == pytest.approx([p["score"] for p in plain["predictions"]])
    explanation = result["explanation"]
    assert (explanation["method"], explanation["label"], explanation["shared"]) == ("attention_rollout", "fear", False)
    assert {m: heat.shape for m, heat in explanation["maps"].items()} == {"rgb": (40, 48), "thermal": (40, 48)}
    with pytest.raises(ValueError, match="explain_method"):
        classifier(pair_files, explain=True, explain_method="lime")
    with pytest.raises(ValueError, match="need `explain=True`"):
        classifier(pair_files, explain_label="fear")


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """`vit-fer ARGV` as the console script runs it (its `main`), in this process: the exit status and stderr."""
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's own errors
        status = stop.code
    return status, capsys.readouterr().err


def test_explain_command_writes_the_overlay(saved_fer_model, pair_files, tmp_path, capsys):
    output = tmp_path / "overlay.png"
    status, error = run_cli(["explain", "--model", str(saved_fer_model("late-attention")), "--rgb", pair_files["rgb"],
                             "--thermal", pair_files["thermal"], "--output", str(output)], capsys)  # fmt: skip
    assert status == 0, error[-2000:]
    image = Image.open(output)
    assert image.size[0] > 600 and image.size[1] > 400


REMOTE_CODE_VARIANTS = ["early-concat", "mid-concat"]
# Each model is loaded as a Hub user loads it — the folder's own code, vit_fer not importable — then explained; one
# fresh process for all of them.
EXPLAIN_REMOTE_CODE = """
import json, os, sys, torch
sys.modules["vit_fer"] = None
from transformers import AutoModelForImageClassification
models = {folder: AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True) for folder in sys.argv[1:]}
del sys.modules["vit_fer"]
from vit_fer.explain import explain
results = {}
for folder, model in models.items():
    inputs = {name: torch.randn(2, 3, 32, 32) for name in ("pixel_values", "thermal_pixel_values")}
    maps = {method: explain(model, **inputs, method=method).maps for method in ("grad_cam", "attention_rollout")}
    results[folder] = {
        "module": type(model).__module__,
        "maps": {method: {modality: list(m.shape) for modality, m in found.items()} for method, found in maps.items()},
        "attn_implementation": model.config._attn_implementation,
    }
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def explained_from_remote_code(saved_fer_model, tmp_path_factory):
    folders = [str(saved_fer_model(variant)) for variant in REMOTE_CODE_VARIANTS]
    environment = {**os.environ, "HF_MODULES_CACHE": str(tmp_path_factory.mktemp("modules")), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", EXPLAIN_REMOTE_CODE, *folders], capture_output=True, text=True,
                            timeout=300, env=environment)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("variant", REMOTE_CODE_VARIANTS)
def test_maps_of_a_model_whose_class_comes_from_remote_code(saved_fer_model, variant, explained_from_remote_code):
    result = explained_from_remote_code[str(saved_fer_model(variant))]
    assert result["module"].startswith("transformers_modules"), result["module"]
    for method in ("grad_cam", "attention_rollout"):
        assert result["maps"][method] == {"rgb": [2, 32, 32], "thermal": [2, 32, 32]}, method
    assert result["attn_implementation"] == "sdpa"


@pytest.mark.parametrize(
    "arguments, message",
    [(["--output", "overlay.jpg"], "must be a .png"), (["--output", "o.png", "--label", "bored"], "explain_label")],
)
def test_explain_command_rejects_bad_arguments(saved_fer_model, pair_files, tmp_path, arguments, message, capsys,
                                               monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    status, error = run_cli(["explain", "--model", str(saved_fer_model("rgb")), "--rgb", pair_files["rgb"], *arguments],
                            capsys)  # fmt: skip
    assert status == 2 and message in error and "Traceback" not in error
