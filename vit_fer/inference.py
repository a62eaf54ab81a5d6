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

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageClassification, Pipeline, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .data import MODALITIES, BadSample, find_child_dir, pair_files, report_bad_samples, scan_modality_folder
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
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, top_k: int | None = None):
        postprocess_params = {}
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"`top_k` must be a positive integer, got {top_k}.")
            postprocess_params["top_k"] = top_k
        return {}, {}, postprocess_params

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
        features = self.image_processor(
            images=images.get("rgb"), thermal_images=images.get("thermal"), return_tensors="pt"
        )
        return {names[modality]: features[DEFAULT_INPUT_NAMES[modality]].to(self.dtype) for modality in pair}

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
        outputs = self.model(**model_inputs)
        return {"logits": outputs.logits, "modality_weights": getattr(outputs, "modality_weights", None)}

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
        return result


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
    """
    return pipeline(TASK, model=str(model), device=device, trust_remote_code=trust_remote_code)


def find_image_pairs(input_dir: str | os.PathLike, modalities: Sequence[str]) -> list[dict[str, Path]]:
    """
    Pairs of images below `input_dir/rgb/` and `input_dir/thermal/` (folder names up to case, matched by relative
    path without extension, as in the training folder layout), for the `modalities` that have a folder there.

    Raises:
        `BadDataError` listing unpaired and duplicate files; `ValueError` when no modality folder exists.
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
    report_bad_samples(bad, str(root))
    return pairs
