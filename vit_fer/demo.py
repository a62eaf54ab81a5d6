"""A Gradio page for any saved vit-fer model: `vit-fer demo --model DIR_OR_REPO_ID`.

The page is a thin layer over the FER pipeline ([`load_fer_pipeline`]): one upload per modality the model reads
(files, not Gradio images, so that 16-bit radiometric PNG/TIFF and `.npy` temperature maps reach the image
processor unchanged), the top-k probabilities as a bar label, the modality weights of the models that produce them,
previews of what was read (thermal false-coloured over the processor's temperature window), and example pairs from
the synthetic benchmark that classify in one click. A user's mistake (unreadable file, missing or wrong modality)
is shown as a message in the page.

The same app serves the Hub Space that `vit-fer space` writes (see [`vit_fer.space`]). Gradio is imported when a page
is built, never by `import vit_fer`.
"""

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import PIL.Image

from .explain import METHOD_NAMES
from .explain import METHODS as EXPLANATION_METHODS
from .inference import FERPipeline, find_image_pairs, load_fer_pipeline
from .thermal import IMAGE_EXTENSIONS, THERMAL_EXTENSIONS, load_rgb_file, load_thermal_file
from .transforms import input_names_for_config


logger = logging.getLogger(__name__)

MODALITY_NAMES = {"rgb": "RGB", "thermal": "thermal"}
PREVIEW_SIZE = 240
"""Height in pixels of the previews: model-sized inputs (32 px for a tiny model) would be thumbnails."""
NUM_EXAMPLES = 7
"""Synthetic example pairs generated when no examples folder is given: one per expression."""


def describe_model(classifier: FERPipeline) -> str:
    """One line naming the model's architecture, fusion design and inputs."""
    config = classifier.model.config
    parts = [type(classifier.model).__name__]
    fusion_layer = getattr(config, "fusion_layer", None)
    field = "prediction_fusion" if fusion_layer == "prediction" else "fusion_type"
    design = getattr(config, field, None)
    if design is not None:
        if isinstance(fusion_layer, int):  # mid fusion: the layer from which the modalities interact
            parts.append(f"{design} fusion from layer {fusion_layer}")
        else:
            parts.append(f"{design} fusion" + (f" of {fusion_layer}s" if fusion_layer else ""))
    modalities = " + ".join(MODALITY_NAMES[m] for m in input_names_for_config(config))
    return f"{', '.join(parts)} · reads {modalities} · {config.num_labels} expressions"


