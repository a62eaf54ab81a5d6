"""The command line of train.py: vit-fer's own options first, one `--help` group per concern, the `Trainer`'s after.

Each group is one dataclass: a field added to train.py's `ModelArguments` or `DataArguments` shows up in the group
named by their `_argument_group_name`; a field that `FERTrainingArguments` declares and
`transformers.TrainingArguments` lacks shows up under `STRATEGY_GROUP`; every other field of `FERTrainingArguments`
is a `Trainer` option (some with vit-fer's defaults) and comes last, under `TRAINER_GROUP`.
"""

import argparse
import dataclasses
from typing import get_type_hints

from transformers import HfArgumentParser, TrainingArguments


STRATEGY_GROUP = "fine-tuning strategy (vit-fer)"
TRAINER_GROUP = "Trainer options (transformers.TrainingArguments; vit-fer's defaults where they differ)"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written (example commands keep their lines), each option's default after its help."""


class FERArgumentParser(HfArgumentParser):
    """An `HfArgumentParser` that splits a `TrainingArguments` subclass into vit-fer's options (the fields only the
    subclass declares) and the `Trainer`'s, vit-fer's first, and keeps the description's line breaks."""

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(dataclass_types, **kwargs)

    def _add_dataclass_arguments(self, dtype):
        if not (isinstance(dtype, type) and issubclass(dtype, TrainingArguments)):
            return super()._add_dataclass_arguments(dtype)
        trainer_fields = {field.name for field in dataclasses.fields(TrainingArguments)}
        own = self.add_argument_group(STRATEGY_GROUP)
        trainer = self.add_argument_group(TRAINER_GROUP)
        type_hints = get_type_hints(dtype)
        for field in dataclasses.fields(dtype):
            if field.init:
                field.type = type_hints[field.name]
                self._parse_dataclass_field(trainer if field.name in trainer_fields else own, field)
