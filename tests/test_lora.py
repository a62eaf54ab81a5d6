"""`--strategy lora` (vit_fer/lora.py through peft): which parameters train in every architecture, the merged folder
that loads without peft or vit_fer, the adapter folder that peft reloads onto the run's starting model, resuming a
LoRA run, the card's trainable share, and bad LoRA options."""

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from tiny_models import TINY_VIT, VARIANTS, make_inputs, run_without_vit_fer
from torch.optim import AdamW
from train_script import train, user_error

from vit_fer import create_multimodal_vit_model
from vit_fer.lora import apply_lora, count_trainable_parameters, merge_lora
from vit_fer.optimization import get_parameter_groups
from vit_fer.output_dir import run_files


pytestmark = pytest.mark.end_to_end

# The tiny model's sizes, trained as train.py does, with LoRA.
TINY = [*(token for key, value in TINY_VIT.items() for token in (f"--{key}", str(value))), "--strategy", "lora",
        "--learning_rate", "1e-2", "--per_device_train_batch_size", "8", "--disable_tqdm", "true", "--seed", "5",
        "--test_reports", "false"]
MID_CROSS_ATTENTION = ["--mode", "combined", "--fusion_strategy", "mid", "--fusion_layer", "1",
                       "--fusion_type", "cross_attention"]  # fmt: skip

# The merged folder as a Hub user without vit_fer and without peft loads it.
LOADER = textwrap.dedent(
    """
    import json, sys
    sys.modules["vit_fer"] = None
    sys.modules["peft"] = None
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(**load_file(sys.argv[2])).logits
    print(json.dumps({"module": type(model).__module__, "logits": logits.tolist()}))
    """
)


