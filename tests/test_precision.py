"""Mixed precision and `torch.compile`: the speed features users switch on through `TrainingArguments` train every
architecture, in reduced precision where asked, and compute what fp32 eager training computes."""

import copy

import datasets
import pytest
import torch
from tiny_models import VARIANTS, make_inputs, tiny_training_arguments, write_tiny_vit
from transformers import Trainer

from vit_fer import create_multimodal_vit_model


# One of each architecture; late prediction fusion is the numerically delicate path (log of mixed probabilities).
ARCHITECTURES = ["rgb", "early-concat", "late-attention", "late-prediction-weighted"]
STEPS = 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


def build(checkpoint, variant: str):
    # No dropout: two runs would draw different masks, and their losses would differ by those, not by precision.
    torch.manual_seed(0)
    return create_multimodal_vit_model(
        model_name=checkpoint, **VARIANTS[variant], dropout_rate=0.0, classifier_output_dropout=0.0
    )


def record_matmul_dtypes(model) -> list[torch.dtype]:
    """Collects the output dtype of every call of the first encoder layer's first MLP matrix."""
    dtypes = []
    fc1 = model.backbone_modules()[0].layers[0].mlp.fc1
    fc1.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    return dtypes


def train(model, inputs, steps: int, dtype: torch.dtype | None) -> list[float]:
    """`steps` AdamW steps on one batch, under CPU autocast to `dtype` (fp32 when None); the loss of each step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def as_dataset(inputs: dict[str, torch.Tensor]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({key: value.numpy() for key, value in inputs.items()}).with_format("torch")


def training_arguments(tmp_path, **overrides):
    return tiny_training_arguments(tmp_path, per_device_train_batch_size=4, max_steps=3, **overrides)


@pytest.mark.parametrize("variant", ARCHITECTURES)
def test_bf16_autocast_training_tracks_fp32(checkpoint, variant):
    fp32_model = build(checkpoint, variant)
    bf16_model = copy.deepcopy(fp32_model)
    inputs = make_inputs(fp32_model, batch_size=8, seed=1)
    bf16_dtypes = record_matmul_dtypes(bf16_model)

    fp32_losses = train(fp32_model, inputs, STEPS, dtype=None)
    bf16_losses = train(bf16_model, inputs, STEPS, dtype=torch.bfloat16)

    assert set(bf16_dtypes) == {torch.bfloat16}, "autocast did not run the encoder's matrices in bf16"
    assert fp32_losses[-1] < fp32_losses[0], "fp32 training did not lower the loss: the comparison would be vacuous"
    # The target: after the same steps, the bf16 loss is within 2 % of the fp32 loss.
    assert bf16_losses[-1] == pytest.approx(fp32_losses[-1], rel=0.02)


@pytest.mark.parametrize("variant", ARCHITECTURES)
def test_trainer_bf16_on_cpu_trains_in_bf16(checkpoint, variant, tmp_path):
    model = build(checkpoint, variant)
    dataset = as_dataset(make_inputs(model, batch_size=8, seed=1))
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    dtypes = record_matmul_dtypes(model)

    trainer = Trainer(model=model, args=training_arguments(tmp_path, bf16=True), train_dataset=dataset)
    result = trainer.train()

    assert result.global_step == 3
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert dtypes and set(dtypes) == {torch.bfloat16}, "bf16=True did not reach the model's forward"
    # Weights stay fp32 (autocast, not a bf16 cast of the model), and they train.
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    changed = {name: not torch.equal(before[name], p) for name, p in model.named_parameters()}
    # Attention fusion's score bias shifts both modality scores alike, which the softmax cancels: its gradient is
    # exactly zero (bf16 shows it; in fp32 round-off moves it). So the fusion module is only required to train as a
    # whole.
    fusion = [name for name in changed if name.startswith("fusion.")]
    assert all(changed[name] for name in changed if name not in fusion), "a parameter did not train"
    assert not fusion or any(changed[name] for name in fusion), "the fusion module did not train"


def test_trainer_torch_compile_trains_like_eager(checkpoint, tmp_path):
    """`torch_compile=True` with the default inductor backend: about 30 s of compilation on 2 CPU cores, under the
    60 s past which this test would use the cheaper "aot_eager" backend. Inductor is what users get, and it is the
    backend that generates new kernels, so it is the one whose numbers must match eager."""
    losses = {}
    for compiled in (False, True):
        model = build(checkpoint, "rgb")
        dataset = as_dataset(make_inputs(model, batch_size=8, seed=1))
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        trainer = Trainer(
            model=model, args=training_arguments(tmp_path / str(compiled), torch_compile=compiled), train_dataset=dataset
        )
        losses[compiled] = trainer.train().training_loss
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        assert (graphs > 0) == compiled, f"compiled={compiled} but dynamo compiled {graphs} graphs"
    torch._dynamo.reset()

    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
