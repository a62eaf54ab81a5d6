"""FLOP counting for ViT encoders, and the machine's measured matmul rate they are held against.

Forward FLOPs of one encoder on one image (a multiply-add counts 2), with P = (image_size / patch_size)² patches,
N = P + 1 tokens, hidden size D, intermediate size I, L layers and C input channels:

    patch embedding   2 · P · D · C · patch_size²
    per layer         8 · N · D²      (query, key, value and output projections)
                    + 4 · N² · D      (attention scores Q·Kᵀ and their product with V)
                    + 4 · N · D · I   (the two MLP matrices)

Layer norms, GELU, softmax and the classification head are left out (under 0.5 % at ViT-B/16). A training step
costs 3× the forward (the backward computes gradients for activations and for weights, each as much as the
forward). ViT-B/16 at 224 px: 35.1 GFLOP forward, 105 GFLOP per training image (the 4·N²·D attention term is 1.4
GFLOP of the forward; without it the count is the 101 GFLOP usually quoted).
"""

import torch
from transformers import PretrainedConfig


def encoder_forward_flops(config: PretrainedConfig) -> int:
    """Forward FLOPs of one ViT encoder of `config` on one image of `config.image_size` (formula above)."""
    channels = config.num_channels
    patches = (config.image_size // config.patch_size) ** 2
    tokens = patches + 1
    hidden, intermediate = config.hidden_size, config.intermediate_size
    embedding = 2 * patches * hidden * channels * config.patch_size**2
    layer = 8 * tokens * hidden**2 + 4 * tokens**2 * hidden + 4 * tokens * hidden * intermediate
    return embedding + config.num_hidden_layers * layer


def model_forward_flops(model: torch.nn.Module) -> int:
    """Forward FLOPs of `model` on one sample: its encoders' FLOPs (two for late fusion)."""
    encoders = model.backbone_modules() if hasattr(model, "backbone_modules") else [model.vit]
    flops = sum(encoder_forward_flops(encoder.config) for encoder in encoders)
    if getattr(model.config, "share_encoder", False):
        flops *= 2  # one encoder, run on both modalities
    return flops


class MatmulProbe:
    """`torch.mm` of a (rows × inner) · (inner × columns) product in `dtype`, repeated to about `flops` FLOPs per
    call. Timed as a case beside the model steps, it gives the machine's matmul rate under the same conditions
    (other jobs, clock) as the steps it is compared with."""

    def __init__(
        self, rows: int, inner: int, columns: int, dtype: torch.dtype, device: torch.device, flops: float
    ):
        self.left = torch.randn(rows, inner, dtype=dtype, device=device)
        self.right = torch.randn(inner, columns, dtype=dtype, device=device)
        per_product = 2 * rows * inner * columns
        self.calls = max(1, round(flops / per_product))
        self.flops = self.calls * per_product

    def __call__(self) -> None:
        for _ in range(self.calls):
            torch.mm(self.left, self.right)
