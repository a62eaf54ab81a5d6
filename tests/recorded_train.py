"""Runs train.py's `main` (as `python train.py` or under torchrun) and records, per process, what a multi-process
test compares: the weights at each epoch start and at the last optimizer step (safetensors, before the Trainer
reloads the best checkpoint), and the progressive unfreezing stage of each epoch. The training split is transformed
without augmentation (see `without_augmentation`), so that runs on different numbers of processes are comparable.

    python tests/recorded_train.py RECORD_DIR [train.py arguments]
"""

import json
import os
import sys
from pathlib import Path

from datasets import DatasetDict
from safetensors.torch import save_file
from transformers import TrainerCallback


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402
from vit_fer import ProgressiveUnfreezingCallback  # noqa: E402
from vit_fer.optimization import parameter_units  # noqa: E402
from vit_fer.transforms import with_fer_transforms  # noqa: E402


class Recorder(TrainerCallback):
    def __init__(self, trainer, folder: Path):
        self.trainer, self.folder, self.rank = trainer, folder, int(os.environ.get("RANK", "0"))
        self.epochs = []

    def save_weights(self, model, name: str) -> None:
        weights = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
        save_file(weights, self.folder / f"rank{self.rank}-{name}.safetensors")

    def on_train_begin(self, args, state, control, model, **kwargs):
        self.units = {unit: [name for name, _ in parameters] for unit, parameters in parameter_units(model).items()}

    def on_epoch_begin(self, args, state, control, model, **kwargs):
        # Runs after the unfreezing callback's own on_epoch_begin (callbacks run in the order they were added).
        unfreezing = next(c for c in self.trainer.callback_handler.callbacks if isinstance(c, ProgressiveUnfreezingCallback))
        self.epochs.append({"epoch": int(state.epoch), "global_step": state.global_step,
                            "frozen_units": sorted(unfreezing.frozen_units)})
        self.save_weights(model, f"epoch{int(state.epoch)}")

    def on_step_end(self, args, state, control, model, **kwargs):
        if state.global_step == state.max_steps:
            self.save_weights(model, "final")

    def on_train_end(self, args, state, control, **kwargs):
        record = {"epochs": self.epochs, "units": self.units, "log_history": state.log_history, "world_size": args.world_size}
        (self.folder / f"rank{self.rank}.json").write_text(json.dumps(record))


def without_augmentation(dataset, image_processor, **kwargs):
    """train.py's transforms, the training split's as the evaluation splits' (no augmentation): each process draws
    its samples' augmentations from its own torch generator, so 2 processes of b samples would not draw what 1 process
    of 2 × b draws."""
    renamed = DatasetDict({"fit" if split == "train" else split: part for split, part in dataset.items()})
    transformed = with_fer_transforms(renamed, image_processor, **kwargs)
    return DatasetDict({"train" if split == "fit" else split: part for split, part in transformed.items()})


class RecordedTrainer(train.FERTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(Recorder(self, Path(RECORD_DIR)))


if __name__ == "__main__":
    RECORD_DIR = sys.argv[1]
    Path(RECORD_DIR).mkdir(parents=True, exist_ok=True)
    train.FERTrainer = RecordedTrainer
    train.with_fer_transforms = without_augmentation
    train.main(sys.argv[2:])
