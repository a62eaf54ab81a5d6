"""A Hugging Face Space for a trained model: `vit-fer space DIR OUT` (train.py: `--write_space`).

The folder is complete as it is: `app.py` serves the page of [`vit_fer.demo`] for the model's Hub id, loaded with
`trust_remote_code=True` (or, with `python app.py MODEL_DIR`, for a local folder); `requirements.txt` pins what the
model and the page need to the versions it was written with; `README.md` carries the Space's YAML header (`sdk:
gradio`, `models:` naming the repository); `examples/` holds one synthetic RGB + thermal pair per expression at the
model's input size. vit-fer is not on PyPI, so the package's sources travel in `vit_fer/`, with the metadata that
`importlib.metadata` reads for its version.
"""

import importlib.metadata
import os
import re
import shutil
import sys
from pathlib import Path

from huggingface_hub.utils import HFValidationError, validate_repo_id

from .model_card import RUN_CONFIG_NAME, read_json


DISTRIBUTION = "vit-fer"
# Extras of vit-fer that the page needs on top of the runtime requirements.
SPACE_EXTRAS = ("demo",)

APP_TEMPLATE = '''"""Gradio Space of the vit-fer model {repo_id}: facial expression recognition from {inputs}.

On the Hub, this Space loads {repo_id} with `trust_remote_code=True`. To run it elsewhere:
`pip install -r requirements.txt`, then `python app.py [MODEL_DIR_OR_HUB_ID]` (default: {repo_id}).
"""

import sys
from pathlib import Path

# vit_fer/ beside this file: the vit-fer sources this Space was written with.
from vit_fer.demo import launch_demo


MODEL_ID = "{repo_id}"

if __name__ == "__main__":
    model = sys.argv[1] if len(sys.argv) > 1 else MODEL_ID
    # host=None: Gradio reads GRADIO_SERVER_NAME, which a Space sets to serve beyond localhost.
    examples = Path(__file__).resolve().parent / "examples"
    launch_demo(model, host=None, examples_dir=examples, trust_remote_code=True)
'''

README_TEMPLATE = """---
title: {title}
emoji: 🌡️
colorFrom: indigo
colorTo: red
sdk: gradio
sdk_version: {gradio_version}
python_version: "{python_version}"
app_file: app.py
models:
  - {repo_id}
pinned: false
---

# {title}

Facial expression recognition with [{repo_id}](https://huggingface.co/{repo_id}) ({architecture}), from {inputs}.
Upload the images of one face (thermal: 8-bit or 16-bit radiometric PNG/TIFF, or `.npy` in °C), or click one of the
synthetic examples. The page shows the most likely expressions and, for models that weigh them, how much each
modality counted.

Run it elsewhere: `pip install -r requirements.txt && python app.py [MODEL_DIR_OR_HUB_ID]`.

Written by `vit-fer space`; `vit_fer/` holds the vit-fer sources the page runs on.
"""


def _pinned_requirements() -> list[str]:
    """vit-fer's runtime requirements and the page's extras, each pinned to the installed version."""
    names = []
    for requirement in importlib.metadata.requires(DISTRIBUTION) or []:
        spec, _, marker = requirement.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if extra is None or extra.group(1) in SPACE_EXTRAS:
            names.append(re.match(r"[A-Za-z0-9_.-]+", spec.strip()).group(0))
    pins = []
    for name in sorted(set(names), key=str.lower):
        if name.lower() == DISTRIBUTION:
            continue
        # A local build label (torch's "+cpu") names no release on PyPI.
        pins.append(f"{name}=={importlib.metadata.version(name).split('+')[0]}")
    return pins


def _copy_package(destination: Path) -> None:
    """The vit_fer sources, and the distribution metadata that `importlib.metadata.version("vit-fer")` reads."""
    source = Path(__file__).resolve().parent
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".md", ".json") and "__pycache__" not in path.parts:
            target = destination / "vit_fer" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    version = importlib.metadata.version(DISTRIBUTION)
    info = destination / f"{DISTRIBUTION.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {version}\n")


def check_space_repo_id(repo_id: str) -> str:
    """Returns `repo_id` if it is a full `namespace/name` Hub model id (as a Space's `models:` names it).

    Raises:
        `ValueError` naming `repo_id` otherwise.
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"`repo_id` must be a Hub model id, got {repo_id!r}: {error}") from error
    if "/" not in repo_id:
        raise ValueError(f"`repo_id` must be a full `namespace/name` Hub id (the Space loads it), got {repo_id!r}.")
    return repo_id


def space_repo_id(model_dir: str | os.PathLike, repo_id: str | None = None) -> str:
    """The Hub id the Space loads: `repo_id`, or the `--hub_model_id` that train.py recorded in `run_config.json`.

    Raises:
        `ValueError` when neither names a full `namespace/name` id.
    """
    if repo_id is None and (Path(model_dir) / RUN_CONFIG_NAME).is_file():
        repo_id = read_json(Path(model_dir), RUN_CONFIG_NAME).get("training", {}).get("hub_model_id")
    if repo_id is None:
        raise ValueError(
            f"Name the model's Hub repository (`repo_id`, e.g. your-name/vit-fer-early-concat): {model_dir} records "
            "no hub_model_id."
        )
    return check_space_repo_id(repo_id)


def write_space(model_dir: str | os.PathLike, output_dir: str | os.PathLike, repo_id: str | None = None) -> Path:
    """
    Writes a complete Gradio Space for the model in `model_dir` to `output_dir` (which must be absent or empty).

    Args:
        model_dir (`str` or `os.PathLike`): The trained model's folder (config, weights, processor).
        output_dir (`str` or `os.PathLike`): Where the Space goes.
        repo_id (`str`, *optional*): The model's Hub id; by default the `hub_model_id` of train.py's run.

    Returns:
        `output_dir`.
    """
    from .demo import synthesize_examples
    from .transforms import input_names_for_config

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"`model_dir` {model_dir} is not a folder.")
    repo_id = space_repo_id(model_dir, repo_id)
    config = read_json(model_dir, "config.json")
    processor = read_json(model_dir, "preprocessor_config.json")
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"`output_dir` {output_dir} must be absent or an empty folder: it is not overwritten.")
    output_dir.mkdir(parents=True, exist_ok=True)

    from transformers import AutoConfig

    modalities = list(input_names_for_config(AutoConfig.from_pretrained(model_dir, trust_remote_code=True)))
    inputs = " + ".join("RGB" if m == "rgb" else "thermal" for m in modalities) + " images"
    architecture = config.get("architectures", ["a vit-fer model"])[0]
    (output_dir / "app.py").write_text(APP_TEMPLATE.format(repo_id=repo_id, inputs=inputs))
    (output_dir / "requirements.txt").write_text("\n".join(_pinned_requirements()) + "\n")
    (output_dir / "README.md").write_text(
        README_TEMPLATE.format(
            title=f"{repo_id.split('/')[-1]} demo",
            gradio_version=importlib.metadata.version("gradio"),
            python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
            repo_id=repo_id,
            architecture=architecture,
            inputs=inputs,
        ),
        encoding="utf-8",
    )
    examples = synthesize_examples(output_dir / "examples", processor.get("size", {}).get("height", 224))
    # Written just above, and not for the page: the evidence masks, and the images of a modality it does not read.
    unused = [examples / "evidence_masks", *(examples / m for m in ("rgb", "thermal") if m not in modalities)]
    for folder in unused:
        if folder.is_dir():
            shutil.rmtree(folder)
    _copy_package(output_dir)
    return output_dir


__all__ = ["check_space_repo_id", "space_repo_id", "write_space"]
