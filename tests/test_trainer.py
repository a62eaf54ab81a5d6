"""Every architecture trains with transformers' `Trainer` and a plain collator."""

import pytest
import torch
from tiny_models import MID_VARIANTS, VARIANTS, make_inputs, tiny_training_arguments, write_tiny_vit
from transformers import Trainer

from vit_fer import create_multimodal_vit_model


class TensorDataset(torch.utils.data.Dataset):
    """Samples as the data pipeline hands them to the collator: one dict of tensors each."""

    def __init__(self, batch: dict[str, torch.Tensor]):
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch["labels"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[index] for key, value in self.batch.items()}


def stack_collator(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.mark.parametrize(
    "variant",
    [
        "rgb",
        "thermal",
        "early-concat",
        "early-add",
        "late-attention",
        "late-prediction-weighted",
        *MID_VARIANTS,
    ],
)
def test_trainer_runs_and_evaluates(checkpoint, variant, tmp_path):
    model = create_multimodal_vit_model(model_name=checkpoint, **VARIANTS[variant])
    dataset = TensorDataset(make_inputs(model, batch_size=16, seed=1))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = Trainer(model=model, args=tiny_training_arguments(tmp_path), train_dataset=dataset, eval_dataset=dataset, data_collator=stack_collator)
    result = trainer.train()
    metrics = trainer.evaluate()

    assert result.global_step == 4
    assert torch.isfinite(torch.tensor([result.training_loss, metrics["eval_loss"]])).all()
    assert all(not torch.equal(before[name], p) for name, p in model.named_parameters()), "a parameter did not train"
    predictions = trainer.predict(dataset)
    assert predictions.predictions.shape == (16, 7)  # logits only: fusion extras are not gathered
