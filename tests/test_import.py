"""`import vit_fer` stays cheap (the heavy modules load on first use) and still teaches the Auto classes our models.
The CPU time itself is measured in benchmarks/import_time.py, not here."""

import json
import os
import subprocess
import sys

# transformers' modeling and image-processing modules (which pull torch._dynamo and torch.distributed.tensor), the
# Trainer, pipelines, datasets, evaluate, matplotlib: each costs a large part of `import transformers, torch` again.
HEAVY_MODULES = [
    "transformers.modeling_utils",
    "transformers.image_processing_utils",
    "transformers.trainer",
    "transformers.pipelines",
    "torch._dynamo",
    "datasets",
    "evaluate",
    "matplotlib",
]


def run_python(code: str) -> str:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=environment).stdout


def test_import_vit_fer_loads_no_heavy_module():
    loaded = json.loads(run_python(f"import json, sys, vit_fer; print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"))
    assert loaded == []


def test_auto_classes_resolve_a_saved_folder_after_a_bare_import(saved_fer_model):
    folder = saved_fer_model("late-attention")
    code = f"""
import vit_fer
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification
for auto_class in (AutoModelForImageClassification, AutoModel):
    model = auto_class.from_pretrained({str(folder)!r})
    assert type(model) is vit_fer.LateFusionViT, type(model)
print(type(AutoImageProcessor.from_pretrained({str(folder)!r})).__name__)
"""
    assert run_python(code).strip() == "ViTFERImageProcessor"


def test_public_names_load_on_first_use():
    code = "import vit_fer; print(all(hasattr(vit_fer, name) for name in vit_fer.__all__), 'ViTForFER' in dir(vit_fer))"
    assert run_python(code).split() == ["True", "True"]
