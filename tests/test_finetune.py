"""train.py --model_name_or_path with a saved vit-fer model (continued fine-tuning, same or another label set) or a
plain ViT checkpoint, and --image_size: the checkpoint's resolution by default, another one by resampling the
position embeddings once at load — equal to transformers' `interpolate_pos_encoding` on the same weights."""

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_script import train
from tiny_models import VARIANTS, write_tiny_vit
from transformers import ViTModel

from vit_fer import create_multimodal_vit_model, synthesize_dataset
from vit_fer.image_processing_vit_fer import ViTFERImageProcessor


pytestmark = pytest.mark.end_to_end


RUN = [
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--learning_rate", "1e-3",
    "--logging_steps", "2", "--disable_tqdm", "true", "--seed", "7", "--num_train_epochs", "1",
    "--test_reports", "false",
]  # fmt: skip
FROM_SCRATCH = [
    "--image_size", "32", "--patch_size", "8", "--hidden_size", "32", "--num_hidden_layers", "2",
    "--num_attention_heads", "4", "--intermediate_size", "64",
]  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "fer"
    return synthesize_dataset(folder, num_samples=56, image_size=32, seed=3, num_subjects=7, progress=False)


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    return write_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


def arguments(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [*RUN, "--dataset_dir", str(data_dir), "--output_dir", str(output_dir), *extra]


def build(*argv: str):
    model_args, data_args, training_args = train.parse_arguments(list(argv))
    return train.build_model(model_args, data_args, training_args)


@pytest.mark.parametrize(
    "design",
    [["--mode", "combined", "--fusion_strategy", "early", "--fusion_type", "concat"],
     ["--mode", "combined", "--fusion_strategy", "late", "--fusion_type", "attention"],
     ["--mode", "combined", "--fusion_strategy", "mid", "--fusion_layer", "1"]],
    ids=["early-concat", "late-attention", "mid"],
)  # fmt: skip
def test_continue_fine_tuning_a_saved_model(data_dir, tmp_path, design):
    first = tmp_path / "first"
    train.main(arguments(data_dir, first, *FROM_SCRATCH, *design))

    # The saved model comes back whole, in its own architecture and resolution: no --mode, sizes or --image_size.
    model = build(*arguments(data_dir, tmp_path / "second", "--model_name_or_path", str(first)))
    saved = load_file(first / "model.safetensors")
    state = model.state_dict()
    assert saved.keys() == state.keys()
    for key, value in saved.items():
        assert torch.equal(state[key], value), key

    metrics = train.main(arguments(data_dir, tmp_path / "second", "--model_name_or_path", str(first)))
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    before = json.loads((first / "config.json").read_text())
    after = json.loads((tmp_path / "second" / "config.json").read_text())
    for key in ("architectures", "fusion_type", "num_channels", "image_size", "hidden_size", "id2label"):
        assert after.get(key) == before.get(key), key


def test_continue_with_another_label_set_gets_a_new_output_layer(data_dir, vit_dir, tmp_path, caplog):
    saved = tmp_path / "three-classes"
    torch.manual_seed(0)
    create_multimodal_vit_model(model_name=vit_dir, num_classes=3, **VARIANTS["thermal"]).save_pretrained(saved)
    ViTFERImageProcessor(size=32).save_pretrained(saved)

    with caplog.at_level(logging.WARNING):
        model = build(*arguments(data_dir, tmp_path / "run", "--model_name_or_path", str(saved)))
    assert "new output layer(s) ['classifier.out_proj.bias', 'classifier.out_proj.weight']" in caplog.text
    assert model.config.modality == "thermal" and model.config.num_labels == 7
    checkpoint = load_file(saved / "model.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint[key]) != key.startswith("classifier.out_proj."), key

    metrics = train.main(arguments(data_dir, tmp_path / "run", "--model_name_or_path", str(saved)))
    assert 0.0 <= metrics["test_uar"] <= 1.0


def test_another_architecture_than_the_saved_one_is_refused(data_dir, tmp_path, saved_fer_model):
    with pytest.raises(ValueError, match=r"mode='rgb'.*saved EarlyFusionViT model \(mode='combined', fusion_strategy='early'\)"):
        build(*arguments(data_dir, tmp_path / "run", "--model_name_or_path", str(saved_fer_model("early-concat")),
                         "--mode", "rgb"))  # fmt: skip


def test_image_size_defaults_to_the_checkpoints(data_dir, vit_dir, tmp_path):
    """A 32-px ViT checkpoint trains at 32 px without --image_size (it used to default to 224 and fail)."""
    output_dir = tmp_path / "run"
    train.main(arguments(data_dir, output_dir, "--model_name_or_path", str(vit_dir)))
    assert json.loads((output_dir / "config.json").read_text())["image_size"] == 32
    assert json.loads((output_dir / "preprocessor_config.json").read_text())["size"] == {"height": 32, "width": 32}
    assert json.loads((output_dir / "run_config.json").read_text())["data"]["image_size"] == 32


@pytest.mark.parametrize("source", ["vit", "late-concat"])
def test_another_image_size_resamples_the_position_embeddings_like_interpolate_pos_encoding(
    data_dir, vit_dir, tmp_path, saved_fer_model, source
):
    checkpoint = vit_dir if source == "vit" else saved_fer_model(source)
    model = build(*arguments(data_dir, tmp_path / "run", "--model_name_or_path", str(checkpoint), "--image_size", "48"))
    assert model.config.image_size == 48
    # The same encoder weights at their own 32 px, interpolated on the fly by transformers' ViT.
    reference = ViTModel.from_pretrained(vit_dir, add_pooling_layer=False).eval()
    if source != "vit":
        reference.load_state_dict({key.removeprefix("rgb_vit."): value for key, value in
                                   load_file(Path(checkpoint) / "model.safetensors").items()
                                   if key.startswith("rgb_vit.")})  # fmt: skip
    images = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(images, interpolate_pos_encoding=True).last_hidden_state
        actual = model.eval().encoder_for("rgb")(images).last_hidden_state if source != "vit" else None
        actual = actual if actual is not None else model.vit(images).last_hidden_state
    torch.testing.assert_close(actual, expected)
    # The [CLS] position is kept as it was.
    cls_position = model.backbone_modules()[0].embeddings.position_embeddings[:, 0]
    torch.testing.assert_close(cls_position, reference.embeddings.position_embeddings[:, 0])

    metrics = train.main(arguments(data_dir, tmp_path / "run", "--model_name_or_path", str(checkpoint),
                                   "--image_size", "48", "--max_steps", "2"))  # fmt: skip
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