@pytest.mark.parametrize(
    "variant",
    ["rgb", "early-concat", "late-attention", "late-prediction-weighted", "late-shared", "mid-bottleneck",
     "mid-cross_attention", "mid-concat", "mid-add"],
)  # fmt: skip
def test_only_adapters_head_and_fusion_modules_train(variant):
    torch.manual_seed(0)
    model = create_multimodal_vit_model(model_name=None, **VARIANTS[variant], **TINY_VIT)
    encoders = {name for name, child in model.named_children() if child in model.backbone_modules()}
    outside = {name for name, _ in model.named_parameters() if name.split(".")[0] not in encoders}
    # Every layer that each encoder runs has its query and value projections adapted.
    expected_targets = {
        f"{encoder}.layers.{index}.attention.{projection}"
        for encoder in encoders
        for index in range(len(getattr(model, encoder).layers))
        for projection in ("q_proj", "v_proj")
    }

    own = {name: parameter.numel() for name, parameter in model.named_parameters()}

    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    assert set(peft_model.peft_config["default"].target_modules) == expected_targets
    names = dict(model.named_parameters())
    trainable = {name for name, parameter in names.items() if parameter.requires_grad}
    adapters = {name for name in trainable if ".lora_" in name}
    assert {name.split(".lora_")[0] for name in adapters} == expected_targets
    # Besides the adapters, exactly every parameter outside the encoders (head, fusion modules), as peft's trained
    # copy of its module.
    copies = trainable - adapters
    assert all(".modules_to_save.default." in name for name in copies)
    assert {name.replace(".modules_to_save.default.", ".") for name in copies} == outside
    assert count_trainable_parameters(model) == (sum(names[name].numel() for name in trainable), sum(own.values()))

    # Two steps of the optimizer the FERTrainer builds (every parameter in it, frozen ones too).
    before = {name: parameter.detach().clone() for name, parameter in names.items()}
    optimizer = AdamW(get_parameter_groups(model, learning_rate=1e-2, weight_decay=0.05))
    for seed in (0, 1):
        model(**make_inputs(model, seed=seed)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {name for name, parameter in names.items() if not torch.equal(parameter, before[name])}
    assert changed <= trainable
    # The adapters' B matrices (zero at the start) move, and so does each head and fusion module.
    assert {name for name in adapters if ".lora_B." in name} <= changed
    wrapped = {name.split(".modules_to_save.")[0] for name in copies}
    assert {name.split(".modules_to_save.")[0] for name in copies & changed} == wrapped

    # Merged: the model's own parameters again, under their own names.
    merged = merge_lora(peft_model)
    assert merged is model
    assert {name: parameter.numel() for name, parameter in merged.named_parameters()} == own


def test_bad_target_modules_stop_before_training(synthetic_dataset_dir, tmp_path, capsys):
    error = user_error(capsys, [*TINY, "--dataset_dir", str(synthetic_dataset_dir), "--output_dir",
                                str(tmp_path / "run"), "--lora_target_modules", "q_proj", "query"])  # fmt: skip
    assert "--lora_target_modules query matches no" in error and "q_proj" in error
    assert not (tmp_path / "run").exists()
    error = user_error(capsys, [*TINY, "--dataset_dir", str(synthetic_dataset_dir), "--lora_r", "0"])
    assert "--lora_r must be a positive integer, got 0" in error


def test_lora_without_peft_says_how_to_install_it(synthetic_dataset_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    error = user_error(capsys, [*TINY, "--dataset_dir", str(synthetic_dataset_dir)])
    assert "--strategy lora needs peft" in error and "vit-fer[lora]" in error


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft asks it
def test_train_py_saves_a_merged_folder_and_the_adapter_of_the_run(synthetic_dataset_dir, tiny_vit_dir, tmp_path):
    """From a (tiny) pretrained checkpoint, the run's starting model can be rebuilt: peft puts the saved adapter on
    it, and the result predicts what the merged folder predicts when loaded without peft and without vit_fer."""
    output_dir = tmp_path / "run"
    data = ["--dataset_dir", str(synthetic_dataset_dir), "--output_dir", str(output_dir)]
    start_from = ["--model_name_or_path", str(tiny_vit_dir)]
    metrics = train.main([*TINY, *MID_CROSS_ATTENTION, *start_from, *data, "--num_train_epochs", "2"])
    assert 0.0 <= metrics["test_accuracy"] <= 1.0

    # The merged weights are the plain model's (no adapter or peft copy); nothing but safetensors.
    start = create_multimodal_vit_model(model_name=tiny_vit_dir, fusion_strategy="mid", fusion_type="cross_attention",
                                        mode="combined", fusion_layer=1).eval()  # fmt: skip
    assert load_file(output_dir / "model.safetensors").keys() == start.state_dict().keys()
    assert {path.name for path in (output_dir / "adapter").iterdir()} >= {"adapter_config.json",
                                                                          "adapter_model.safetensors"}
    saved = [*output_dir.iterdir(), *(output_dir / "adapter").iterdir()]
    pickles = {path.name for path in saved if path.suffix in (".bin", ".pt", ".pth")}
    assert pickles <= {"training_args.bin"}  # the Trainer's arguments; every weight is in safetensors

    # The trainable share: logged into run_config.json and the card.
    counts = json.loads((output_dir / "run_config.json").read_text())["trainable_parameters"]
    assert 0 < counts["trainable"] < counts["total"] == sum(p.numel() for p in start.parameters())
    assert counts["share"] == pytest.approx(counts["trainable"] / counts["total"])
    card = (output_dir / "README.md").read_text()
    assert f"| trainable parameters | {counts['trainable']:,} of {counts['total']:,} " in card
    assert "`q_proj`, `v_proj` of every encoder" in card

    inputs = make_inputs(start, with_labels=False)
    save_file(inputs, tmp_path / "inputs.safetensors")
    adapted = PeftModel.from_pretrained(start, output_dir / "adapter").merge_and_unload().eval()
    with torch.no_grad():
        expected = adapted(**inputs).logits
    loaded = run_without_vit_fer(LOADER, output_dir, tmp_path / "inputs.safetensors", tmp_path=tmp_path)
    assert not loaded["module"].startswith("vit_fer")
    torch.testing.assert_close(torch.tensor(loaded["logits"]), expected, atol=1e-5, rtol=0)


def test_merged_model_predicts_as_the_adapted_one_and_reloads_without_peft(tmp_path):
    torch.manual_seed(0)
    model = create_multimodal_vit_model(model_name=None, **VARIANTS["late-attention"], **TINY_VIT)
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    optimizer = AdamW(get_parameter_groups(model, learning_rate=1e-2))
    for seed in range(3):
        model(**make_inputs(model, seed=seed)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    inputs = make_inputs(model, seed=9, with_labels=False)
    with torch.no_grad():
        adapted = model(**inputs).logits
        merged = merge_lora(peft_model)(**inputs).logits
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)
    assert not torch.allclose(adapted, create_multimodal_vit_model(model_name=None, **VARIANTS["late-attention"],
                                                                   **TINY_VIT).eval()(**inputs).logits)  # fmt: skip

    model.save_pretrained(tmp_path / "merged")
    save_file(inputs, tmp_path / "inputs.safetensors")
    loaded = run_without_vit_fer(LOADER, tmp_path / "merged", tmp_path / "inputs.safetensors", tmp_path=tmp_path)
    torch.testing.assert_close(torch.tensor(loaded["logits"]), merged, atol=1e-6, rtol=0)


def test_a_resumed_lora_run_ends_as_an_uninterrupted_one(synthetic_dataset_dir, tmp_path):
    common = [*TINY, "--mode", "combined", "--fusion_strategy", "late", "--dataset_dir", str(synthetic_dataset_dir),
              "--num_train_epochs", "2", "--save_total_limit", "3", "--load_best_model_at_end", "false"]  # fmt: skip
    train.main([*common, "--output_dir", str(tmp_path / "straight")])
    # The first epoch's checkpoint (the whole adapted model's state) in a folder of its own, resumed from there.
    first = min((tmp_path / "straight").glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    shutil.copytree(first, tmp_path / "resumed" / first.name)
    train.main([*common, "--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", "true"])

    expected = json.loads((tmp_path / "straight" / "all_results.json").read_text())
    actual = json.loads((tmp_path / "resumed" / "all_results.json").read_text())
    for key in ("eval_loss", "eval_macro_f1", "test_loss", "test_accuracy"):
        assert actual[key] == pytest.approx(expected[key], abs=1e-6), key
    for name in ("model.safetensors", "adapter/adapter_model.safetensors"):
        straight, resumed = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert straight.keys() == resumed.keys()
        assert all(torch.allclose(straight[key], resumed[key], atol=1e-6) for key in straight), name
    assert Path(tmp_path / "resumed" / "adapter" / "adapter_config.json").is_file()


def test_a_new_run_over_a_lora_run_removes_its_adapter_and_only_it(synthetic_dataset_dir, tmp_path):
    """A stale adapter beside another run's model would pass for it: --overwrite_output_dir removes it, unless the
    folder holds something peft did not write."""
    output_dir = tmp_path / "run"
    common = [*TINY, "--dataset_dir", str(synthetic_dataset_dir), "--output_dir", str(output_dir),
              "--num_train_epochs", "1"]  # fmt: skip
    train.main(common)
    adapter = output_dir / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and adapter in run_files(output_dir)
    (adapter / "notes.txt").write_text("mine")
    assert adapter not in run_files(output_dir)
    (adapter / "notes.txt").unlink()
    train.main([*common, "--strategy", "full", "--overwrite_output_dir"])
    assert not adapter.exists()
