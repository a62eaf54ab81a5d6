"""Where a vit-fer model looked: explanation maps per modality, and the overlay figure that shows them.

Two methods, for every architecture — single-modality, early, mid and late fusion — (any model whose output carries
its encoders' hidden states and attentions the way vit-fer's models do, also one loaded by remote code):

- `"grad_cam"` (Selvaraju et al., 2017) on the encoder's patch tokens: the tokens entering the last encoder layer
  (the last place where patch tokens still feed the [CLS] token the head reads), weighted per channel by the
  gradient of the explained class's logit averaged over the patches, summed over the channels, negatives dropped.
  Class-specific.
- `"attention_rollout"` (Abnar & Zuidema, 2020): the product over the layers of the head-averaged attention plus the
  identity (the residual path), row-normalised; the map is the [CLS] token's row over the patches. It does not
  depend on the class. It needs the attention weights, which only the eager attention kernel returns: the model is
  switched to eager attention for the call and restored afterwards.

Maps are per modality present. Late and mid fusion have one stream per modality (`hidden_states` / `attentions`
and `thermal_hidden_states` / `thermal_attentions`) and so one map per modality; a single-encoder model that reads
both (early fusion: the two images stacked or summed patch by patch) has one map
over the shared patch grid, returned for each modality. Each map has the resolution of the model input (bilinear
from the patch grid), rescaled to [0, 1] per sample (its minimum to 0, its maximum to 1; all zeros when flat).

The `grad-cam` package (pytorch-grad-cam) is not used: it imports torchvision at package import (not available
here, and it would pull a CUDA torch), and its `BaseCAM` calls `model(input_tensor)` with one tensor, while our
fusion models take two. The part needed — the gradient-weighted token sum — is [`grad_cam_from_tokens`] below.
"""

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedConfig

from .data import MODALITIES
from .model_card import OVERLAYS_DIR


METHODS = ("grad_cam", "attention_rollout")
METHOD_NAMES = {"grad_cam": "Grad-CAM", "attention_rollout": "attention rollout"}


@dataclass
class Explanation:
    """
    Explanation maps of a batch.

    maps (`dict[str, torch.Tensor]`): per modality present (`"rgb"`, `"thermal"`), a `(batch, height, width)` map
        at the model input's resolution, in [0, 1].
    target (`torch.LongTensor` of shape `(batch,)`): the class each map explains.
    logits (`torch.FloatTensor` of shape `(batch, num_labels)`): the model's raw logits.
    modality_weights (`torch.FloatTensor` of shape `(batch, 2)`, *optional*): [RGB, thermal] weights of models that
        weigh the modalities.
    method (`str`): `"grad_cam"` or `"attention_rollout"`.
    shared (`bool`): whether one encoder read both modalities, so that the maps of the two are the same map.
    """

    maps: dict[str, torch.Tensor]
    target: torch.Tensor
    logits: torch.Tensor
    modality_weights: torch.Tensor | None
    method: str
    shared: bool


@contextmanager
def eager_attention(model: nn.Module):
    """Runs the block with the model on eager attention (which returns attention weights), then restores the
    implementation it had — the user's model is never left changed."""
    # The configs are switched directly: `PreTrainedModel.set_attn_implementation` refuses our models, because its
    # source heuristic takes the fusion module `ModalityAttentionFusion(nn.Module)` for an attention layer that does
    # not use transformers' attention interface. Every nested ViT reads its config's implementation at each call.
    configs = list({id(m.config): m.config for m in model.modules() if isinstance(getattr(m, "config", None), PreTrainedConfig)}.values())
    previous = [config._attn_implementation for config in configs]
    try:
        for config in configs:
            config._attn_implementation = "eager"
        yield model
    finally:
        for config, implementation in zip(configs, previous, strict=True):
            config._attn_implementation = implementation


def model_modalities(config) -> tuple[str, ...]:
    """The modalities a model reads: its `modality` for a single-modality model, both for fusion models."""
    modality = getattr(config, "modality", None)
    return (modality,) if modality is not None else MODALITIES


