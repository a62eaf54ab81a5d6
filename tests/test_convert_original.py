"""`vit-fer convert-original`: a state dict saved by the original implementation becomes a vit-fer model folder that
gives the same logits.

The original's modules are rebuilt here from its published structure (reicraftscodes/group-4-dissertation,
model.py): which transformers modules it nests under which attribute names, and its head (LayerNorm, Dropout,
Linear to hidden_size // 2, GELU, Dropout, Linear). Its state dict has transformers 4's tensor names, which
transformers 5 still writes with `save_pretrained(save_original_format=True)`.
"""

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import TINY_VIT
from torch import nn
from transformers import AutoModelForImageClassification, ViTConfig, ViTForImageClassification, ViTModel

from vit_fer.cli import main


NUM_CLASSES = 7


def original_head(input_size: int, hidden_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(input_size),
        nn.Dropout(0.1),
        nn.Linear(input_size, hidden_size // 2),
        nn.GELU(),
        nn.Dropout(0.05),
        nn.Linear(hidden_size // 2, NUM_CLASSES),
    )


class OriginalViTForFER(nn.Module):
    def __init__(self):
        super().__init__()
        self.vit = ViTForImageClassification(ViTConfig(**TINY_VIT, num_labels=NUM_CLASSES))
        self.vit.classifier = original_head(TINY_VIT["hidden_size"], TINY_VIT["hidden_size"])

    def forward(self, rgb, thermal):
        return self.vit(pixel_values=rgb).logits


class OriginalEarlyFusion(nn.Module):
    def __init__(self, fusion_type):
        super().__init__()
        self.fusion_type = fusion_type
        self.vit = ViTModel(ViTConfig(**TINY_VIT, num_channels=6 if fusion_type == "concat" else 3))
        self.classifier = original_head(TINY_VIT["hidden_size"], TINY_VIT["hidden_size"])

    def forward(self, rgb, thermal):
        images = torch.cat([rgb, thermal], dim=1) if self.fusion_type == "concat" else rgb + thermal
        return self.classifier(self.vit(pixel_values=images).last_hidden_state[:, 0])


class OriginalLateFusion(nn.Module):
    def __init__(self, fusion_type, fusion_layer):
        super().__init__()
        self.fusion_type, self.fusion_layer = fusion_type, fusion_layer
        hidden = TINY_VIT["hidden_size"]
        self.rgb_vit, self.thermal_vit = ViTModel(ViTConfig(**TINY_VIT)), ViTModel(ViTConfig(**TINY_VIT))
        if fusion_layer == "feature":
            self.classifier = original_head(2 * hidden if fusion_type == "concat" else hidden, hidden)
        else:
            self.rgb_classifier, self.thermal_classifier = original_head(hidden, hidden), original_head(hidden, hidden)
            self.prediction_attention = nn.Linear(2 * NUM_CLASSES, NUM_CLASSES)

    def forward(self, rgb, thermal):
        rgb = self.rgb_vit(pixel_values=rgb).last_hidden_state[:, 0]
        thermal = self.thermal_vit(pixel_values=thermal).last_hidden_state[:, 0]
        if self.fusion_layer == "feature":
            return self.classifier(torch.cat([rgb, thermal], 1) if self.fusion_type == "concat" else rgb + thermal)
        logits = torch.cat([self.rgb_classifier(rgb), self.thermal_classifier(thermal)], dim=1)
        return self.prediction_attention(logits)


def original_state_dict(model: nn.Module, tmp_path) -> dict[str, torch.Tensor]:
    """`model.state_dict()` as transformers 4 named it: every nested transformers model in its legacy layout."""
    state = {}
    for name, module in model.named_children():
        if isinstance(module, (ViTModel, ViTForImageClassification)):
            module.save_pretrained(tmp_path / name, save_original_format=True)
            state |= {f"{name}.{key}": value for key, value in load_file(tmp_path / name / "model.safetensors").items()}
        else:
            state |= {f"{name}.{key}": value for key, value in module.state_dict().items()}
    return state


CASES = {
    "rgb": (lambda: OriginalViTForFER(), ["--mode", "rgb"]),
    "early-concat": (lambda: OriginalEarlyFusion("concat"), ["--mode", "combined", "--fusion_type", "concat"]),
    "early-add": (lambda: OriginalEarlyFusion("add"), ["--mode", "combined", "--fusion_type", "add"]),
    "late-concat": (
        lambda: OriginalLateFusion("concat", "feature"),
        ["--mode", "combined", "--fusion_strategy", "late", "--fusion_type", "concat", "--fusion_layer", "feature"],
    ),
    "late-prediction-attention": (
        lambda: OriginalLateFusion("attention", "prediction"),
        ["--mode", "combined", "--fusion_strategy", "late", "--fusion_type", "attention", "--fusion_layer", "prediction"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_converted_original_checkpoint_gives_the_same_logits(case, tiny_vit_dir, tmp_path):
    build, arguments = CASES[case]
    torch.manual_seed(0)
    original = build().eval()
    state = original_state_dict(original, tmp_path)
    assert any(".encoder.layer.0.attention.attention.query.weight" in key for key in state)  # transformers 4 names
    torch.save(state, tmp_path / "best_model.pth")

    status = main(["convert-original", str(tmp_path / "best_model.pth"), str(tmp_path / "converted"),
                   "--model_name", str(tiny_vit_dir), *arguments])
    assert status == 0

    model = AutoModelForImageClassification.from_pretrained(tmp_path / "converted", trust_remote_code=True).eval()
    rgb, thermal = torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32)
    inputs = {"pixel_values": rgb} if case == "rgb" else {"pixel_values": rgb, "thermal_pixel_values": thermal}
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, original(rgb, thermal), atol=1e-5, rtol=1e-5)
    assert model.config.model_name == str(tiny_vit_dir)
    assert (tmp_path / "converted" / "preprocessor_config.json").exists()


def test_conversion_refuses_what_it_cannot_reproduce(tiny_vit_dir, tmp_path, capsys):
    torch.manual_seed(0)
    torch.save(original_state_dict(OriginalEarlyFusion("concat"), tmp_path), tmp_path / "early.pth")
    # The wrong architecture: the tensors do not fit.
    assert main(["convert-original", str(tmp_path / "early.pth"), str(tmp_path / "out"), "--mode", "combined",
                 "--fusion_strategy", "late", "--model_name", str(tiny_vit_dir)]) == 2
    assert "has no `rgb_vit.*` tensors" in capsys.readouterr().err
    # The original's late feature attention (multi-head attention) is not vit-fer's.
    assert main(["convert-original", str(tmp_path / "early.pth"), str(tmp_path / "out"), "--mode", "combined",
                 "--fusion_strategy", "late", "--fusion_type", "attention", "--model_name", str(tiny_vit_dir)]) == 2
    assert "late feature 'attention' is a multi-head attention" in capsys.readouterr().err
    # Never written over.
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["convert-original", str(tmp_path / "early.pth"), str(tmp_path / "taken"), "--mode", "combined",
                 "--model_name", str(tiny_vit_dir)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    # A pickle with code is never unpickled.
    torch.save({"model": OriginalEarlyFusion("add")}, tmp_path / "pickled.pth")
    assert main(["convert-original", str(tmp_path / "pickled.pth"), str(tmp_path / "out2"),
                 "--model_name", str(tiny_vit_dir)]) == 2
    assert "weights_only=True" in capsys.readouterr().err
