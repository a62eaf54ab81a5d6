"""The `vit-fer` command line: a registry of subcommands.

A subcommand is a [`Command`]: its name, a one-line help, a function adding its arguments to an
`argparse.ArgumentParser`, and a function running it on the parsed arguments (returning the exit status).
`register_command` adds one; `main` parses and dispatches.
"""

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .hub import PUBLISH_HELP, add_publish_arguments, run_publish_command
from .model_card import CARD_HELP, add_card_arguments, run_card_command


@dataclass(frozen=True)
class Command:
    """A `vit-fer` subcommand."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def register_command(command: Command) -> Command:
    """Adds `command` to the `vit-fer` command line; names are unique."""
    if command.name in COMMANDS:
        raise ValueError(f"A `vit-fer {command.name}` command is already registered.")
    COMMANDS[command.name] = command
    return command


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _add_synthesize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output_dir", required=True, type=Path, help="Folder to write (empty or absent).")
    parser.add_argument("--num_samples", type=_positive_int, default=2000, help="Number of RGB + thermal pairs.")
    parser.add_argument("--seed", type=int, default=0, help="Seed: the same seed writes the same files.")
    parser.add_argument("--image_size", type=_positive_int, default=224, help="Side of the square images (px).")
    parser.add_argument("--num_subjects", type=_positive_int, help="Distinct people (default: one per 50 samples).")


def _run_synthesize(args: argparse.Namespace) -> int:
    # Commands import their modules when run, so `vit-fer --help` does not wait for torch and transformers.
    from .synthetic import synthesize_dataset

    output_dir = synthesize_dataset(
        args.output_dir,
        num_samples=args.num_samples,
        seed=args.seed,
        image_size=args.image_size,
        num_subjects=args.num_subjects,
    )
    print(f"Wrote {args.num_samples} RGB + thermal pairs to {output_dir}")
    return 0


def _add_model_and_pair_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Saved model folder or Hub id (with its image processor).")
    parser.add_argument("--rgb", type=Path, help="RGB image of one face.")
    parser.add_argument("--thermal", type=Path, help="Thermal image of the same face (image file or .npy in °C).")


def _add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_and_pair_arguments(parser)
    parser.add_argument("--input_dir", type=Path, help="Folder with rgb/ and/or thermal/ images paired by name.")
    parser.add_argument("--top_k", type=_positive_int, default=3, help="Number of emotions to report.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of text.")
    parser.add_argument("--device", help="Device to run on, e.g. cpu or cuda:0 (default: the pipeline's choice).")
    parser.add_argument(
        "--skip_bad_samples", action="store_true", help="With --input_dir: leave out unpaired files (listed) instead of failing."
    )


def _format_text(item: dict) -> str:
    lines = [" + ".join(f"{modality}: {path}" for modality, path in item["inputs"].items())]
    if "error" in item:
        return "\n".join([*lines, f"  error: {item['error']}"])
    lines += [f"  {p['label']:<10} {p['score']:.3f}" for p in item["predictions"]]
    if "modality_weights" in item:
        weights = ", ".join(f"{modality} {weight:.3f}" for modality, weight in item["modality_weights"].items())
        lines.append(f"  modality weights: {weights}")
    return "\n".join(lines)


def _run_predict(args: argparse.Namespace) -> int:
    from .inference import find_image_pairs, load_fer_pipeline
    from .transforms import input_names_for_config

    single = {modality: path for modality, path in (("rgb", args.rgb), ("thermal", args.thermal)) if path is not None}
    if bool(single) == (args.input_dir is not None):
        raise ValueError("give --rgb and/or --thermal, or --input_dir (not both).")
    classifier = load_fer_pipeline(args.model, device=args.device)
    if single:
        pairs = [single]
    else:
        modalities = list(input_names_for_config(classifier.model.config))
        pairs = find_image_pairs(args.input_dir, modalities, skip_bad_samples=args.skip_bad_samples)
    results, failed = [], 0
    for pair in pairs:
        inputs = {modality: str(path) for modality, path in pair.items()}
        try:
            results.append({"inputs": inputs, **classifier(inputs, top_k=args.top_k)})
        except ValueError as error:
            # One bad file does not cost the other pairs their results; it is named, and the exit status says so.
            failed += 1
            print(f"vit-fer predict: error: {error}", file=sys.stderr)
            results.append({"inputs": inputs, "error": str(error)})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print("\n".join(_format_text(item) for item in results))
    return 2 if failed else 0


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Saved model folder or Hub id (with its image processor).")
    parser.add_argument("--host", default="127.0.0.1", help="Address to serve on (0.0.0.0: every interface).")
    parser.add_argument("--port", type=_positive_int, help="Port (default: Gradio's, 7860 or the next free one).")
    parser.add_argument("--examples_dir", type=Path, help="Example pairs (rgb/, thermal/); default: synthetic ones.")
    parser.add_argument("--top_k", type=_positive_int, default=3, help="Number of expressions shown.")
    parser.add_argument("--device", help="Device to run on, e.g. cpu or cuda:0 (default: the pipeline's choice).")


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import launch_demo

    launch_demo(args.model, args.host, args.port, args.examples_dir, args.top_k, args.device)
    return 0


def _add_space_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="The trained model's folder.")
    parser.add_argument("output_dir", type=Path, help="Folder to write the Space to (absent or empty).")
    parser.add_argument("--repo_id", help="The model's Hub id (default: the hub_model_id of the training run).")


def _run_space(args: argparse.Namespace) -> int:
    from .space import write_space

    print(f"Wrote a Gradio Space to {write_space(args.model_dir, args.output_dir, repo_id=args.repo_id)}")
    return 0


def _add_export_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="Saved model folder or Hub id.")
    parser.add_argument("output", type=Path, help="The .onnx file to write; config and processor files go beside it.")
    parser.add_argument("--opset", type=_positive_int, help="ONNX opset (default: the exporter's).")


def _run_export_onnx(args: argparse.Namespace) -> int:
    from .onnx_export import export_onnx

    # The exporter's graph passes log every step at INFO, the level `main` shows.
    for name in ("onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)
    print(f"Wrote {export_onnx(args.model_dir, args.output, opset_version=args.opset)}")
    return 0


def _add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_and_pair_arguments(parser)
    parser.add_argument("--output", required=True, type=Path, help="PNG file to write the overlay figure to.")
    parser.add_argument(
        "--method", choices=["grad_cam", "attention_rollout", "all"], default="all", help="Explanation method(s)."
    )
    parser.add_argument("--label", help="Class to explain (default: the predicted one).")
    parser.add_argument("--device", help="Device to run on, e.g. cpu or cuda:0 (default: the pipeline's choice).")


def _run_explain(args: argparse.Namespace) -> int:
    from .explain import METHODS, write_overlay
    from .inference import load_fer_pipeline

    pair = {modality: path for modality, path in (("rgb", args.rgb), ("thermal", args.thermal)) if path is not None}
    if not pair:
        raise ValueError("give --rgb and/or --thermal.")
    if args.output.suffix.lower() != ".png":
        raise ValueError(f"--output must be a .png file, got {args.output}.")
    classifier = load_fer_pipeline(args.model, device=args.device)
    methods = METHODS if args.method == "all" else (args.method,)
    pair = {modality: str(path) for modality, path in pair.items()}
    print(f"Wrote {write_overlay(classifier, pair, args.output, methods=methods, label=args.label)}")
    return 0


def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Saved model folder or Hub id (with its image processor).")
    parser.add_argument("--data", required=True, help="Data folder or manifest (any layout train.py reads).")
    parser.add_argument(
        "--split", default="test", choices=["train", "validation", "test", "all"],
        help="Split to score; split as the model's training did when its folder has run_config.json (default: test).",
    )  # fmt: skip
    parser.add_argument(
        "--output_dir", type=Path, help="Where robustness.json and robustness.png go (default: the model folder)."
    )
    parser.add_argument("--device", help="Device to run on, e.g. cpu or cuda:0 (default: the pipeline's choice).")


def _run_evaluate(args: argparse.Namespace) -> int:
    from .robustness import PLOT_NAME, REPORT_NAME, evaluate_saved_model, format_report

    report, folder = evaluate_saved_model(args.model, args.data, args.split, args.output_dir, args.device)
    print(format_report(report))
    print(f"Wrote {folder / REPORT_NAME} and {folder / PLOT_NAME}")
    return 0


def _add_convert_original_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="The .pth state dict the original implementation saved.")
    parser.add_argument("output_dir", type=Path, help="Folder to write the vit-fer model to (new or empty).")
    parser.add_argument("--mode", choices=("rgb", "thermal", "combined"), default="rgb", help="The original's mode.")
    parser.add_argument(
        "--fusion_strategy", choices=("early", "late"), default="early", help="The original's fusion strategy."
    )
    parser.add_argument("--fusion_type", choices=("concat", "add", "attention"), help="The original's fusion_type.")
    parser.add_argument("--fusion_layer", choices=("feature", "prediction"), help="Late fusion: the original's layer.")
    parser.add_argument(
        "--model_name",
        default="google/vit-base-patch16-224-in21k",
        help="The ViT checkpoint the original was built on (its encoder shape is read from it, not its weights).",
    )


def _run_convert_original(args: argparse.Namespace) -> int:
    from .convert_original import convert_original_checkpoint

    convert_original_checkpoint(
        args.checkpoint,
        args.output_dir,
        mode=args.mode,
        fusion_strategy=args.fusion_strategy if args.mode == "combined" else "early",
        fusion_type=args.fusion_type,
        fusion_layer=args.fusion_layer,
        model_name=args.model_name,
    )
    print(f"Converted {args.checkpoint} into {args.output_dir}")
    return 0


register_command(
    Command(
        "synthesize",
        "Write the synthetic RGB + thermal FER benchmark (folder layout + manifest.csv).",
        _add_synthesize_arguments,
        _run_synthesize,
    )
)
register_command(
    Command(
        "predict",
        "Predict emotions for one RGB/thermal pair or a folder of pairs.",
        _add_predict_arguments,
        _run_predict,
    )
)
register_command(
    Command("demo", "Serve a Gradio page classifying uploaded RGB/thermal faces.", _add_demo_arguments, _run_demo)
)
register_command(
    Command("space", "Write a Gradio Space for a model (app, requirements, card).", _add_space_arguments, _run_space)
)
register_command(
    Command(
        "export-onnx",
        "Export a saved model to ONNX (named inputs, dynamic batch) with its config and processor.",
        _add_export_onnx_arguments,
        _run_export_onnx,
    )
)
register_command(
    Command(
        "evaluate",
        "Robustness report: accuracy and macro-F1 with a modality missing, thermal noise and drift, RGB brightness "
        "and blur, and misregistration (JSON + plot).",
        _add_evaluate_arguments,
        _run_evaluate,
    )
)
register_command(
    Command(
        "explain",
        "Explain one prediction: RGB and thermal with heat maps, the top classes and the modality weights (PNG).",
        _add_explain_arguments,
        _run_explain,
    )
)
register_command(Command("card", CARD_HELP, add_card_arguments, run_card_command))
register_command(
    Command(
        "convert-original",
        "Convert a state dict saved by the original implementation into a vit-fer model folder.",
        _add_convert_original_arguments,
        _run_convert_original,
    )
)
register_command(Command("publish", PUBLISH_HELP, add_publish_arguments, run_publish_command))


def build_parser() -> argparse.ArgumentParser:
    """The `vit-fer` parser, with one subparser per registered command."""
    parser = argparse.ArgumentParser(prog="vit-fer", description="Facial expression recognition from RGB + thermal.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        subparser = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(subparser)
        subparser.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vit-fer` console script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        # Bad input (files, arguments, data): the message says what and where; a traceback would bury it. Exit
        # status 2, as for argparse's own errors.
        print(f"vit-fer {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
