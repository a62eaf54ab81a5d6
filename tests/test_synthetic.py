"""The synthetic RGB + thermal benchmark: deterministic per seed, loadable, and complementary by design."""

import csv
import hashlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from vit_fer.configuration_vit_fer import FER_LABELS
from vit_fer.data import load_fer_dataset
from vit_fer.image_processing_vit_fer import ViTFERImageProcessor
from vit_fer.synthetic import (
    SampleParams,
    SubjectParams,
    evidence_masks,
    plan_samples,
    render_pair,
    synthesize_dataset,
)


def files_of(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    first = synthesize_dataset(tmp_path / "a", num_samples=14, seed=7, image_size=24, progress=False)
    again = synthesize_dataset(tmp_path / "b", num_samples=14, seed=7, image_size=24, progress=False)
    other = synthesize_dataset(tmp_path / "c", num_samples=14, seed=8, image_size=24, progress=False)
    assert files_of(first) == files_of(again)
    # Images only: an empty evidence mask is the same file whatever the seed.
    images = [{v for k, v in files_of(folder).items() if k.parts[0] in ("rgb", "thermal")} for folder in (first, other)]
    assert images[0].isdisjoint(images[1])


def test_files_manifest_and_loader_agree(synthetic_dataset_dir):
    with open(synthetic_dataset_dir / "manifest.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 42
    assert Counter(row["label"] for row in rows) == {label: 6 for label in FER_LABELS}
    assert len({row["subject"] for row in rows}) == 6
    for row in rows:
        rgb = Image.open(synthetic_dataset_dir / row["rgb"])
        thermal = Image.open(synthetic_dataset_dir / row["thermal"])
        assert (rgb.mode, thermal.mode, rgb.size, thermal.size) == ("RGB", "I;16", (32, 32), (32, 32))
        assert row["rgb"].split("/")[1] == row["thermal"].split("/")[1] == row["label"]

    dataset = load_fer_dataset(synthetic_dataset_dir, validation_size=0.2, test_size=0.2)
    assert sum(len(split) for split in dataset.values()) == 42
    subjects = [set(split["subject"][:]) for split in dataset.values()]
    assert all(a.isdisjoint(b) for i, a in enumerate(subjects) for b in subjects[i + 1 :])


def test_thermal_files_hold_the_rendered_temperatures(tmp_path):
    folder = synthesize_dataset(tmp_path / "data", num_samples=3, seed=1, image_size=20, progress=False)
    label, _, params = plan_samples(3, 1, 1)[0]
    _, temperature = render_pair(label, params, 20)
    thermal_file = next((folder / "thermal" / label).glob("*_00000.png"))
    processor = ViTFERImageProcessor(size=20, do_normalize=False, thermal_temperature_range=(0.0, 100.0))
    decoded = processor(thermal_images=Image.open(thermal_file))["thermal_pixel_values"][0, 0].numpy() * 100.0
    np.testing.assert_allclose(decoded, temperature, atol=0.006)


@pytest.fixture(scope="module")
def params():
    rng = np.random.default_rng(0)
    return SampleParams.draw(rng, SubjectParams.draw(rng))


@pytest.mark.parametrize("pair", [("fear", "surprised"), ("angry", "disgust")])
def test_rgb_ambiguous_pairs_differ_only_in_thermal(params, pair):
    (rgb_a, thermal_a), (rgb_b, thermal_b) = (render_pair(label, params, 64) for label in pair)
    np.testing.assert_array_equal(rgb_a, rgb_b)
    assert np.abs(thermal_a - thermal_b).max() > 1.5  # degrees Celsius


@pytest.mark.parametrize("pair", [("happy", "neutral"), ("neutral", "sad"), ("happy", "sad")])
def test_thermal_ambiguous_expressions_differ_only_in_rgb(params, pair):
    (rgb_a, thermal_a), (rgb_b, thermal_b) = (render_pair(label, params, 64) for label in pair)
    np.testing.assert_array_equal(thermal_a, thermal_b)
    assert (np.abs(rgb_a.astype(int) - rgb_b.astype(int)).max(axis=-1) > 40).sum() > 20  # pixels


def test_every_pair_of_labels_is_separable_by_one_modality(params):
    rendered = {label: render_pair(label, params, 64) for label in FER_LABELS}
    for i, a in enumerate(FER_LABELS):
        for b in FER_LABELS[i + 1 :]:
            rgb_differs = not np.array_equal(rendered[a][0], rendered[b][0])
            thermal_differs = not np.array_equal(rendered[a][1], rendered[b][1])
            assert rgb_differs or thermal_differs, (a, b)


def test_fear_cools_the_nose_that_surprise_warms(params):
    fear, surprise = (render_pair(label, params, 64)[1] for label in ("fear", "surprised"))
    # The nose tip is where the two differ most, and fear is the colder there.
    row, col = np.unravel_index(np.argmax(np.abs(fear - surprise)), fear.shape)
    assert fear[row, col] < surprise[row, col]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_samples=0), "num_samples"),
        (dict(num_samples=4, num_subjects=5), "num_subjects"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthesize_dataset(tmp_path / "out", progress=False, **kwargs)


def test_refuses_to_write_into_a_folder_with_files(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="empty or absent"):
        synthesize_dataset(tmp_path, num_samples=2, progress=False)


def test_generation_writes_aside_and_renames_when_complete(tmp_path):
    stale = tmp_path / "data.partial"  # what an interrupted generation leaves behind
    stale.mkdir()
    (stale / "half-written.png").write_bytes(b"")
    folder = synthesize_dataset(tmp_path / "data", num_samples=7, image_size=32, progress=False)
    assert folder == tmp_path / "data" and (folder / "manifest.csv").is_file()
    assert not stale.exists() and not (folder / "half-written.png").exists()


def test_images_are_those_of_earlier_versions(tmp_path):
    # The demo's results and the README's fusion matrix were measured on these exact files: the evidence masks
    # (and any later change to the generator) must not alter a single byte of them.
    folder = synthesize_dataset(tmp_path / "data", num_samples=21, seed=5, image_size=48, progress=False)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".jpg", ".png") and path.relative_to(folder).parts[0] in ("rgb", "thermal"):
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    assert digest.hexdigest() == "b18a8e922a18f664f2ed9a50b6b14a1bfb699a7d10f1195848ace6b72e44cc62"


