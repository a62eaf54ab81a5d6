"""`import vit_fer` stays cheap (the heavy modules load on first use) and still teaches the Auto classes our models.
The CPU time itself is measured in benchmarks/import_time.py, not here.

One fresh interpreter answers the three tests, in the order a user meets them: a bare `import vit_fer` (which heavy
modules it loaded), then Auto classes on a saved folder, then every public name."""

import json
import os
import subprocess
import sys

import pytest

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

FIRST_HOUR = """
import json, sys
import vit_fer
report = {{"heavy_after_import": [m for m in {heavy!r} if m in sys.modules]}}

from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification
models = [auto_class.from_pretrained({folder!r}) for auto_class in (AutoModelForImageClassification, AutoModel)]
report["auto_classes_are_ours"] = [type(model) is vit_fer.LateFusionViT for model in models]
report["processor"] = type(AutoImageProcessor.from_pretrained({folder!r})).__name__

report["public_names"] = [all(hasattr(vit_fer, name) for name in vit_fer.__all__), "ViTForFER" in dir(vit_fer)]
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def first_hour(saved_fer_model):
    code = FIRST_HOUR.format(heavy=HEAVY_MODULES, folder=str(saved_fer_model("late-attention")))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_import_vit_fer_loads_no_heavy_module(first_hour):
    assert first_hour["heavy_after_import"] == []


def test_auto_classes_resolve_a_saved_folder_after_a_bare_import(first_hour):
    assert first_hour["auto_classes_are_ours"] == [True, True]
    assert first_hour["processor"] == "ViTFERImageProcessor"


def test_public_names_load_on_first_use(first_hour):
    assert first_hour["public_names"] == [True, True]