def _encoder_streams(config, outputs, given: Sequence[str]) -> tuple[dict[str, tuple], bool]:
    """Per modality present, `(hidden_states, attentions)` of the encoder that read it, and whether one encoder read
    both. Late fusion reports its thermal encoder as `thermal_*`; every other model has one encoder."""
    if getattr(outputs, "thermal_hidden_states", None) is not None or getattr(outputs, "thermal_attentions", None) is not None:
        fields = {"rgb": ("hidden_states", "attentions"), "thermal": ("thermal_hidden_states", "thermal_attentions")}
        return {m: tuple(getattr(outputs, f) for f in fields[m]) for m in given}, False
    if given == ("rgb",) or getattr(config, "modality", None) is not None:
        return {given[0]: (outputs.hidden_states, outputs.attentions)}, False
    return {m: (outputs.hidden_states, outputs.attentions) for m in given}, len(given) > 1


def _to_input_resolution(patch_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(batch, rows, columns) → (batch, height, width), bilinear, each map rescaled to [0, 1] (its minimum to 0, its
    maximum to 1). Rollout maps sit on a floor that the residual path gives every patch; rescaling removes it."""
    upsampled = nn.functional.interpolate(patch_map[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    low = upsampled.flatten(1).amin(dim=1)[:, None, None]
    span = (upsampled.flatten(1).amax(dim=1)[:, None, None] - low).clamp_min(torch.finfo(upsampled.dtype).tiny)
    return (upsampled - low) / span


def grad_cam_from_tokens(tokens: torch.Tensor, gradients: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Grad-CAM over transformer tokens: `relu(sum_c mean_patches(dScore/dA_c) * A_c)` per patch.

    Args:
        tokens, gradients (`torch.Tensor` of shape `(batch, num_tokens, hidden_size)`): the tokens — [CLS], the
            `num_patches` patch tokens, then any fusion tokens (mid fusion's bottleneck), which are left out — and the
            gradient of the explained score with respect to them.

    Returns:
        `(batch, num_patches)`.
    """
    patches, patch_gradients = tokens[:, 1 : 1 + num_patches], gradients[:, 1 : 1 + num_patches]
    weights = patch_gradients.mean(dim=1, keepdim=True)
    return (weights * patches).sum(dim=-1).relu()


def attention_rollout_from_attentions(attentions: Sequence[torch.Tensor], num_patches: int) -> torch.Tensor:
    """Attention rollout: `(batch, num_patches)` relevance of the patches for the [CLS] token, from one
    `(batch, heads, queries, keys)` attention tensor per layer (first layer first).

    Only the attention among the stream's own tokens ([CLS] and the patches, the first `1 + num_patches` queries and
    keys) is followed, renormalised: mid fusion's layers also attend to bottleneck tokens or to the other stream,
    whose relevance rollout cannot trace back to this stream's pixels."""
    num_tokens = 1 + num_patches
    rollout = None
    for attention in attentions:
        mixed = attention[:, :, :num_tokens, :num_tokens].float().mean(dim=1)
        mixed = mixed + torch.eye(mixed.shape[-1], device=mixed.device)  # the residual connection
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout[:, 0, 1:]


def _last_layer_tokens(hidden_states: Sequence[torch.Tensor], normalised: Sequence[tuple]) -> tuple[torch.Tensor, slice]:
    """The activations Grad-CAM weighs for one stream: the tokens entering its last layer (its output patch tokens no
    longer reach [CLS]), after that layer's pre-attention LayerNorm — the usual ViT target (pytorch-grad-cam's
    `blocks[-1].norm1`). The normalisation matters: the residual stream carries a few tokens of outsized norm that
    would otherwise take the whole map. Mid fusion's layers may read the stream's tokens inside a longer sequence
    (bottleneck tokens appended, or both streams joined): LayerNorm works token by token, so the stream's slice of
    the output is taken. Where no layer read them as they are, the un-normalised tokens are used.

    Returns:
        `(activations, tokens)`: a tensor of the forward graph, and the slice of its tokens that are the stream's.
    """
    entering = hidden_states[max(len(hidden_states) - 2, 0)]  # a one-layer stream enters it at the embeddings
    length = entering.shape[1]
    for layer_input, layer_output in reversed(normalised):
        if layer_input is entering:
            return layer_output, slice(0, length)
        if layer_input.shape[0] == entering.shape[0] and layer_input.shape[1] > length:
            for offset in (0, layer_input.shape[1] - length):
                if torch.equal(layer_input[:, offset : offset + length], entering):
                    return layer_output, slice(offset, offset + length)
    return entering, slice(0, length)


def _resolve_target(target, logits: torch.Tensor, config) -> torch.Tensor:
    batch_size, num_labels = logits.shape
    if target is None:
        return logits.argmax(dim=-1)
    if isinstance(target, str):
        if target not in config.label2id:
            raise ValueError(f"`target` must be a class index or one of {sorted(config.label2id)}, got {target!r}.")
        target = config.label2id[target]
    target = torch.as_tensor(target, device=logits.device).long().expand(batch_size).clone()
    if target.min() < 0 or target.max() >= num_labels:
        raise ValueError(f"`target` must be a class index in [0, {num_labels}), got {target.tolist()}.")
    return target


def explain(
    model: nn.Module,
    pixel_values: torch.Tensor | None = None,
    thermal_pixel_values: torch.Tensor | None = None,
    *,
    method: str = "grad_cam",
    target: int | str | torch.Tensor | None = None,
) -> Explanation:
    """
    Explanation maps of a vit-fer model for a batch, one per modality present.

    Args:
        model: a vit-fer model (`ViTForFER`, `EarlyFusionViT`, `LateFusionViT`, or one loaded by remote code). It is
            run in eval mode; its mode, attention implementation and gradients are left as they were.
        pixel_values, thermal_pixel_values (`torch.Tensor`, *optional*): the inputs as `forward` takes them.
        method (`str`, *optional*, defaults to `"grad_cam"`): `"grad_cam"` or `"attention_rollout"`.
        target (`int`, `str`, `torch.Tensor`, *optional*): the class to explain — an index, a label name, or one index
            per sample. Defaults to the predicted class. Attention rollout ignores it (it is class-agnostic).

    Returns:
        [`Explanation`].
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    inputs = {"pixel_values": pixel_values, "thermal_pixel_values": thermal_pixel_values}
    inputs = {name: value for name, value in inputs.items() if value is not None}
    if not inputs:
        raise ValueError("Pass `pixel_values`, `thermal_pixel_values`, or both.")
    reference = next(iter(inputs.values()))
    size = tuple(reference.shape[-2:])
    patch_size = model.config.patch_size
    rows, columns = size[0] // patch_size, size[1] // patch_size
    given = model_modalities(model.config)
    if len(given) == 2:
        given = tuple(m for m, name in zip(MODALITIES, ("pixel_values", "thermal_pixel_values")) if name in inputs)
    was_training = model.training
    model.eval()
    try:
        if method == "attention_rollout":
            with torch.no_grad(), eager_attention(model):
                outputs = model(**inputs, output_attentions=True, return_dict=True)
            streams, shared = _encoder_streams(model.config, outputs, given)
            patch_maps = {
                m: attention_rollout_from_attentions(attentions, rows * columns) for m, (_, attentions) in streams.items()
            }
            target_ids = _resolve_target(target, outputs.logits, model.config)
        else:
            # Every layer's pre-attention LayerNorm reports its input and output, to find each stream's last one.
            normalised = []
            hooks = [
                module.layernorm_before.register_forward_hook(lambda _, args, output: normalised.append((args[0], output)))
                for module in model.modules()
                if isinstance(getattr(module, "layernorm_before", None), nn.LayerNorm)
            ]
            try:
                with torch.enable_grad():
                    # Inputs that need a gradient make every token need one, even in a frozen encoder.
                    inputs = {name: value.detach().clone().requires_grad_(True) for name, value in inputs.items()}
                    outputs = model(**inputs, output_hidden_states=True, return_dict=True)
            finally:
                for hook in hooks:
                    hook.remove()
            with torch.enable_grad():
                streams, shared = _encoder_streams(model.config, outputs, given)
                target_ids = _resolve_target(target, outputs.logits.detach(), model.config)
                score = outputs.logits.gather(1, target_ids[:, None]).sum()
                tokens = {m: _last_layer_tokens(hidden_states, normalised) for m, (hidden_states, _) in streams.items()}
                unique = list({id(t): t for t, _ in tokens.values()}.values())
                gradients = dict(zip(map(id, unique), torch.autograd.grad(score, unique), strict=True))
            patch_maps = {
                m: grad_cam_from_tokens(t.detach()[:, part], gradients[id(t)][:, part], rows * columns)
                for m, (t, part) in tokens.items()
            }
    finally:
        model.train(was_training)
    maps = {}
    for modality, patch_map in patch_maps.items():
        maps[modality] = _to_input_resolution(patch_map.reshape(-1, rows, columns), size).detach()
    return Explanation(
        maps=maps,
        target=target_ids.detach(),
        logits=outputs.logits.detach(),
        modality_weights=None if outputs.get("modality_weights") is None else outputs.modality_weights.detach(),
        method=method,
        shared=shared,
    )


# -- the overlay figure ----------------------------------------------------------------------------------------------


def resize_map(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map resized to `size` = (height, width) of the image it explains (bilinear), kept in [0, 1]."""
    tensor = torch.as_tensor(np.asarray(heat, dtype=np.float32))[None, None]
    resized = nn.functional.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0]
    return resized.clamp(0, 1).numpy()


