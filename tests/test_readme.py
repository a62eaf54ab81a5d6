"""The README's Python blocks run as written, offline, each as a fresh `__main__` module (one interpreter runs them in
turn), in a folder holding what the README says it holds (a saved model in outputs/demo, face.jpg / face.png, a model
folder at the Hub-style path you/vit-fer-late, and for the ONNX block the demo model exported to onnx/). The test
fails when a block is added or changed so that it no longer runs."""

import json
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


pytestmark = pytest.mark.end_to_end


ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


def block_id(block: str) -> str:
    first = next(line for line in block.splitlines() if line.strip() and not line.startswith(("#", "import", "from")))
    return re.sub(r"\W+", "-", first)[:40]


# Runs the blocks it reads from stdin (a JSON list) in order, each as a fresh `__main__` module (none sees another's
# names) from the reader's folder, and writes one line per block to the report: "ok" or the block's traceback.
RUN_BLOCKS = """
import json, os, sys, traceback, types
folder, report, blocks = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())
with open(report, "w") as out:
    for block in blocks:
        os.chdir(folder)
        sys.modules["__main__"] = module = types.ModuleType("__main__")
        try:
            exec(compile(block, "<README block>", "exec"), module.__dict__)
        except BaseException:
            out.write(json.dumps(traceback.format_exc()) + "\\n")
        else:
            out.write(json.dumps("ok") + "\\n")
        out.flush()
"""


@pytest.fixture(scope="module")
def readers_folder(tmp_path_factory, saved_fer_model) -> Path:
    """The folder the README's reader works in, after every block ran there, in one interpreter: a fresh process per
    block would spend most of its time importing torch and transformers again."""
    folder = tmp_path_factory.mktemp("reader")
    shutil.copytree(saved_fer_model("early-concat"), folder / "outputs" / "demo")
    shutil.copytree(saved_fer_model("late-attention"), folder / "you" / "vit-fer-late")
    Image.new("RGB", (40, 40), (180, 120, 100)).save(folder / "face.jpg")
    Image.new("L", (40, 40), 140).save(folder / "face.png")
    # The ONNX block reads the demo model exported to onnx/, as the README's export command writes it.
    from vit_fer.onnx_export import export_onnx

    export_onnx(folder / "outputs" / "demo", folder / "onnx" / "model.onnx")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                   "HF_MODULES_CACHE": str(folder / "modules")}  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-c", RUN_BLOCKS, str(folder), str(folder / "blocks.jsonl")], input=json.dumps(BLOCKS),
        cwd=folder, capture_output=True, text=True, env=environment, timeout=900,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return folder


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[block_id(block) for block in BLOCKS])
def test_readme_python_block_runs_offline(index, readers_folder):
    outcomes = [json.loads(line) for line in (readers_folder / "blocks.jsonl").read_text().splitlines()]
    assert outcomes[index] == "ok", f"README block {index + 1}:\n{BLOCKS[index]}\n{outcomes[index]}"
    if "trainer.save_model()" in BLOCKS[index]:
        # The README's next step: the card of the folder the user's own Trainer wrote.
        folder = readers_folder / "outputs" / "my-trainer-run"
        assert main(["card", str(folder)]) == 0
        card = ModelCard.load(folder / "README.md")
        assert [result.dataset_split for result in card.data.eval_results][:1] == ["validation"]
        assert "records no training run" in card.text


def test_the_readme_blocks_are_found():
    # A change to the fences (```python) would silently leave every block unrun.
    assert len(BLOCKS) >= 4 and any("onnxruntime.InferenceSession" in block for block in BLOCKS)
