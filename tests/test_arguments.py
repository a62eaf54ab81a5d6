"""train.py's arguments as users type them: every vit-fer option settable on the command line (tuples included),
each checked before anything is built, a mistake ending in one argparse-style line with exit status 2."""

import dataclasses
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from transformers import TrainingArguments

from train_script import ROOT, train




def run_train(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *argv], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def test_a_tuple_takes_its_values_on_the_command_line(tmp_path):
    _, data_args, _ = train.parse_arguments(["--thermal_temperature_range", "25", "38.5", "--output_dir", str(tmp_path)])
    assert data_args.thermal_temperature_range == (25.0, 38.5)
    assert train.build_image_processor(train.ModelArguments(), data_args).thermal_temperature_range == (25.0, 38.5)


@pytest.mark.parametrize(
    "argv, message",
    [
        # Used to be read as the characters "2", "5": a 2-5 °C window that saturates every face.
        (["--thermal_temperature_range", "25"], "argument --thermal_temperature_range: expected 2 arguments"),
        (["--thermal_temperature_range", "40", "20"], "low < high"),
        (["--thermal_temperature_range", "20", "hot"], "invalid float value: 'hot'"),
        (["--mode", "depth"], "`mode` must be one of"),
        (["--strategy", "linear"], "`strategy` must be one of"),
        (["--validation_size", "1.5"], "--validation_size must be in [0, 1)"),
        (["--image_size", "0"], "--image_size must be a positive integer"),
        # The config's own (@strict) validation, as one line too.
        (["--mode", "combined", "--fusion_strategy", "mid", "--fusion_layer", "3", "--num_hidden_layers", "2"],
         "`fusion_layer` must be an integer in [0, 2] (num_hidden_layers), got 3."),
        # transformers' ViT builds it and fails only at the first forward, after the data is made.
        (["--num_attention_heads", "5"], "`num_attention_heads` must divide `hidden_size` (768), got 5."),
        (["--dataset_dir", "no/such/folder"], "--dataset_dir no/such/folder does not exist"),
        (["--num_train_epochs", "many"], "invalid float value: 'many'"),
    ],
)
def test_a_bad_value_ends_in_one_line_with_exit_status_2(tmp_path, argv, message, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        train.main([*argv, "--output_dir", str(tmp_path / "run")])
    assert stop.value.code == 2
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("train.py: error: ") and message in errors[0], stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists(), "work was done before the check"


def test_the_command_line_refuses_a_one_value_window_without_a_traceback(tmp_path):
    completed = run_train("--thermal_temperature_range", "25", "--output_dir", str(tmp_path / "run"), cwd=tmp_path)
    assert completed.returncode == 2
    assert completed.stderr.splitlines()[-1] == (
        "train.py: error: argument --thermal_temperature_range: expected 2 arguments"
    )
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("thermal_temperature_range: [25]\n", "`thermal_temperature_range` must be a list of 2 values, got [25]"),
        ("mode: depth\n", "`mode` must be one of"),
    ],
)
def test_an_argument_file_is_checked_the_same_way(tmp_path, content, message, capsys):
    config = tmp_path / "args.yaml"
    config.write_text(content + f"output_dir: {tmp_path / 'run'}\n")
    with pytest.raises(SystemExit) as stop:
        train.main([str(config)])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def _vit_fer_fields():
    trainer_fields = {field.name for field in dataclasses.fields(TrainingArguments)}
    for cls in (train.ModelArguments, train.DataArguments, train.FERTrainingArguments):
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.init and (cls is not train.FERTrainingArguments or field.name not in trainer_fields):
                default = field.default_factory() if field.default is dataclasses.MISSING else field.default
                yield field.name, hints[field.name], default


def _other_value(annotation, default):
    """A command-line value different from the default, and what it parses to."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(kind for kind in typing.get_args(annotation) if kind is not type(None))
    kind = typing.get_origin(annotation) or annotation
    if kind is bool:
        return ["false" if default else "true"], not default
    if kind is list:
        return [*default, "other"], [*default, "other"]
    if kind is tuple:
        values = tuple(value + 1 for value in default)
        return [str(value) for value in values], values
    if kind is int:
        value = (default or 0) + 1
        return [str(value)], value
    if kind is float:
        value = round((default or 0.0) / 2 + 0.125, 6)
        return [str(value)], value
    return [str(default)], default  # strings are checked against their choices: the default round-trips


# Options that are valid only together with another one.
COMPANIONS = {"write_space": ["--hub_model_id", "someone/vit-fer"]}


def test_every_vit_fer_option_is_settable_on_the_command_line(tmp_path):
    fields = list(_vit_fer_fields())
    assert len(fields) > 30
    for name, annotation, default in fields:
        if default is None or name in ("output_dir", "cache_features"):
            continue
        tokens, expected = _other_value(annotation, default)
        parsed = train.parse_arguments([f"--{name}", *tokens, *COMPANIONS.get(name, []), "--output_dir", str(tmp_path)])
        values = {key: value for part in parsed for key, value in vars(part).items()}
        assert values[name] == expected, name


@pytest.mark.parametrize("variant", ["early-concat", "late-prediction-weighted"])
def test_a_saved_models_design_is_checked_and_names_the_folder_before_it_is_loaded(saved_fer_model, variant, capsys):
    from vit_fer.trainer import default_output_dir

    saved = str(saved_fer_model(variant))
    config = train.check_arguments(*train.parse_arguments(["--model_name_or_path", saved]))
    assert default_output_dir(config).name.startswith(f"{variant}-")
    with pytest.raises(SystemExit) as stop:
        train.main(["--model_name_or_path", saved, "--mode", "rgb"])
    assert stop.value.code == 2 and "Continue its training in its own architecture" in capsys.readouterr().err