def plot_explanation(
    images: Mapping[str, np.ndarray],
    maps: Mapping[str, Mapping[str, np.ndarray]],
    predictions: Sequence[Mapping],
    path: str | Path,
    modality_weights: Mapping[str, float] | None = None,
    explained_label: str | None = None,
    true_label: str | None = None,
    shared: bool = False,
) -> Path:
    """
    Writes the overlay figure: per modality, the image and, per method, the image under its heat map; beside them
    the top classes as bars and the modality weights where the model has them.

    Args:
        images: per modality, the image as shown (RGB `(h, w, 3)` uint8 or [0, 1]; thermal `(h, w)` in [0, 1], drawn
            in a thermal palette).
        maps: per method (`"grad_cam"`, ...), per modality, a map in [0, 1] of the image's size.
        predictions: `[{"label", "score"}, ...]`, best first (as the pipeline returns them).
        modality_weights: `{"rgb": w, "thermal": w}`, when the model weighs the modalities.
        explained_label: the class the maps explain; true_label: the sample's true class, when known.
        shared: one encoder read both images (early fusion), so each method's two maps are one map.
    """
    from .plots import plt

    modalities = [m for m in MODALITIES if m in images]
    rows = 1 + len(maps)
    figure = plt.figure(figsize=(2.6 * len(modalities) + 4.2, 2.5 * rows + 0.6))
    grid = figure.add_gridspec(rows, len(modalities) + 1, width_ratios=[1] * len(modalities) + [1.5], wspace=0.45)
    shown = None
    for column, modality in enumerate(modalities):
        image = np.asarray(images[modality])
        base = {"cmap": "inferno", "vmin": 0, "vmax": 1} if modality == "thermal" else {}
        axis = figure.add_subplot(grid[0, column])
        axis.imshow(image, **base)
        axis.set_title("RGB" if modality == "rgb" else "thermal (hotter = brighter)", fontsize=10)
        for row, (method, method_maps) in enumerate(maps.items(), start=1):
            axis_map = figure.add_subplot(grid[row, column])
            gray = image.mean(axis=-1) if image.ndim == 3 else image
            axis_map.imshow(gray, cmap="gray")
            shown = axis_map.imshow(method_maps[modality], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axis_map.set_title(f"{METHOD_NAMES.get(method, method)} on {modality.upper() if modality == 'rgb' else modality}",
                               fontsize=10)
        for axis_off in figure.axes:
            axis_off.set_xticks([])
            axis_off.set_yticks([])
    if shown is not None:
        figure.colorbar(shown, ax=figure.axes, location="bottom", fraction=0.04, pad=0.04,
                        label="relevance (each map rescaled from its minimum to its maximum)")

    bars = figure.add_subplot(grid[0, -1])
    labels = [p["label"] for p in predictions][::-1]
    scores = [p["score"] for p in predictions][::-1]
    colours = ["tab:green" if label == true_label else "tab:blue" for label in labels]
    bars.barh(labels, scores, color=colours)
    for index, score in enumerate(scores):
        bars.text(min(score + 0.02, 0.8), index, f"{score:.2f}", va="center", fontsize=9)
    bars.set_xlim(0, 1)
    bars.set_xlabel("calibrated probability")
    title = f"top {len(predictions)} classes"
    if true_label is not None:
        title += f"\n(true class: {true_label}, {'green' if true_label in labels else 'not among them'})"
    bars.set_title(title, fontsize=10)
    text = []
    if explained_label is not None:
        text.append(f"maps explain: {explained_label}")
    if modality_weights:
        text.append("modality weights: " + ", ".join(f"{m} {w:.2f}" for m, w in modality_weights.items()))
    if shared:
        text.append("one encoder reads both images (early fusion):\neach method's map is the same on both")
    if "attention_rollout" in maps:
        text.append("attention rollout does not depend on the class")
    if text and rows > 1:
        note = figure.add_subplot(grid[1:, -1])
        note.axis("off")
        note.text(0.0, 0.9, "\n".join(text), va="top", fontsize=10, wrap=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return Path(path)


# -- overlays of files, the `vit-fer explain` command and the overlays of a trained model ----------------------------


def display_images(pair: Mapping[str, object], image_processor) -> dict[str, np.ndarray]:
    """The images of a pair as the overlay shows them: RGB as decoded, thermal through the processor's temperature
    window (what the model sees, before resizing), in [0, 1]."""
    import PIL.Image

    from .thermal import load_image

    shown = {}
    for modality, value in pair.items():
        image = load_image(value, modality)
        if modality == "rgb":
            shown[modality] = np.asarray(image.convert("RGB")) if isinstance(image, PIL.Image.Image) else np.asarray(image)
        else:
            shown[modality] = image_processor.thermal_to_unit(image).mean(axis=0)
    return shown


def write_overlay(
    classifier,
    pair: Mapping[str, object],
    path: str | Path,
    methods: Sequence[str] = METHODS,
    label: str | None = None,
    true_label: str | None = None,
    top_k: int = 3,
) -> Path:
    """
    Explains one input with a FER pipeline (`vit_fer.inference.FERPipeline`) by each of `methods` and writes the
    overlay figure of [`plot_explanation`] to `path`.

    Args:
        classifier: the pipeline.
        pair: `{"rgb": image, "thermal": image}` (paths, PIL images or arrays; the modalities the model reads).
        label: the class to explain (default: the predicted one); true_label: shown beside the bars when known.
    """
    results = {method: classifier(dict(pair), top_k=top_k, explain=True, explain_method=method, explain_label=label)
               for method in methods}
    first = next(iter(results.values()))
    return plot_explanation(
        display_images(pair, classifier.image_processor),
        {method: result["explanation"]["maps"] for method, result in results.items()},
        first["predictions"],
        path,
        modality_weights=first.get("modality_weights"),
        explained_label=first["explanation"]["label"],
        true_label=true_label,
        shared=first["explanation"]["shared"],
    )


def write_test_overlays(classifier, dataset, output_dir: str | Path, count: int = 3) -> list[Path]:
    """
    Overlays of the first test sample of each of `count` classes (in the order they come) into
    `output_dir/explanations/`, named `<index>_<true label>.png`. `dataset` is a split as `load_fer_dataset`
    returns it (image columns per modality, `label`).
    """
    folder = Path(output_dir) / OVERLAYS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    names = dataset.features["label"].names
    modalities = [m for m in model_modalities(classifier.model.config) if m in dataset.column_names]
    written, seen = [], set()
    for index, label in enumerate(dataset["label"]):
        if label in seen:
            continue
        seen.add(label)
        sample = dataset[index]
        path = folder / f"{index:04d}_{names[label]}.png"
        written.append(write_overlay(classifier, {m: sample[m] for m in modalities}, path, true_label=names[label]))
        if len(written) == count:
            break
    return written
