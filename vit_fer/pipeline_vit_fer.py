# Copyright 2026 The vit-fer authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The `"fer-classification"` pipeline: facial expression recognition from RGB, thermal, or RGB + thermal faces.

This file travels with every saved model (the config's `custom_pipelines` names it, as transformers does for custom
pipelines), so that where vit_fer is not installed

```python
>>> from transformers import pipeline
>>> classifier = pipeline(model="path/or/hub-id", trust_remote_code=True)
>>> classifier("face.jpg", thermal_images="face.png", top_k=3)
{'predictions': [{'label': 'happy', 'score': 0.91}, ...], 'modalities': ['rgb', 'thermal']}
```

It imports nothing of vit_fer but its sibling files that travel with it (the image processor, the file decoding).
vit_fer's own `FERPipeline` extends it with explanation maps (`explain=True`), which need vit_fer.
"""

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers import Pipeline
from transformers.utils import logging

from .image_processing_vit_fer import DEFAULT_INPUT_NAMES, ViTFERImageProcessor, input_names_for_config
from .thermal import load_image


logger = logging.get_logger(__name__)

TASK = "fer-classification"
"""The pipeline's task name, recorded in every saved model's `config.custom_pipelines`."""

MODALITIES = tuple(DEFAULT_INPUT_NAMES)


def how_to_call(model_name: str) -> str:
    """How to run a model that reads RGB + thermal pairs through a pipeline."""
    return (
        f"{model_name} reads registered RGB + thermal pairs: use its own pipeline, "
        "`classifier = pipeline(model=PATH_OR_HUB_ID, trust_remote_code=True)` (task 'fer-classification'), and "
        "call `classifier(rgb_image, thermal_images=thermal_image)` or `classifier({'rgb': ..., 'thermal': ...})`."
    )


def custom_pipelines_entry() -> dict[str, dict[str, Any]]:
    """The `config.custom_pipelines` entry that makes `pipeline(model=..., trust_remote_code=True)` build
    [`FERClassificationPipeline`] from this file (the format of transformers' `Pipeline.save_pretrained`)."""
    return {
        TASK: {
            "impl": f"{__name__.rsplit('.', 1)[-1]}.{FERClassificationPipeline.__name__}",
            "pt": ["AutoModelForImageClassification"],
            "tf": [],
            "type": "image",
        }
    }


# What a score is, as in transformers' classification pipelines: a probability over the classes (softmax), one
# probability per label (sigmoid: multi-label), or the model's output itself (regression targets).
SCORE_FUNCTIONS = {"softmax": lambda x: x.softmax(dim=-1), "sigmoid": torch.sigmoid, "none": lambda x: x}
SCORE_FUNCTION_OF_PROBLEM_TYPE = {"multi_label_classification": "sigmoid", "regression": "none"}


class FERClassificationPipeline(Pipeline):
    """
    Facial expression recognition from an RGB image, a thermal image, or a registered pair.

    Inputs: `classifier(rgb_image, thermal_images=thermal_image)`, a dict `{"rgb": image, "thermal": image}`, or a
    bare image; or lists of those. A late-fusion model predicts from whichever modality it is given (a bare image is
    read as RGB); an early-fusion model needs both. An image is a file path, a PIL image or an array (thermal formats
    as `ViTFERImageProcessor` reads them).

    Returns, per input, `{"predictions": [{"label", "score"}, ...top_k], "modalities": [...],
    "modality_weights": {"rgb", "thermal"}}`: `modalities` lists the images the prediction used; the weights come
    only from models that produce them. Scores are the calibrated probabilities
    `softmax(logits / config.calibration_temperature)` of a single-label model, each label's probability
    `sigmoid(logits)` of a multi-label one, and the predicted values of a regression one (`config.problem_type`;
    `function_to_apply="softmax" | "sigmoid" | "none"` overrides it, as in transformers' pipelines).
    """

    _load_processor = False
    # Optional: a model saved without its processor gets the default one (with a warning).
    _load_image_processor = None
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.image_processor is None:
            logger.warning(
                "No image processor could be loaded with the model: using ViTFERImageProcessor's defaults at the "
                f"model's {self.model.config.image_size} px. Predictions are only right if training used them; save "
                "the training processor beside the model (`processor.save_pretrained(folder)`)."
            )
            self.image_processor = ViTFERImageProcessor(size=self.model.config.image_size)

    def __call__(self, inputs: Any = None, thermal_images: Any = None, **kwargs):
        """Classifies `inputs` (see the class documentation); `thermal_images` pairs thermal images with the RGB
        `inputs` one to one (or stands alone when `inputs` is `None`)."""
        if thermal_images is not None:
            inputs = self._zip_modalities(inputs, thermal_images)
        if inputs is None:
            raise ValueError("Pass an image, a {'rgb': ..., 'thermal': ...} dict, or `thermal_images`; got nothing.")
        return super().__call__(inputs, **kwargs)

    @staticmethod
    def _zip_modalities(rgb: Any, thermal: Any) -> Any:
        if rgb is None:
            return [{"thermal": t} for t in thermal] if isinstance(thermal, list) else {"thermal": thermal}
        if isinstance(rgb, list) != isinstance(thermal, list) or (isinstance(rgb, list) and len(rgb) != len(thermal)):
            raise ValueError(
                "`thermal_images` must pair one to one with the RGB images: one image each, or lists of the same "
                f"length; got {type(rgb).__name__} and {type(thermal).__name__}"
                + (f" of {len(rgb)} and {len(thermal)}" if isinstance(rgb, list) and isinstance(thermal, list) else "")
                + "."
            )
        if isinstance(rgb, list):
            return [{"rgb": r, "thermal": t} for r, t in zip(rgb, thermal, strict=True)]
        return {"rgb": rgb, "thermal": thermal}

    def _sanitize_parameters(self, top_k: int | None = None, function_to_apply: str | None = None):
        postprocess_params = {}
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"`top_k` must be a positive integer, got {top_k}.")
            postprocess_params["top_k"] = top_k
        if function_to_apply is not None:
            if function_to_apply not in SCORE_FUNCTIONS:
                raise ValueError(
                    f"`function_to_apply` must be one of {list(SCORE_FUNCTIONS)}, got {function_to_apply!r}."
                )
            postprocess_params["function_to_apply"] = function_to_apply
        return {}, {}, postprocess_params

    def _pair(self, inputs: Any) -> dict[str, Any]:
        names = input_names_for_config(self.model.config)
        if not isinstance(inputs, Mapping):
            if len(names) == 1:
                return {next(iter(names)): inputs}
            if getattr(self.model, "accepts_missing_modality", False):
                # Late fusion predicts from the one image it is given; its main input is RGB.
                return {"rgb": inputs}
            raise ValueError(how_to_call(type(self.model).__name__))
        pair = {modality: value for modality, value in inputs.items() if value is not None}
        unknown = set(pair) - set(names)
        if unknown or not pair:
            raise ValueError(
                f"This {type(self.model).__name__} reads {sorted(names)}, got {sorted(pair) or 'no image'}."
            )
        return pair

    def preprocess(self, inputs: Any) -> dict[str, Any]:
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
        model_inputs = {names[m]: features[DEFAULT_INPUT_NAMES[m]].to(self.dtype) for m in pair}
        return {
            "model_inputs": model_inputs,
            "modalities": [m for m in MODALITIES if m in pair],
            "image_sizes": {modality: _image_size(image) for modality, image in images.items()},
        }

    def _forward(self, inputs: dict[str, Any]) -> dict[str, Any]:
        outputs = self.model(**inputs["model_inputs"])
        return {
            "logits": outputs.logits,
            "modality_weights": getattr(outputs, "modality_weights", None),
            "modalities": inputs["modalities"],
        }

    def postprocess(
        self, model_outputs: dict[str, Any], top_k: int = 3, function_to_apply: str | None = None
    ) -> dict[str, Any]:
        logits = model_outputs["logits"][0].float()
        function_to_apply = function_to_apply or SCORE_FUNCTION_OF_PROBLEM_TYPE.get(
            self.model.config.problem_type, "softmax"
        )
        if function_to_apply == "softmax":
            # Prediction-fusion logits are log-probabilities: the softmax gives them back unchanged (at temperature
            # 1). The temperature is fitted for single-label classification only, hence only here.
            temperature = getattr(self.model.config, "calibration_temperature", 1.0)
            logits = logits / temperature
        scores, indices = SCORE_FUNCTIONS[function_to_apply](logits).topk(min(top_k, logits.numel()))
        id2label = self.model.config.id2label
        result = {
            "predictions": [
                {"label": id2label[int(index)], "score": float(score)}
                for score, index in zip(scores, indices, strict=True)
            ],
            "modalities": model_outputs["modalities"],
        }
        weights = model_outputs["modality_weights"]
        if weights is not None:
            result["modality_weights"] = dict(zip(MODALITIES, weights[0].float().tolist(), strict=True))
        return result


def _image_size(image: Any) -> tuple[int, int]:
    """(height, width) of a decoded image: a PIL image or an array with the rows first."""
    if isinstance(image, PIL.Image.Image):
        return image.height, image.width
    return tuple(np.asarray(image).shape[:2])


__all__ = ["TASK", "FERClassificationPipeline", "custom_pipelines_entry", "how_to_call"]
