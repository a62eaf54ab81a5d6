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


def _layer_flops(config: PretrainedConfig, tokens: int) -> int:
    hidden, intermediate = config.hidden_size, config.intermediate_size
    return 8 * tokens * hidden**2 + 4 * tokens**2 * hidden + 4 * tokens * hidden * intermediate


def mid_fusion_forward_flops(config: PretrainedConfig) -> int:
    """Forward FLOPs of a `MidFusionViT` of `config` on one RGB + thermal pair, with E the embedding and f(n) one
    layer on n tokens (formula above), k = `fusion_layer`, B bottleneck tokens and c(N) = 8·N·D·W + 4·N²·W one
    cross-attention block of width W = `cross_attention_hidden_size`:

        bottleneck       2E + 2k·f(N) + 2(L − k)·f(N + B)
        cross_attention  2E + 2L·f(N) + 2(L − k)·c(N)
        concat           2E + 2k·f(N) + (L − k)·f(2N)
        add              2E + (L + k)·f(N)     (E + L·f(N) at k = 0: the images are summed)
    """
    patches = (config.image_size // config.patch_size) ** 2
    tokens, hidden = patches + 1, config.hidden_size
    embedding = 2 * patches * hidden * config.num_channels * config.patch_size**2
    layers, fused = config.num_hidden_layers, config.num_hidden_layers - config.fusion_layer
    unfused = 2 * config.fusion_layer * _layer_flops(config, tokens)
    if config.fusion_type == "bottleneck":
        return 2 * embedding + unfused + 2 * fused * _layer_flops(config, tokens + config.num_bottleneck_tokens)
    if config.fusion_type == "cross_attention":
        width = config.cross_attention_hidden_size
        cross = 8 * tokens * hidden * width + 4 * tokens**2 * width
        return 2 * embedding + 2 * layers * _layer_flops(config, tokens) + 2 * fused * cross
    if config.fusion_type == "concat":
        return 2 * embedding + unfused + fused * _layer_flops(config, 2 * tokens)
    streams = 1 if config.fusion_layer == 0 else 2
    return streams * embedding + (layers + config.fusion_layer) * _layer_flops(config, tokens)


def model_forward_flops(model: torch.nn.Module) -> int:
    """Forward FLOPs of `model` on one sample: its encoders' FLOPs (two for late fusion; see
    [`mid_fusion_forward_flops`] for mid fusion)."""
    if getattr(model.config, "model_type", None) == "vit-fer-mid-fusion":
        return mid_fusion_forward_flops(model.config)
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
