"""Builds every vit-fer architecture and classifies a batch, offline.

The encoders load from a small ViT checkpoint written here with random weights, through the same code path that
`model_name="google/vit-base-patch16-224-in21k"` takes; pass `--model_name` to use a real checkpoint.
"""

import argparse
import tempfile

import torch
from transformers import ViTConfig, ViTModel

from vit_fer import create_multimodal_vit_model


DESIGNS = {
    "RGB only": dict(mode="rgb"),
    "thermal only": dict(mode="thermal"),
    "early fusion, concat": dict(mode="combined", fusion_strategy="early", fusion_type="concat"),
    "early fusion, add": dict(mode="combined", fusion_strategy="early", fusion_type="add"),
    "late fusion, attention": dict(mode="combined", fusion_strategy="late", fusion_type="attention"),
    "late fusion, prediction": dict(mode="combined", fusion_strategy="late", fusion_layer="prediction"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_name", help="a ViT checkpoint (Hub id or folder); default: a small random one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        model_name = args.model_name
        if model_name is None:
            model_name = folder
            ViTModel(
                ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=64)
            ).save_pretrained(folder)
        for title, design in DESIGNS.items():
            model = create_multimodal_vit_model(model_name=model_name, **design).eval()
            size = model.config.image_size
            rgb, thermal = torch.randn(2, 3, size, size), torch.randn(2, 3, size, size)
            inputs = {"pixel_values": thermal if design["mode"] == "thermal" else rgb}
            if design["mode"] == "combined":
                inputs["thermal_pixel_values"] = thermal
            with torch.no_grad():
                probabilities = model(**inputs).logits.softmax(-1)
            labels = [model.config.id2label[int(i)] for i in probabilities.argmax(-1)]
            parameters = sum(p.numel() for p in model.parameters())
            print(f"{title:<26} {type(model).__name__:<15} {parameters:>9,} parameters  predictions: {labels}")


if __name__ == "__main__":
    main()
