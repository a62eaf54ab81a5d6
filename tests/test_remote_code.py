"""A saved folder is a Hub repository: it loads with `trust_remote_code=True` in a process that cannot import
vit_fer, through both AutoModel and AutoModelForImageClassification, with identical logits."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import MID_VARIANTS, VARIANTS, make_inputs, run_without_vit_fer, write_tiny_vit

from vit_fer import create_multimodal_vit_model


LOADER = textwrap.dedent(
    """
    import json, sys
    sys.modules["vit_fer"] = None  # exactly what a Hub user has: no vit_fer package
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForImageClassification

    results = {}
    for folder, inputs_file in zip(sys.argv[1::2], sys.argv[2::2]):
        inputs = load_file(inputs_file)
        result = results[folder] = {}
        for auto_class in (AutoModel, AutoModelForImageClassification):
            model = auto_class.from_pretrained(folder, trust_remote_code=True).eval()
            with torch.no_grad():
                result[auto_class.__name__] = {
                    "class": type(model).__name__,
                    "module": type(model).__module__,
                    "logits": model(**inputs).logits.tolist(),
                }
    print(json.dumps(results))
    """
)
REMOTE_VARIANTS = ["thermal", "early-concat", "late-attention", "late-prediction-weighted", *MID_VARIANTS]


@pytest.fixture(scope="module")
def loaded_without_vit_fer(tmp_path_factory):
    """Every variant saved (each folder named after it, as Hub repositories are), then all loaded by one process
    that cannot import vit_fer: what each variant's test checks, for one interpreter start instead of one each."""
    root = tmp_path_factory.mktemp("remote-code")
    checkpoint = write_tiny_vit(root / "vit")
    saved, arguments = {}, []
    for variant in REMOTE_VARIANTS:
        model = create_multimodal_vit_model(model_name=checkpoint, **VARIANTS[variant]).eval()
        folder = root / f"vit-fer-{variant}"
        model.save_pretrained(folder)
        inputs = make_inputs(model, with_labels=False)
        save_file(inputs, root / f"{variant}-inputs.safetensors")
        with torch.no_grad():
            expected = model(**inputs).logits
        saved[variant] = (folder, type(model).__name__, expected)
        arguments += [folder, root / f"{variant}-inputs.safetensors"]
    results = run_without_vit_fer(LOADER, *arguments, tmp_path=root)
    return {variant: (folder, name, expected, results[str(folder)]) for variant, (folder, name, expected) in saved.items()}


@pytest.mark.parametrize("variant", REMOTE_VARIANTS)
def test_saved_folder_loads_without_vit_fer(variant, loaded_without_vit_fer):
    folder, name, expected, result = loaded_without_vit_fer[variant]

    files = set(os.listdir(folder))
    assert {"config.json", "model.safetensors", "configuration_vit_fer.py", "modeling_vit_fer.py"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == auto_map["AutoModelForImageClassification"] == f"modeling_vit_fer.{name}"

    assert set(result) == {"AutoModel", "AutoModelForImageClassification"}
    for loaded in result.values():
        assert loaded["class"] == name
        assert not loaded["module"].startswith("vit_fer")  # the copied file, not our package
        torch.testing.assert_close(torch.tensor(loaded["logits"]), expected, atol=1e-6, rtol=0)


def test_saved_code_on_an_older_transformers_stops_with_one_sentence(saved_fer_model, tmp_path):
    """On transformers 4.x the dataclass configs cannot be defined; the travelling config file must say which
    transformers it needs instead. CI cannot cheaply install a second torch + transformers 4.57, so the installed
    transformers reports an old version here (checked by hand on a real 4.57.6: the same message)."""
    folder = saved_fer_model("late-attention")
    program = textwrap.dedent(
        f"""
        import importlib.util, sys
        sys.modules["vit_fer"] = None
        import transformers
        transformers.__version__ = "4.57.6"
        spec = importlib.util.spec_from_file_location("configuration_vit_fer", {str(folder / "configuration_vit_fer.py")!r})
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        """
    )
    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines()[-1] == (
        "ImportError: This vit-fer model needs transformers>=5.23, but transformers 4.57.6 is installed: "
        "pip install -U 'transformers>=5.23'."
    )
