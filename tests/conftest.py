"""Shared fixtures: a tiny ViT checkpoint, a tiny synthetic RGB + thermal dataset, saved tiny FER models.

Fixtures (stable names, used across the test suite):
- `tiny_vit_dir`: folder of a tiny randomly initialised `ViTModel` checkpoint (`tiny_models.TINY_VIT`, 32 px).
- `synthetic_dataset_dir`: a 42-pair synthetic benchmark at 32 px with 6 subjects (folder layout + manifest.csv).
- `tiny_image_processor`: a `ViTFERImageProcessor` at the tiny models' 32 px.
- `saved_fer_model`: `saved_fer_model(variant)` saves a tiny model of `tiny_models.VARIANTS[variant]` with its
  image processor and returns the folder (one folder per variant for the session).
"""

import gc
import os
import tempfile


# Remote code loaded by the tests is copied into HF_MODULES_CACHE, which transformers reads once at import: keep it
# out of the user's cache. No test reaches the Hub.
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="vit-fer-test-modules-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One torch thread per process, in this process and in every subprocess and server the tests start: the models are
# tiny, and on a shared machine several OpenMP threads per process mostly wait on each other (set before torch loads).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from tiny_models import TINY_VIT, VARIANTS, write_tiny_vit  # noqa: E402

from vit_fer.factory import create_multimodal_vit_model  # noqa: E402
from vit_fer.image_processing_vit_fer import ViTFERImageProcessor  # noqa: E402
from vit_fer.synthetic import synthesize_dataset  # noqa: E402


def pytest_collection_modifyitems(items):
    """Modules marked `end_to_end` (they train, export or start processes: seconds per test) run first, the longest
    of them (`end_to_end(longest=True)`) before the others, then the rest in their order. `make test` hands whole
    modules to its workers in this order (`--dist loadfile --no-loadscope-reorder`): started last, a long module
    would leave the other workers idle while it finishes."""

    def rank(item) -> int:
        marker = item.get_closest_marker("end_to_end")
        return 2 if marker is None else 0 if marker.kwargs.get("longest") else 1

    items.sort(key=rank)


def pytest_collection_finish(session):
    """Moves what the imports and the collection made (torch, transformers, Gradio: half a million objects) out of the
    garbage collector's sight: accelerate and the Trainer call `gc.collect()` at every training run, and each of those
    full collections would traverse all of it again (about a fifth of test_train.py's time). It changes no test: the
    frozen objects live for the whole session anyway."""
    gc.freeze()


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory):
    return write_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="session")
def synthetic_dataset_dir(tmp_path_factory):
    return synthesize_dataset(
        tmp_path_factory.mktemp("synthetic") / "data",
        num_samples=42,
        seed=0,
        image_size=32,
        num_subjects=6,
        progress=False,
    )


@pytest.fixture
def tiny_image_processor():
    return ViTFERImageProcessor(size=TINY_VIT["image_size"])


@pytest.fixture(scope="session")
def saved_fer_model(tiny_vit_dir, tmp_path_factory):
    folders = {}

    def save(variant: str):
        if variant not in folders:
            torch.manual_seed(0)
            model = create_multimodal_vit_model(model_name=tiny_vit_dir, **VARIANTS[variant])
            folder = tmp_path_factory.mktemp(f"model-{variant}")
            model.save_pretrained(folder)
            ViTFERImageProcessor(size=TINY_VIT["image_size"]).save_pretrained(folder)
            folders[variant] = folder
        return folders[variant]

    return save
