"""The command line of train.py: vit-fer's own options first, one `--help` group per concern, the `Trainer`'s after.

Each group is one dataclass: a field added to train.py's `ModelArguments` or `DataArguments` shows up in the group
named by their `_argument_group_name`; a field that `FERTrainingArguments` declares and
`transformers.TrainingArguments` lacks shows up under `STRATEGY_GROUP`; every other field of `FERTrainingArguments`
is a `Trainer` option (some with vit-fer's defaults) and comes last, under `TRAINER_GROUP`.

Every field is settable on the command line: a `tuple[float, float]` takes exactly two values (`--x 20 40`), a dict a
JSON object. A value the parser or a dataclass refuses ends the program as argparse does (`train.py: error: ...`,
exit status 2); [`user_errors`] does the same for the mistakes found later, before training (output folder, data).
"""

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin, get_type_hints

from huggingface_hub.errors import StrictDataclassError
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

    @staticmethod
    def _parse_dataclass_field(parser, field):
        # HfArgumentParser hands a `tuple[float, float]` field to argparse as its type, so `--x 25` became the
        # string's characters ("2", "5") and `--x 20 40` was refused; a `dict` field got `dict("...")`. A tuple
        # takes exactly its length of values, a dict a JSON object.
        origin = get_origin(field.type)
        if origin is tuple and field.type.__args__ and Ellipsis not in field.type.__args__:
            element = field.type.__args__[0]
            parser.add_argument(
                f"--{field.name}",
                type=element,
                nargs=len(field.type.__args__),
                action=_TupleAction,
                default=field.default,
                metavar=field.name.upper(),
                **{key: value for key, value in field.metadata.items() if key == "help"},
            )
            return
        if origin is dict or (origin in (Union, UnionType) and any(get_origin(a) is dict for a in get_args(field.type))
                              and str not in get_args(field.type)):
            field.type = _json_object
        HfArgumentParser._parse_dataclass_field(parser, field)

    def error(self, message: str):
        """argparse's error (usage line, `prog: error: message`, exit 2), the message kept to one line."""
        super().error(" ".join(str(message).split()))

    def parse_into_dataclasses(self, argv: list[str], defaults: dict | None = None) -> tuple:
        """The dataclasses from `argv` (options, or one .json / .yaml file) or from `defaults` when `argv` is empty;
        a value a dataclass refuses (its `__post_init__` raising `ValueError`) ends the program like argparse's own
        errors, in one line with exit status 2."""
        try:
            if not argv and defaults is not None:
                return self.parse_dict(defaults)
            if len(argv) == 1 and argv[0].endswith(".json"):
                return self._from_file(argv[0], self.parse_json_file)
            if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
                return self._from_file(argv[0], self.parse_yaml_file)
            return self.parse_args_into_dataclasses(argv, look_for_args_file=False)
        except (ValueError, TypeError) as error:
            self.error(str(error))

    def _from_file(self, path: str, parse) -> tuple:
        if not Path(path).is_file():
            self.error(f"argument file {path} does not exist")
        # A file's values bypass argparse: tuple fields are checked here for their length.
        outputs = parse(path)
        for output in outputs:
            for field in dataclasses.fields(output):
                field_type = get_type_hints(type(output)).get(field.name)
                if get_origin(field_type) is not tuple:
                    continue
                value, length = getattr(output, field.name), len(get_args(field_type))
                if not isinstance(value, (list, tuple)) or len(value) != length:
                    self.error(f"{path}: `{field.name}` must be a list of {length} values, got {value!r}")
                setattr(output, field.name, tuple(value))
        return outputs


class _TupleAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, tuple(values))


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({error})") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


_json_object.__name__ = "JSON object"


@contextlib.contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """
    Ends the program as argparse does (`prog: error: message` on stderr, exit status 2, no traceback) on the errors
    a user's input causes: a bad value, a missing or unusable file or folder, bad data (also when streamed data is
    found bad as the `Trainer` reads it). Any other error raised inside the `Trainer` (training, evaluation) is a
    failure of the run, not of the input: it keeps its traceback.
    """
    try:
        yield
    # A config's own validation (`@strict` dataclasses) raises huggingface_hub's StrictDataclassError, not ValueError.
    except (ValueError, OSError, StrictDataclassError) as error:
        from .data import BadDataError  # here, not at the top: only an error needs the data package

        # A bad file of streamed data is found while the Trainer reads it, and is still the user's input.
        if _raised_in_trainer(error) and not isinstance(error, BadDataError):
            raise
        if isinstance(error, StrictDataclassError) and error.__cause__ is not None:
            error = error.__cause__  # the validator's own message, without the dataclass machinery's wrapping
        lines = str(error).strip().splitlines() or [type(error).__name__]
        print(f"{prog}: error: " + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


def _raised_in_trainer(error: BaseException) -> bool:
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__") == "transformers.trainer":
            return True
        traceback = traceback.tb_next
    return False
