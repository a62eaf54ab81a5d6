"""Progressive unfreezing with real `Trainer` runs on tiny models: which units train in which epoch, that the
DDP-safe gradient gate is equivalent to real freezing, and the refusals."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from tiny_models import TINY_VIT, VARIANTS, make_inputs, write_tiny_vit
from transformers import Trainer, TrainerCallback, TrainingArguments

from vit_fer import create_multimodal_vit_model
from vit_fer.callbacks import ProgressiveUnfreezingCallback
from vit_fer.optimization import get_optimizer_and_scheduler, parameter_units


pytestmark = pytest.mark.end_to_end


NUM_LAYERS = TINY_VIT["num_hidden_layers"]
EPOCHS, SAMPLES, BATCH_SIZE = 3, 8, 4
# Head alone in epoch 0, then the top layer (with the final layernorm), then the rest with the embeddings.
SCHEDULE = dict(head_only_epochs=1, layers_per_stage=1, epochs_per_stage=1)
TRAINED_UNITS = [
    {"head"},
    {"head", "layernorm", f"layers.{NUM_LAYERS - 1}"},
    {"head", "layernorm", "embeddings", *(f"layers.{i}" for i in range(NUM_LAYERS))},
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


class EpochRecorder(TrainerCallback):
    """Copies the parameters at the start of training and at the end of every epoch, and which parameters have
    AdamW moment estimates."""

    def __init__(self):
        self.parameters: list[dict[str, torch.Tensor]] = []
        self.with_optimizer_state: list[set[str]] = []

    def on_train_begin(self, args, state, control, model, **kwargs):
        self.parameters.append({name: p.detach().clone() for name, p in model.named_parameters()})

    def on_epoch_end(self, args, state, control, model, optimizer, **kwargs):
        self.on_train_begin(args, state, control, model)
        self.with_optimizer_state.append({name for name, p in model.named_parameters() if optimizer.state.get(p)})


def train(
    checkpoint,
    tmp_path,
    variant="rgb",
    strategy="gradient_gate",
    epochs=EPOCHS,
    optimizers=True,
    save_strategy="no",
    resume_from_checkpoint=None,
    **model_kwargs,
):
    torch.manual_seed(0)
    model = create_multimodal_vit_model(model_name=checkpoint, **VARIANTS[variant], **model_kwargs)
    recorder = EpochRecorder()
    steps = epochs * SAMPLES // BATCH_SIZE
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path),
            num_train_epochs=epochs,
            per_device_train_batch_size=BATCH_SIZE,
            # Tight clipping: the head's updates depend on which gradients enter the norm.
            max_grad_norm=0.01,
            save_strategy=save_strategy,
            report_to=[],
            use_cpu=True,
            seed=0,
        ),
        train_dataset=Dataset.from_dict(make_inputs(model, batch_size=SAMPLES)).with_format("torch"),
        # Large rate and weight decay so that any update of a frozen unit shows.
        optimizers=get_optimizer_and_scheduler(
            model, learning_rate=1e-2, warmup_steps=0, num_training_steps=steps, weight_decay=0.1
        )
        if optimizers
        else (None, None),
        callbacks=[ProgressiveUnfreezingCallback(**SCHEDULE, strategy=strategy), recorder],
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return model, recorder


@pytest.mark.parametrize("variant", ["rgb", "late-attention"])
@pytest.mark.parametrize("strategy", ["gradient_gate", "requires_grad"])
def test_units_train_only_once_released(checkpoint, tmp_path, variant, strategy):
    model, recorder = train(checkpoint, tmp_path, variant, strategy)
    units = parameter_units(model)
    for epoch, trained in enumerate(TRAINED_UNITS):
        before, after = recorder.parameters[epoch], recorder.parameters[epoch + 1]
        for unit, parameters in units.items():
            for name, _ in parameters:
                changed = not torch.equal(before[name], after[name])
                assert changed == (unit in trained), f"epoch {epoch}: {name} ({unit}) changed={changed}"
                # A frozen parameter accumulates no moment estimates that would skew its first steps once released.
                assert (name in recorder.with_optimizer_state[epoch]) == (unit in trained), name


def test_resumed_training_resumes_the_schedule(checkpoint, tmp_path):
    uninterrupted, _ = train(checkpoint, tmp_path, save_strategy="epoch")
    steps_per_epoch = SAMPLES // BATCH_SIZE
    resumed, recorder = train(
        checkpoint, tmp_path / "resumed", resume_from_checkpoint=str(tmp_path / f"checkpoint-{steps_per_epoch}")
    )
    units = parameter_units(resumed)
    changed = {
        unit
        for unit, parameters in units.items()
        for name, _ in parameters
        if not torch.equal(recorder.parameters[0][name], recorder.parameters[1][name])
    }
    assert changed == TRAINED_UNITS[1]
    torch.testing.assert_close(dict(resumed.named_parameters()), dict(uninterrupted.named_parameters()))


def test_gradient_gate_trains_like_real_freezing(checkpoint, tmp_path):
    gated, _ = train(checkpoint, tmp_path / "gate", strategy="gradient_gate")
    frozen, _ = train(checkpoint, tmp_path / "requires_grad", strategy="requires_grad")
    torch.testing.assert_close(dict(gated.named_parameters()), dict(frozen.named_parameters()))


DDP_SCRIPT = textwrap.dedent(
    """
    import sys

    import torch
    from datasets import Dataset
    from safetensors.torch import save_file
    from tiny_models import VARIANTS, make_inputs
    from transformers import Trainer, TrainingArguments

    from test_callbacks import BATCH_SIZE, EPOCHS, SAMPLES, SCHEDULE
    from vit_fer import create_multimodal_vit_model
    from vit_fer.callbacks import ProgressiveUnfreezingCallback
    from vit_fer.optimization import get_optimizer_and_scheduler

    checkpoint, output_dir = sys.argv[1:]
    torch.manual_seed(0)
    # Activation checkpointing makes the Trainer wrap with find_unused_parameters=False: every parameter must get a
    # gradient at every step, frozen or not.
    model = create_multimodal_vit_model(
        model_name=checkpoint, **VARIANTS["late-attention"], use_gradient_checkpointing=True
    )
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = TrainingArguments(
        output_dir=output_dir, num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH_SIZE // 2,
        save_strategy="no", report_to=[], use_cpu=True, ddp_backend="gloo", seed=0,
    )
    data = Dataset.from_dict(make_inputs(model, batch_size=SAMPLES)).with_format("torch")

    def trainer(strategy):
        steps = EPOCHS * SAMPLES // BATCH_SIZE
        optimizers = get_optimizer_and_scheduler(model, learning_rate=1e-2, warmup_steps=0, num_training_steps=steps)
        callback = ProgressiveUnfreezingCallback(**SCHEDULE, strategy=strategy)
        return Trainer(model=model, args=args, train_dataset=data, optimizers=optimizers, callbacks=[callback])

    try:
        trainer("requires_grad").train()
    except ValueError as error:
        assert "single-process" in str(error), error
    else:
        raise AssertionError("strategy='requires_grad' trained under DDP")
    trainer("gradient_gate").train()
    final = {name: p.detach().contiguous() for name, p in model.named_parameters()}
    save_file(final, f"{output_dir}/rank{args.process_index}.safetensors")
    save_file(initial, f"{output_dir}/initial{args.process_index}.safetensors")
    """
)


def test_gradient_gate_under_distributed_data_parallel(checkpoint, tmp_path):
    """Two CPU processes (gloo): units released after DDP wrapped the model train, in sync on both ranks. (Frozen
    by `requires_grad` when DDP wraps the model, they would train apart on each rank.)"""
    script = tmp_path / "train_ddp.py"
    script.write_text(DDP_SCRIPT)
    tests_dir = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests_dir), os.environ.get("PYTHONPATH", "")])}
    # --standalone: a free port for the rendezvous (the default 29500 would collide with another launch).
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
               str(checkpoint)]  # fmt: skip
    result = subprocess.run([*command, str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    ranks = [load_file(tmp_path / f"rank{rank}.safetensors") for rank in range(2)]
    initial = load_file(tmp_path / "initial0.safetensors")
    for name, value in ranks[0].items():
        torch.testing.assert_close(value, ranks[1][name], rtol=0, atol=0, msg=name)
        assert not torch.equal(value, initial[name]), f"{name} never trained"


def test_gradient_gate_removes_its_hooks_after_training(checkpoint, tmp_path):
    model, recorder = train(checkpoint, tmp_path, epochs=1)
    assert torch.equal(recorder.parameters[0]["vit.embeddings.cls_token"], model.vit.embeddings.cls_token)
    model(**make_inputs(model)).loss.backward()
    assert model.vit.embeddings.cls_token.grad.abs().sum() > 0


def test_gradient_gate_refuses_parameters_that_do_not_require_grad(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="unfreeze_backbone"):
        train(checkpoint, tmp_path, freeze_backbone=True)


def test_requires_grad_refuses_an_optimizer_without_the_frozen_parameters(checkpoint, tmp_path):
    # The Trainer's own optimizer keeps only the parameters that require grad when it is built.
    with pytest.raises(ValueError, match="get_optimizer_and_scheduler"):
        train(checkpoint, tmp_path, strategy="requires_grad", optimizers=False, freeze_backbone=True)


def test_schedule():
    callback = ProgressiveUnfreezingCallback(head_only_epochs=2, layers_per_stage=2, epochs_per_stage=3)
    assert [callback.num_unfrozen_layers(epoch, num_layers=5) for epoch in range(10)] == [0, 0, 2, 2, 2, 4, 4, 4, 5, 5]
    all_at_once = ProgressiveUnfreezingCallback(head_only_epochs=1)
    assert [all_at_once.num_unfrozen_layers(epoch, num_layers=5) for epoch in range(3)] == [0, 5, 5]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(head_only_epochs=-1), "head_only_epochs"),
        (dict(layers_per_stage=0), "layers_per_stage"),
        (dict(epochs_per_stage=0), "epochs_per_stage"),
        (dict(strategy="lr_zero"), "strategy"),
    ],
)
def test_bad_arguments_raise(arguments, message):
    with pytest.raises(ValueError, match=message):
        ProgressiveUnfreezingCallback(**arguments)
