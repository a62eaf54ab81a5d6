"""The README's Python blocks run as written, offline, each in a fresh process in a folder holding what the README
says it holds (a saved model in outputs/demo, face.jpg / face.png, a model folder at the Hub-style path
you/vit-fer-late, and for the ONNX block the demo model exported to onnx/). The test fails when a block is added or changed so that it no longer runs."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from PIL import Image

from vit_fer.cli import main


ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


def block_id(block: str) -> str:
    first = next(line for line in block.splitlines() if line.strip() and not line.startswith(("#", "import", "from")))
    return re.sub(r"\W+", "-", first)[:40]


@pytest.fixture
def readers_folder(tmp_path, saved_fer_model):
    shutil.copytree(saved_fer_model("early-concat"), tmp_path / "outputs" / "demo")
    shutil.copytree(saved_fer_model("late-attention"), tmp_path / "you" / "vit-fer-late")
    Image.new("RGB", (40, 40), (180, 120, 100)).save(tmp_path / "face.jpg")
    Image.new("L", (40, 40), 140).save(tmp_path / "face.png")
    return tmp_path


@pytest.mark.parametrize("block", BLOCKS, ids=[block_id(block) for block in BLOCKS])
def test_readme_python_block_runs_offline(block, readers_folder):
    if "onnxruntime.InferenceSession" in block:
        # Exported here rather than for every block: the export takes seconds.
        from vit_fer.onnx_export import export_onnx

        export_onnx(readers_folder / "outputs" / "demo", readers_folder / "onnx" / "model.onnx")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                   "HF_MODULES_CACHE": str(readers_folder / "modules")}  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-c", block], cwd=readers_folder, capture_output=True, text=True, env=environment, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    if "trainer.save_model()" in block:
        # The README's next step: the card of the folder the user's own Trainer wrote.
        folder = readers_folder / "outputs" / "my-trainer-run"
        assert main(["card", str(folder)]) == 0
        card = ModelCard.load(folder / "README.md")
        assert [result.dataset_split for result in card.data.eval_results][:1] == ["validation"]
        assert "records no training run" in card.text


def test_the_readme_blocks_are_found():
    # A change to the fences (```python) would silently leave every block unrun.
    assert len(BLOCKS) >= 4 and any("onnxruntime.InferenceSession" in block for block in BLOCKS)
