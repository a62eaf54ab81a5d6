"""Prediction: a transformers pipeline (`"fer-classification"`) over RGB, thermal or RGB + thermal inputs.

```python
>>> from vit_fer.inference import load_fer_pipeline
>>> classifier = load_fer_pipeline("path/to/model")
>>> classifier({"rgb": "face.jpg", "thermal": "face.png"}, top_k=3)
{'predictions': [{'label': 'happy', 'score': 0.91}, ...], 'modality_weights': {'rgb': 0.7, 'thermal': 0.3}}
```

`modality_weights` appears for late-fusion models that weigh the modalities (attention feature fusion, weighted
prediction fusion). Scores are calibrated probabilities: `softmax(logits / config.calibration_temperature)`, the
temperature that training fitted on the validation split (1.0, i.e. the plain softmax, for a model never
calibrated).
"""

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers import AutoModelForImageClassification, Pipeline, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .data import MODALITIES, BadSample, find_child_dir, pair_files, report_bad_samples, scan_modality_folder
from .explain import METHODS as EXPLANATION_METHODS
from .explain import explain as explain_model
from .explain import resize_map
from .thermal import load_image
from .transforms import DEFAULT_INPUT_NAMES, input_names_for_config


TASK = "fer-classification"


class FERPipeline(Pipeline):
    """
    Facial expression recognition from an RGB image, a thermal image, or a registered pair.

    Inputs: a dict `{"rgb": image, "thermal": image}` (either key may be left out when the model can do without
    it), or a bare image for a single-modality model; or a list of those. An image is a file path, a PIL image or
    an array (thermal formats as `ViTFERImageProcessor` reads them).

    Returns, per input, `{"predictions": [{"label", "score"}, ...top_k], "modality_weights": {"rgb", "thermal"}}`
    (the weights only for models that produce them). Scores are the calibrated probabilities
    `softmax(logits / config.calibration_temperature)`.

    With `explain=True`, also `"explanation": {"method", "label", "shared", "maps": {modality: array}}`: per modality
    given (`shared`: one encoder read both, so both maps are the same map), a
    float32 `(height, width)` map in [0, 1] at that image's own size, explaining `label` (`explain_label`, by default
    the predicted class) by `explain_method` (`"grad_cam"`, the default, or `"attention_rollout"`; see
    `vit_fer.explain`).
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        explain: bool | None = None,
        explain_method: str | None = None,
        explain_label: str | None = None,
    ):
        postprocess_params, forward_params = {}, {}
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"`top_k` must be a positive integer, got {top_k}.")
            postprocess_params["top_k"] = top_k
        if (explain_method is not None or explain_label is not None) and not explain:
            raise ValueError("`explain_method` and `explain_label` need `explain=True`.")
        if explain:
            if explain_method is not None and explain_method not in EXPLANATION_METHODS:
                raise ValueError(f"`explain_method` must be one of {EXPLANATION_METHODS}, got {explain_method!r}.")
            if explain_label is not None and explain_label not in self.model.config.label2id:
                raise ValueError(
                    f"`explain_label` must be one of {sorted(self.model.config.label2id)}, got {explain_label!r}."
                )
            forward_params["explain"] = {"method": explain_method or "grad_cam", "target": explain_label}
        return {}, forward_params, postprocess_params

    def _pair(self, inputs: Any) -> dict[str, Any]:
        names = input_names_for_config(self.model.config)
        if not isinstance(inputs, Mapping):
            if len(names) != 1:
                raise ValueError(
                    f"This {type(self.model).__name__} reads {sorted(names)}: pass {{'rgb': ..., 'thermal': ...}}."
                )
            return {next(iter(names)): inputs}
        pair = {modality: value for modality, value in inputs.items() if value is not None}
        unknown = set(pair) - set(names)
        if unknown or not pair:
            raise ValueError(
                f"This {type(self.model).__name__} reads {sorted(names)}, got {sorted(pair) or 'no image'}."
            )
        return pair

    def preprocess(self, inputs: Any) -> dict[str, torch.Tensor]:
        pair = self._pair(inputs)
        names = input_names_for_config(self.model.config)
        images = {modality: load_image(value, modality) for modality, value in pair.items()}
        try:
            features = self.image_processor(
                images=images.get("rgb"), thermal_images=images.get("thermal"), return_tensors="pt"
            )
        except (ValueError, TypeError) as error:
            files = ", ".join(str(value) for value in pair.values() if isinstance(value, (str, os.PathLike)))
            raise ValueError(f"{files}: {error}" if files else str(error)) from error
        model_inputs = {names[modality]: features[DEFAULT_INPUT_NAMES[modality]].to(self.dtype) for modality in pair}
        # Explanation maps go back to each image's own size.
        model_inputs["image_sizes"] = {modality: _image_size(image) for modality, image in images.items()}
        return model_inputs

    def _forward(self, model_inputs: dict[str, Any], explain: dict | None = None) -> dict[str, Any]:
        image_sizes = model_inputs.pop("image_sizes")
        if explain is None:
            outputs = self.model(**model_inputs)
            return {"logits": outputs.logits, "modality_weights": getattr(outputs, "modality_weights", None)}
        explanation = explain_model(self.model, **model_inputs, **explain)
        return {
            "logits": explanation.logits,
            "modality_weights": explanation.modality_weights,
            "explanation": explanation,
            "image_sizes": image_sizes,
        }

    def postprocess(self, model_outputs: dict[str, torch.Tensor | None], top_k: int = 3) -> dict[str, Any]:
        # Prediction-fusion logits are log-probabilities: the softmax gives them back unchanged (at temperature 1).
        temperature = getattr(self.model.config, "calibration_temperature", 1.0)
        probabilities = (model_outputs["logits"][0].float() / temperature).softmax(dim=-1)
        scores, indices = probabilities.topk(min(top_k, probabilities.numel()))
        id2label = self.model.config.id2label
        result = {
            "predictions": [
                {"label": id2label[int(index)], "score": float(score)}
                for score, index in zip(scores, indices, strict=True)
            ]
        }
        weights = model_outputs["modality_weights"]
        if weights is not None:
            result["modality_weights"] = dict(zip(MODALITIES, weights[0].float().tolist(), strict=True))
        explanation = model_outputs.get("explanation")
        if explanation is not None:
            sizes = model_outputs["image_sizes"]
            result["explanation"] = {
                "method": explanation.method,
                "label": id2label[int(explanation.target[0])],
                "shared": explanation.shared,
                "maps": {m: resize_map(heat[0].cpu().numpy(), sizes[m]) for m, heat in explanation.maps.items()},
            }
        return result


def _image_size(image: Any) -> tuple[int, int]:
    """(height, width) of a decoded image: a PIL image or an array with the rows first."""
    if isinstance(image, PIL.Image.Image):
        return image.height, image.width
    return tuple(np.asarray(image).shape[:2])


PIPELINE_REGISTRY.register_pipeline(
    TASK, pipeline_class=FERPipeline, pt_model=AutoModelForImageClassification, type="image"
)


def load_fer_pipeline(
    model: str | os.PathLike, *, device: int | str | torch.device | None = None, trust_remote_code: bool = True
) -> FERPipeline:
    """
    The FER pipeline of a saved model folder or Hub id, with its `ViTFERImageProcessor`.

    Args:
        model (`str` or `os.PathLike`): Folder or Hub id holding the model and its `preprocessor_config.json`.
        device (`int`, `str` or `torch.device`, *optional*): Where to run; defaults to the pipeline's choice.
        trust_remote_code (`bool`, *optional*, defaults to `True`): Load the model code saved beside the weights.

    Raises:
        `ValueError` in one line when `model` is a folder that is not a saved vit-fer model, a path that does not
        exist, or a Hub id that cannot be loaded (rather than the Hub's connection error for a mistyped path).
    """
    check_model_reference(model)
    try:
        return pipeline(TASK, model=str(model), device=device, trust_remote_code=trust_remote_code)
    except OSError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--model {model}: no such folder here, and no loadable Hub model of that id ({reason})") from error


def check_model_reference(model: str | os.PathLike) -> None:
    """Refuses, naming what is wrong, a `model` that is a path to nothing or a folder without a saved vit-fer model
    (its `config.json` with a vit-fer `model_type`, and `preprocessor_config.json`). A Hub id passes."""
    path = Path(model).expanduser()
    if not path.exists():
        text = str(model)
        # A Hub id is "name" or "namespace/name"; anything else can only have meant a local path.
        if text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text:
            raise ValueError(f"--model {model} does not exist.")
        return
    if not path.is_dir():
        raise ValueError(f"--model {model} is a file; give the folder of a saved vit-fer model (or a Hub id).")
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError, AttributeError):
        model_type = None
    if not str(model_type or "").startswith("vit-fer"):
        found = "no readable config.json" if model_type is None else f"a {model_type or 'untyped'!r} model"
        raise ValueError(f"--model {model} is not a saved vit-fer model ({found}); give the folder train.py wrote.")
    if not (path / "preprocessor_config.json").is_file():
        raise ValueError(f"--model {model} has no preprocessor_config.json: save the image processor beside the model.")


def find_image_pairs(
    input_dir: str | os.PathLike, modalities: Sequence[str], skip_bad_samples: bool = False
) -> list[dict[str, Path]]:
    """
    Pairs of images below `input_dir/rgb/` and `input_dir/thermal/` (folder names up to case, matched by relative
    path without extension, as in the training folder layout), for the `modalities` that have a folder there.

    Raises:
        `BadDataError` listing unpaired and duplicate files (logged and left out instead with `skip_bad_samples`);
        `ValueError` when no modality folder exists.
    """
    root = Path(input_dir)
    folders = {modality: find_child_dir(root, modality) for modality in modalities}
    folders = {modality: folder for modality, folder in folders.items() if folder is not None}
    if not folders:
        raise ValueError(
            f"`input_dir` {root} must hold a folder per modality the model reads: {[f'{m}/' for m in modalities]}."
        )
    bad: list[BadSample] = []
    files = {modality: scan_modality_folder(folder, modality, bad) for modality, folder in folders.items()}
    pairs = [paths for _, paths in pair_files(files, bad)]
    report_bad_samples(bad, str(root), skip_bad_samples)
    return pairs