def test_evidence_masks_are_written_beside_each_pair(synthetic_dataset_dir):
    with open(synthetic_dataset_dir / "manifest.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        rgb_mask, thermal_mask = (np.asarray(Image.open(synthetic_dataset_dir / row[f"{m}_mask"])) for m in ("rgb", "thermal"))
        assert rgb_mask.shape == thermal_mask.shape == (32, 32) and set(np.unique(rgb_mask)) <= {0, 255}
        assert rgb_mask.any()
        assert thermal_mask.any() == (row["label"] not in ("happy", "neutral", "sad")), row


@pytest.mark.parametrize("label", ["angry", "disgust", "fear", "surprised"])
def test_thermal_mask_is_where_the_label_changes_the_temperature(params, label):
    thermal, neutral = (render_pair(name, params, 96)[1] for name in (label, "neutral"))
    change = np.abs(thermal - neutral)
    _, mask = evidence_masks(label, params, 96)
    assert change[mask].mean() > 5 * change[~mask].mean()
    assert change[mask].min() > 0.3  # degrees Celsius: every masked pixel changed markedly


@pytest.mark.parametrize("label", ["angry", "fear", "happy", "sad"])
def test_rgb_mask_covers_what_the_expression_changes(params, label):
    rgb, neutral = (render_pair(name, params, 96)[0].astype(int) for name in (label, "neutral"))
    changed = np.abs(rgb - neutral).max(axis=-1) > 40
    union = evidence_masks(label, params, 96)[0] | evidence_masks("neutral", params, 96)[0]
    # The 2x2 lens blur spreads each edge by a pixel: count a changed pixel as covered within one pixel of the mask.
    grown = union.copy()
    grown[1:] |= union[:-1]
    grown[:, 1:] |= grown[:, :-1]
    assert changed[grown].sum() >= 0.95 * changed.sum()