def thermal_preview(path: str | os.PathLike, classifier: FERPipeline) -> PIL.Image.Image:
    """
    The thermal frame at `path` as the model reads it, false-coloured with a colour bar: temperatures (16-bit
    radiometric counts, float TIFF, `.npy` in °C) over the image processor's temperature window (saturating outside
    it, as the model sees them); 8-bit frames as display intensity; pseudo-colour frames as they are.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    processor = classifier.image_processor
    frame = load_thermal_file(path)
    unit = processor.thermal_to_unit(frame)  # the processor's own reading, before resizing
    array = np.asarray(frame)
    figure = Figure(figsize=(3.4, PREVIEW_SIZE / 80), dpi=80)
    axes = figure.add_subplot()
    axes.set_axis_off()
    # The caption goes below the image: Gradio lays the component's label over its top-left corner.
    pseudo_colour = array.dtype == np.uint8 and array.ndim == 3 and 3 in array.shape
    if pseudo_colour or getattr(frame, "mode", "") in ("RGB", "P"):
        axes.imshow(np.moveaxis(unit, 0, -1))
        caption = "8-bit pseudo-colour, as saved"
    elif array.dtype == np.uint8:
        image = axes.imshow(unit[0] * 255.0, cmap="inferno", vmin=0, vmax=255)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        caption = "8-bit intensity (no temperatures)"
    else:
        low, high = processor.thermal_temperature_range
        image = axes.imshow(low + unit[0] * (high - low), cmap="inferno", vmin=low, vmax=high)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        caption = f"temperature (°C), window {low:g}–{high:g} °C, saturating outside"
    figure.text(0.5, 0.03, caption, ha="center", fontsize=9)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return PIL.Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


class DemoResult(NamedTuple):
    """What the page shows for one input."""

    probabilities: dict[str, float]
    """The top-k `{label: probability}`."""
    modality_weights: dict[str, float] | None
    """`{"RGB": weight, "thermal": weight}`, or `None` for a model without them."""
    previews: dict[str, PIL.Image.Image]
    """Per modality given, the image as read (thermal false-coloured)."""
    explanation: PIL.Image.Image | None
    """The explanation overlay of `vit-fer explain` (maps on the images, top classes), when asked for."""


def classify_files(
    classifier: FERPipeline, files: dict[str, str | None], top_k: int, explain_method: str | None = None
) -> DemoResult:
    """
    Classifies the uploaded `files` (`{"rgb": path, "thermal": path}`, a modality left `None` when not given), and
    explains the prediction with `explain_method` (`"grad_cam"` or `"attention_rollout"`, see `vit_fer.explain`)
    unless it is `None`.

    Raises:
        `ValueError` (including `ImageFileError`) with a message for the page, for any mistake in the inputs.
    """
    modalities = list(input_names_for_config(classifier.model.config))
    given = {modality: path for modality, path in files.items() if path}
    if not given:
        names = " and ".join(f"an {MODALITY_NAMES[m]}" if m == "rgb" else f"a {MODALITY_NAMES[m]}" for m in modalities)
        raise ValueError(f"Upload {names} image, or click an example below.")
    unread = sorted(set(given) - set(modalities))
    if unread:
        raise ValueError(f"This model reads only {' and '.join(MODALITY_NAMES[m] for m in modalities)} images.")
    previews = {}
    if "rgb" in given:
        rgb = load_rgb_file(given["rgb"]).convert("RGB")
        scale = PREVIEW_SIZE / rgb.height
        previews["rgb"] = rgb.resize((round(rgb.width * scale), PREVIEW_SIZE), PIL.Image.Resampling.NEAREST)
    if "thermal" in given:
        previews["thermal"] = thermal_preview(given["thermal"], classifier)
    explain = {"explain": True, "explain_method": explain_method} if explain_method else {}
    output = classifier(given, top_k=top_k, **explain)
    probabilities = {item["label"]: item["score"] for item in output["predictions"]}
    weights = output.get("modality_weights")
    if weights is not None:
        weights = {MODALITY_NAMES[modality]: weight for modality, weight in weights.items()}
    overlay = None
    if explain_method:
        from .explain import display_images, plot_explanation

        explanation = output["explanation"]
        with tempfile.TemporaryDirectory() as folder:
            path = plot_explanation(
                display_images(given, classifier.image_processor),
                {explanation["method"]: explanation["maps"]},
                output["predictions"],
                Path(folder) / "explanation.png",
                modality_weights=output.get("modality_weights"),
                explained_label=explanation["label"],
                shared=explanation["shared"],
            )
            overlay = PIL.Image.open(path).convert("RGB")
    return DemoResult(probabilities, weights, previews, overlay)


def synthesize_examples(output_dir: str | os.PathLike, image_size: int) -> Path:
    """Writes one synthetic RGB + thermal pair per expression (the benchmark's layout) to `output_dir`."""
    from .synthetic import synthesize_dataset

    return synthesize_dataset(
        output_dir, num_samples=NUM_EXAMPLES, seed=0, image_size=image_size, num_subjects=NUM_EXAMPLES, progress=False
    )


def example_pairs(
    classifier: FERPipeline, examples_dir: str | os.PathLike | None
) -> tuple[list[list[str | None]], list[str]]:
    """
    Example inputs, one row per pair in the order of the page's uploads, and their names (relative path without
    extension, e.g. `happy/s000_00005`): the pairs of `examples_dir` (rgb/ and thermal/ folders, as `vit-fer predict
    --input_dir` reads them), or, without one, one synthetic pair per expression at the model's input size.
    """
    modalities = list(input_names_for_config(classifier.model.config))
    if examples_dir is None:
        folder = Path(tempfile.mkdtemp(prefix="vit-fer-demo-examples-")) / "examples"
        examples_dir = synthesize_examples(folder, classifier.image_processor.size["height"])
    pairs = find_image_pairs(examples_dir, modalities)
    rows = [[str(pair[m]) if m in pair else None for m in modalities] for pair in pairs]
    # Below the modality folder: the same for every file of a pair.
    first_files = [next(iter(pair.values())).relative_to(examples_dir) for pair in pairs]
    names = [Path(*path.parts[1:]).with_suffix("").as_posix() for path in first_files]
    return rows, names


def build_demo(
    classifier: FERPipeline,
    title: str,
    examples_dir: str | os.PathLike | None = None,
    top_k: int = 3,
):
    """
    The Gradio page (a `gradio.Blocks`) for `classifier`.

    Args:
        classifier ([`FERPipeline`]): The model's pipeline.
        title (`str`): The model's name, shown at the top (its Hub id or folder).
        examples_dir (`str` or `os.PathLike`, *optional*): Example pairs (rgb/ and thermal/ folders); by default one
            synthetic pair per expression is generated.
        top_k (`int`, *optional*, defaults to 3): Number of expressions shown.
    """
    import gradio as gr

    modalities = list(input_names_for_config(classifier.model.config))
    file_types = {"rgb": list(IMAGE_EXTENSIONS), "thermal": list(THERMAL_EXTENSIONS)}
    upload_labels = {
        "rgb": "RGB face (JPEG, PNG, …)",
        "thermal": "Thermal face (8-bit or 16-bit radiometric PNG/TIFF, or .npy in °C)",
    }
    low, high = classifier.image_processor.thermal_temperature_range
    steps = " and ".join(f"the {MODALITY_NAMES[m]} image" for m in modalities)
    instructions = f"**Upload {steps} of one face, then press Classify** — or click an example at the bottom."
    if len(modalities) == 2:
        instructions += " The two images must show the same face, registered (same framing)."
    if "thermal" in modalities:
        instructions += f" Thermal temperatures are read through a {low:g}–{high:g} °C window."

    with gr.Blocks(title=f"vit-fer · {title}") as demo:
        gr.Markdown(f"# Facial expression recognition\n`{title}` — {describe_model(classifier)}\n\n{instructions}")
        with gr.Row():
            with gr.Column():
                uploads = [
                    gr.File(label=upload_labels[m], file_types=file_types[m], elem_id=f"{m}-input") for m in modalities
                ]
                method = gr.Radio(
                    [(METHOD_NAMES[name], name) for name in EXPLANATION_METHODS] + [("none", "")],
                    value=EXPLANATION_METHODS[0],
                    label="Explanation map (which regions drove the prediction)",
                    elem_id="explain-method",
                )
                with gr.Row():
                    clear = gr.Button("Clear")
                    submit = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column():
                message = gr.Markdown(elem_id="message")
                prediction = gr.Label(
                    num_top_classes=top_k, label=f"Expression (top {top_k} probabilities)", elem_id="prediction"
                )
                weights = gr.Label(
                    label="Modality weights (share of the decision)",
                    show_heading=False,
                    visible=False,
                    elem_id="weights",
                )
                with gr.Row():
                    previews = [
                        gr.Image(
                            label={"rgb": "RGB as read", "thermal": "Thermal as read (false colour)"}[m],
                            type="pil",
                            interactive=False,
                            elem_id=f"{m}-preview",
                        )
                        for m in modalities
                    ]
        explanation = gr.Image(
            label="Explanation: the maps on the images, and the top classes", type="pil", interactive=False,
            elem_id="explanation",
        )  # fmt: skip
        outputs = [message, prediction, weights, *previews, explanation]
        cleared = ["", None, gr.Label(visible=False), *[None] * len(previews), None]

        def run(*values: str | None) -> list[Any]:
            *paths, explain_method = values
            try:
                result = classify_files(classifier, dict(zip(modalities, paths, strict=True)), top_k, explain_method)
            except (ValueError, OSError) as error:
                # The user's mistake: the message says which file and what was expected. Gradio keeps uploads
                # under a temporary folder; the user knows the file by its name.
                text = str(error)
                for path in filter(None, paths):
                    text = text.replace(str(path), Path(path).name)
                return [f"⚠️ **Cannot classify:** {text}", *cleared[1:]]
            except Exception as error:  # noqa: BLE001 - the page shows a message, the server log the traceback
                logger.exception("vit-fer demo: classification failed")
                return [f"⚠️ **Internal error** ({type(error).__name__}: {error}). See the server log.", *cleared[1:]]
            return [
                "",
                result.probabilities,
                gr.Label(value=result.modality_weights, visible=result.modality_weights is not None),
                *[result.previews.get(m) for m in modalities],
                result.explanation,
            ]

        submit.click(run, inputs=[*uploads, method], outputs=outputs, api_name="classify")
        clear.click(lambda: [None] * len(uploads) + cleared, outputs=[*uploads, *outputs])
        rows, names = example_pairs(classifier, examples_dir)
        examples = gr.Examples(
            examples=rows,
            example_labels=names,
            inputs=uploads,
            label="Examples from the synthetic RGB + thermal benchmark (click one to classify it)",
        )
        # One click fills the uploads and classifies, with the explanation chosen above.
        examples.load_input_event.then(run, inputs=[*uploads, method], outputs=outputs)
    return demo


def launch_demo(
    model: str | os.PathLike,
    host: str | None = "127.0.0.1",
    port: int | None = None,
    examples_dir: str | os.PathLike | None = None,
    top_k: int = 3,
    device: str | None = None,
    trust_remote_code: bool = True,
) -> None:
    """
    Serves the page of `model` (a saved folder or Hub id, loaded with `trust_remote_code=True`) until interrupted.

    Args:
        host (`str`, *optional*, defaults to `"127.0.0.1"`): Address to listen on; `None` lets Gradio choose
            (`GRADIO_SERVER_NAME`, as on a Hub Space).
        port (`int`, *optional*): Port; by default Gradio's (`GRADIO_SERVER_PORT` or the first free from 7860).
        examples_dir, top_k: As in [`build_demo`].
        device (`str`, *optional*): Where the model runs; defaults to the pipeline's choice.
        trust_remote_code (`bool`, *optional*, defaults to `True`): Run the model code saved beside the weights
            (vit-fer models are custom code on the Hub).
    """
    # Gradio's usage analytics would call out to the network on start.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    classifier = load_fer_pipeline(model, device=device, trust_remote_code=trust_remote_code)
    demo = build_demo(classifier, str(model), examples_dir=examples_dir, top_k=top_k)
    demo.launch(server_name=host, server_port=port, show_error=False)


__all__ = [
    "DemoResult",
    "build_demo",
    "classify_files",
    "example_pairs",
    "launch_demo",
    "synthesize_examples",
    "thermal_preview",
]
