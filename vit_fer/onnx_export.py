"""ONNX export of a saved vit-fer model: `vit-fer export-onnx DIR OUT.onnx`.

The graph is traced by `torch.onnx.export`'s dynamo exporter. Its inputs are named as the model's arguments,
`pixel_values` and, for fusion models, `thermal_pixel_values` (float32 `(batch, 3, height, width)`, as the image
processor returns them), with a dynamic batch axis; its outputs are `logits` (the model's, before calibration:
divide them by `config.calibration_temperature` for the pipeline's calibrated probabilities) and, for models that
weigh the modalities, `modality_weights`. Beside the `.onnx` file go the model's `config.json` (architecture, `id2label`) and
`preprocessor_config.json` (resizing, normalisation, thermal decoding) with the code files their `auto_map` names,
so that `AutoConfig` and `AutoImageProcessor` load from that folder (`trust_remote_code=True`) and an ONNX Runtime
server can feed the graph and name its classes; the label names are also in the graph's metadata (`id2label`, JSON).
"""

import json
import os
from pathlib import Path

import torch


SIDECAR_FILES = ("config.json", "preprocessor_config.json")
"""Copied beside the graph, with the code files their `auto_map` names."""


class _ExportedForward(torch.nn.Module):
    """The model's inference forward with tensors in and tensors out, as the exporter traces it."""

    def __init__(self, model: torch.nn.Module, output_names: list[str]):
        super().__init__()
        self.model = model
        self.output_names = output_names

    def forward(
        self, pixel_values: torch.Tensor, thermal_pixel_values: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        inputs = {"pixel_values": pixel_values}
        if thermal_pixel_values is not None:
            inputs["thermal_pixel_values"] = thermal_pixel_values
        outputs = self.model(**inputs, return_dict=True)
        return tuple(outputs[name] for name in self.output_names)


def export_onnx(
    model_dir: str | os.PathLike, output: str | os.PathLike, opset_version: int | None = None
) -> Path:
    """
    Exports the model saved in `model_dir` (a folder or Hub id, loaded with `trust_remote_code=True`) to the ONNX
    file `output`, and copies its `config.json` and `preprocessor_config.json` (with their code) beside it.

    Args:
        model_dir (`str` or `os.PathLike`): The saved model and its image processor.
        output (`str` or `os.PathLike`): The `.onnx` file to write; it must not exist.
        opset_version (`int`, *optional*): ONNX opset; defaults to the exporter's.

    Returns:
        The path of the `.onnx` file.

    Raises:
        `FileExistsError` when `output`, or a different file of the same name as one copied beside it, is already
        there.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification
    from transformers.utils import cached_file

    from .inference import check_model_reference
    from .transforms import input_names_for_config

    check_model_reference(model_dir)
    output = Path(output)
    if output.suffix != ".onnx":
        raise ValueError(f"`output` must be an .onnx file, got {output}.")
    if output.exists():
        raise FileExistsError(f"`output` {output} exists: it is not overwritten. Remove it or choose another path.")
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
    # Eager attention: the exporter then sees plain matmuls and softmax, which ONNX Runtime fuses itself.
    model = AutoModelForImageClassification.from_pretrained(
        model_dir, trust_remote_code=True, attn_implementation="eager"
    ).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=True)
    fed = set(input_names_for_config(config).values())
    input_names = [name for name in ("pixel_values", "thermal_pixel_values") if name in fed]

    size = processor.size
    channels = {
        "pixel_values": getattr(config, "rgb_num_channels", config.num_channels),
        "thermal_pixel_values": getattr(config, "thermal_num_channels", config.num_channels),
    }
    example = {name: torch.zeros(2, channels[name], size["height"], size["width"]) for name in input_names}
    with torch.no_grad():
        returned = model(**example, return_dict=True)
    output_names = [name for name in ("logits", "modality_weights") if returned.get(name) is not None]

    sidecars = {name: Path(cached_file(model_dir, name)) for name in SIDECAR_FILES}
    for name in SIDECAR_FILES:
        auto_map = json.loads(sidecars[name].read_text()).get("auto_map", {})
        for reference in auto_map.values():
            module = f"{reference.split('.')[0]}.py"
            sidecars.setdefault(module, Path(cached_file(model_dir, module)))
    for name, source in sidecars.items():
        target = output.parent / name
        if target.exists() and target.read_bytes() != source.read_bytes():
            raise FileExistsError(
                f"{target} exists and is not {source}: it is not overwritten. Export to another folder."
            )

    batch = torch.export.Dim("batch", min=1)
    output.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        _ExportedForward(model, output_names).eval(),
        args=(),
        kwargs=example,
        input_names=input_names,
        output_names=output_names,
        dynamic_shapes={name: {0: batch} for name in input_names},
        opset_version=opset_version,
        dynamo=True,
        verbose=False,
    )
    program.model.metadata_props.update(
        {
            "id2label": json.dumps({str(index): label for index, label in model.config.id2label.items()}),
            "architecture": type(model).__name__,
        }
    )
    program.save(output)
    for name, source in sidecars.items():
        if not (output.parent / name).exists():
            (output.parent / name).write_bytes(source.read_bytes())
    return output


__all__ = ["export_onnx"]
