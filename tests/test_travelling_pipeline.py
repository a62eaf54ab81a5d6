"""The FER pipeline travels with every saved model: `pipeline(model=folder, trust_remote_code=True)` builds it where
vit_fer is not installed, takes RGB + thermal pairs, and transformers' one-image pipeline refuses fusion models
with a message that says how to call them."""

import json
import os
import textwrap

import numpy as np
import PIL.Image
import pytest
from tiny_models import run_without_vit_fer
from transformers import pipeline

from vit_fer.inference import FERPipeline, load_fer_pipeline
from vit_fer.pipeline_vit_fer import FERClassificationPipeline


pytestmark = pytest.mark.end_to_end


HUB_USER = textwrap.dedent(
    """
    import json, sys
    sys.modules["vit_fer"] = None  # exactly what a Hub user has: no vit_fer package
    from transformers import pipeline

    folder, rgb, thermal = sys.argv[1:4]
    classifier = pipeline(model=folder, trust_remote_code=True)
    result = {
        "class": type(classifier).__module__ + "." + type(classifier).__name__,
        "keyword": classifier(rgb, thermal_images=thermal, top_k=2),
        "dict": classifier({"rgb": rgb, "thermal": thermal}, top_k=2),
        "batch": classifier([rgb, rgb], thermal_images=[thermal, thermal], top_k=2),
    }
    try:
        result["one_image"] = classifier(rgb, top_k=2)
    except ValueError as error:
        result["one_image"] = str(error)
    try:
        result["image_classification"] = pipeline("image-classification", model=folder, trust_remote_code=True)(rgb)
    except ValueError as error:
        result["image_classification"] = str(error)
    print(json.dumps(result))
    """
)


@pytest.fixture
def face_files(tmp_path):
    rng = np.random.default_rng(0)
    rgb, thermal = tmp_path / "face.png", tmp_path / "face-thermal.png"
    PIL.Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(rgb)
    counts = rng.integers(29_300, 31_300, (40, 40)).astype(np.uint16)  # 16-bit radiometric, centi-kelvin
    PIL.Image.fromarray(counts).save(thermal)
    return str(rgb), str(thermal)


@pytest.mark.parametrize("variant", ["early-concat", "late-attention"])
def test_pipeline_travels_with_the_model(variant, saved_fer_model, face_files, tmp_path):
    folder = saved_fer_model(variant)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["fer-classification"]["impl"] == "pipeline_vit_fer.FERClassificationPipeline"
    assert {"pipeline_vit_fer.py", "image_processing_vit_fer.py", "thermal.py"} <= set(os.listdir(folder))

    result = run_without_vit_fer(HUB_USER, folder, *face_files, tmp_path=tmp_path)
    assert result["class"].endswith("pipeline_vit_fer.FERClassificationPipeline")
    assert not result["class"].startswith("vit_fer")  # the copy saved beside the model, not our package

    # Same predictions as vit_fer's own pipeline (the travelling class plus explanations), which vit_fer users get
    # although the folder names its own copy.
    ours = load_fer_pipeline(folder)
    assert isinstance(ours, FERPipeline) and isinstance(ours, FERClassificationPipeline)
    expected = ours(face_files[0], thermal_images=face_files[1], top_k=2)
    assert expected["modalities"] == ["rgb", "thermal"]
    for key in ("keyword", "dict"):
        assert [p["label"] for p in result[key]["predictions"]] == [p["label"] for p in expected["predictions"]]
        for got, want in zip(result[key]["predictions"], expected["predictions"]):
            assert got["score"] == pytest.approx(want["score"], abs=1e-5)
    assert result["batch"] == [result["keyword"], result["keyword"]]

    assert "reads registered RGB + thermal pairs" in result["image_classification"]
    assert "thermal_images=" in result["image_classification"]
    if variant.startswith("late"):
        # Late fusion predicts from the one image it is given, and says which.
        assert result["one_image"]["modalities"] == ["rgb"]
        thermal_only = load_fer_pipeline(folder)({"thermal": face_files[1]})
        assert thermal_only["modalities"] == ["thermal"]
    else:
        assert "reads registered RGB + thermal pairs" in result["one_image"]


def test_single_modality_models_keep_the_standard_pipeline(saved_fer_model, face_files):
    folder = saved_fer_model("rgb")
    standard = pipeline("image-classification", model=str(folder), trust_remote_code=True)
    ours = load_fer_pipeline(folder)
    top = standard(face_files[0], top_k=1)[0]
    assert ours(face_files[0], top_k=1)["predictions"][0] == pytest.approx(top)


def test_model_saved_without_its_processor_gets_the_default_one(saved_fer_model, face_files, tmp_path):
    from vit_fer import LateFusionViT

    model = LateFusionViT.from_pretrained(saved_fer_model("late-concat"))
    model.save_pretrained(tmp_path / "bare")
    assert not (tmp_path / "bare" / "preprocessor_config.json").exists()
    classifier = pipeline(model=str(tmp_path / "bare"), trust_remote_code=True)
    assert classifier.image_processor.size == {"height": 32, "width": 32}
    assert classifier(face_files[0], thermal_images=face_files[1])["modalities"] == ["rgb", "thermal"]
