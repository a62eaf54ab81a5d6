"""Prediction: the `"fer-classification"` pipeline over RGB, thermal or RGB + thermal inputs.

[`FERPipeline`] is the pipeline that travels with every saved model (`pipeline_vit_fer.FERClassificationPipeline`,
which `pipeline(model=..., trust_remote_code=True)` builds without vit_fer) plus explanation maps.

```python
>>> from vit_fer.inference import load_fer_pipeline
>>> classifier = load_fer_pipeline("path/to/model")
>>> classifier({"rgb": "face.jpg", "thermal": "face.png"}, top_k=3)
{'predictions': [{'label': 'happy', 'score': 0.91}, ...], 'modalities': ['rgb', 'thermal'],
 'modality_weights': {'rgb': 0.7, 'thermal': 0.3}}
```

`modality_weights` appears for late-fusion models that weigh the modalities (attention feature fusion, weighted
prediction fusion). Scores are calibrated probabilities: `softmax(logits / config.calibration_temperature)`, the
temperature that training fitted on the validation split (1.0, i.e. the plain softmax, for a model never
calibrated).
"""

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageClassification, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .data import BadSample, find_child_dir, pair_files, report_bad_samples, scan_modality_folder
from .explain import METHODS as EXPLANATION_METHODS
from .explain import explain as explain_model
from .explain import resize_map
from .pipeline_vit_fer import TASK, FERClassificationPipeline


class FERPipeline(FERClassificationPipeline):
    """
    The FER pipeline ([`~pipeline_vit_fer.FERClassificationPipeline`]: inputs and results) with explanations.

    With `explain=True`, each result also has `"explanation": {"method", "label", "shared", "maps": {modality:
    array}}`: per modality given (`shared`: one encoder read both, so both maps are the same map), a float32
    `(height, width)` map in [0, 1] at that image's own size, explaining `label` (`explain_label`, by default the
    predicted class) by `explain_method` (`"grad_cam"`, the default, or `"attention_rollout"`; see
    `vit_fer.explain`).
    """

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        function_to_apply: str | None = None,
        explain: bool | None = None,
        explain_method: str | None = None,
        explain_label: str | None = None,
    ):
        preprocess_params, forward_params, postprocess_params = super()._sanitize_parameters(
            top_k=top_k, function_to_apply=function_to_apply
        )
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
        return preprocess_params, forward_params, postprocess_params

    def _forward(self, inputs: dict[str, Any], explain: dict | None = None) -> dict[str, Any]:
        if explain is None:
            return super()._forward(inputs)
        explanation = explain_model(self.model, **inputs["model_inputs"], **explain)
        return {
            "logits": explanation.logits,
            "modality_weights": explanation.modality_weights,
            "modalities": inputs["modalities"],
            "explanation": explanation,
            "image_sizes": inputs["image_sizes"],
        }

    def postprocess(
        self, model_outputs: dict[str, Any], top_k: int = 3, function_to_apply: str | None = None
    ) -> dict[str, Any]:
        result = super().postprocess(model_outputs, top_k=top_k, function_to_apply=function_to_apply)
        explanation = model_outputs.get("explanation")
        if explanation is not None:
            sizes = model_outputs["image_sizes"]
            result["explanation"] = {
                "method": explanation.method,
                "label": self.model.config.id2label[int(explanation.target[0])],
                "shared": explanation.shared,
                "maps": {m: resize_map(heat[0].cpu().numpy(), sizes[m]) for m, heat in explanation.maps.items()},
            }
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

    Raises:
        `ValueError` in one line when `model` is a folder that is not a saved vit-fer model, a path that does not
        exist, or a Hub id that cannot be loaded (rather than the Hub's connection error for a mistyped path).
    """
    check_model_reference(model)
    try:
        # The saved folder names its own copy of the pipeline (`custom_pipelines`), which transformers would prefer;
        # this one adds the explanations.
        return pipeline(
            TASK, model=str(model), device=device, trust_remote_code=trust_remote_code, pipeline_class=FERPipeline
        )
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
