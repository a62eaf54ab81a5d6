"""load_fer_dataset on small folders written here (every layout), its splits and bad-data checks, and the lazy
transforms and collator that feed the Trainer."""

import csv
import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from vit_fer.configuration_vit_fer import FER_LABELS
from vit_fer.data import BadDataError, canonical_label, load_fer_dataset, split_indices
from vit_fer.image_processing_vit_fer import ViTFERImageProcessor
from vit_fer.thermal import load_rgb_file, load_thermal_file
from vit_fer.transforms import (
    AugmentationConfig,
    FERDataCollator,
    FERTransform,
    PairedAugmentation,
    input_names_for_config,
    with_fer_transforms,
)


SIZE = (16, 12)  # width, height


def write_rgb(path: Path, value: int = 128, size=SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 60)).save(path)
    return path


def write_thermal(path: Path, celsius: float = 34.0, size=SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = np.full((size[1], size[0]), round((celsius + 273.15) * 100), dtype=np.uint16)
    Image.fromarray(counts).save(path)
    return path


def write_folder_layout(root: Path, per_label: int = 4, labels=FER_LABELS) -> Path:
    for label in labels:
        for index in range(per_label):
            write_rgb(root / "rgb" / label / f"{label}_{index}.jpg", value=20 * index)
            write_thermal(root / "thermal" / label / f"{label}_{index}.png", celsius=30 + index)
    return root


def write_manifest(root: Path, rows: list[dict], name: str = "manifest.csv") -> Path:
    path = root / name
    if name.endswith(".csv"):
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def subject_rows(root: Path, num_subjects: int = 10, per_subject: int = 7) -> list[dict]:
    rows = []
    for subject in range(num_subjects):
        for index in range(per_subject):
            label = FER_LABELS[index % len(FER_LABELS)]
            name = f"p{subject}_{index}"
            write_rgb(root / "images" / f"{name}.jpg")
            write_thermal(root / "images" / f"{name}_ir.png")
            rows.append(
                {
                    "rgb": f"images/{name}.jpg",
                    "thermal": f"images/{name}_ir.png",
                    "label": label,
                    "subject": f"p{subject}",
                }
            )
    return rows


def labels_of(split: datasets.Dataset) -> list[str]:
    return [FER_LABELS[index] for index in split["label"][:]]


# Layouts


def test_folder_layout_pairs_files_by_label_and_name(tmp_path):
    root = write_folder_layout(tmp_path / "data")
    # A label folder spelt differently in one modality still pairs: both mean "surprised".
    write_rgb(root / "rgb" / "Surprise" / "extra.jpg")
    write_thermal(root / "thermal" / "surprised" / "extra.png")
    dataset = load_fer_dataset(root, validation_size=0.25, test_size=0.25)

    assert list(dataset) == ["train", "validation", "test"]
    rows = [row for split in dataset.values() for row in split]
    assert len(rows) == 7 * 4 + 1
    assert dataset["train"].features["label"].names == list(FER_LABELS)
    for row in rows:
        rgb, thermal = Path(row["rgb"]), Path(row["thermal"])
        assert rgb.stem == thermal.stem
        assert canonical_label(rgb.parent.name) == canonical_label(thermal.parent.name) == FER_LABELS[row["label"]]
    assert "subject" not in dataset["train"].column_names


def test_folder_layout_with_split_folders(tmp_path):
    write_folder_layout(tmp_path / "data" / "train", per_label=4)
    write_folder_layout(tmp_path / "data" / "Test", per_label=1)
    dataset = load_fer_dataset(tmp_path / "data", validation_size=0.25)
    assert all("/Test/" in path for path in dataset["test"]["rgb"])
    assert len(dataset["test"]) == 7
    # Validation is carved out of the given train folder, stratified: one of each label.
    assert all("/train/" in path for path in dataset["validation"]["rgb"][:] + dataset["train"]["rgb"][:])
    assert sorted(labels_of(dataset["validation"])) == sorted(FER_LABELS)


def test_csv_manifest_with_subjects_and_splits(tmp_path):
    rows = subject_rows(tmp_path, num_subjects=4, per_subject=7)
    for row in rows:
        row["split"] = {"p0": "val", "p1": "test"}.get(row["subject"], "train")
    write_manifest(tmp_path, rows)
    dataset = load_fer_dataset(tmp_path)  # a folder holding manifest.csv
    assert set(dataset["validation"]["subject"]) == {"p0"}
    assert set(dataset["test"]["subject"]) == {"p1"}
    assert set(dataset["train"]["subject"]) == {"p2", "p3"}
    assert dataset["train"][0]["rgb"] == str(tmp_path / "images" / "p2_0.jpg")


def test_jsonl_manifest_with_custom_columns(tmp_path):
    rows = [
        {"visible": row["rgb"], "ir": row["thermal"], "emotion": row["label"].upper(), "person": row["subject"]}
        for row in subject_rows(tmp_path, num_subjects=5)
    ]
    manifest = write_manifest(tmp_path, rows, name="list.jsonl")
    dataset = load_fer_dataset(
        manifest, rgb_column="visible", thermal_column="ir", label_column="emotion", subject_column="person"
    )
    assert sum(len(split) for split in dataset.values()) == len(rows)
    assert set(dataset["train"].column_names) == {"rgb", "thermal", "label", "subject"}


def test_datasets_dataset_with_image_columns(tmp_path, tiny_image_processor):
    root = write_folder_layout(tmp_path / "data", per_label=2)
    from_files = load_fer_dataset(root, validation_size=0.0, test_size=0.0)["train"]
    source = datasets.Dataset.from_dict(
        {
            "visible": from_files["rgb"][:],
            "ir": from_files["thermal"][:],
            "emotion": [name.upper() for name in labels_of(from_files)],
        }
    )
    source = source.cast_column("visible", datasets.Image()).cast_column("ir", datasets.Image())
    dataset = load_fer_dataset(
        source, rgb_column="visible", thermal_column="ir", label_column="emotion", validation_size=0, test_size=0
    )["train"]
    assert isinstance(dataset.features["thermal"], datasets.Image)
    assert dataset[0]["thermal"].mode == "I;16"  # the radiometric counts survive
    assert labels_of(dataset) == labels_of(from_files)
    transform = FERTransform(tiny_image_processor)
    expected = transform(from_files[:3])
    actual = transform(dataset[:3])
    for key in ("pixel_values", "thermal_pixel_values"):
        torch.testing.assert_close(torch.stack(actual[key]), torch.stack(expected[key]))


def test_dataset_integer_labels_need_names(tmp_path):
    root = write_folder_layout(tmp_path / "data", per_label=1)
    rows = load_fer_dataset(root, validation_size=0, test_size=0)["train"]
    plain = datasets.Dataset.from_dict(
        {"rgb": rows["rgb"][:], "thermal": rows["thermal"][:], "label": rows["label"][:]}
    )
    with pytest.raises(ValueError, match="label_names"):
        load_fer_dataset(plain)
    named = load_fer_dataset(plain, label_names=FER_LABELS, validation_size=0, test_size=0)["train"]
    assert named["label"][:] == rows["label"][:]


def test_dataset_dict_splits_are_kept(tmp_path):
    root = write_folder_layout(tmp_path / "data", per_label=4)
    rows = load_fer_dataset(root, validation_size=0, test_size=0)["train"]
    given = datasets.DatasetDict({"train": rows.select(range(20)), "testing": rows.select(range(20, 28))})
    dataset = load_fer_dataset(given, validation_size=0.1)
    assert dataset["test"]["rgb"][:] == rows["rgb"][20:28]
    assert len(dataset["validation"]) + len(dataset["train"]) == 20 and len(dataset["validation"]) > 0


def test_manifest_integer_labels_need_names(tmp_path):
    rows = subject_rows(tmp_path, num_subjects=2)
    for row in rows:
        row["label"] = FER_LABELS.index(row["label"])
    write_manifest(tmp_path, rows)
    with pytest.raises(ValueError, match="label_names"):
        load_fer_dataset(tmp_path)
    dataset = load_fer_dataset(tmp_path, label_names=FER_LABELS, validation_size=0, test_size=0)["train"]
    assert dataset["label"][:] == [row["label"] for row in rows]


def write_ktfe(root: Path, per_label: int = 4) -> None:
    for label in FER_LABELS:
        emotion = {"surprised": "Surprise", "angry": "Anger"}.get(label, label.capitalize())
        for index in range(per_label):
            name = f"{emotion}_{label}{index}_KTFE"
            write_rgb(root / "RGB" / f"R_{name}.jpg")
            write_thermal(root / "Thermal" / f"T_{name}.png")
            write_rgb(root / "RgbAug" / f"aug_R_{name}.jpg")
            write_thermal(root / "ThermalAug" / f"aug_T_{name}.png")


def test_ktfe_layout_keeps_augmented_copies_out_of_evaluation(tmp_path, caplog):
    write_ktfe(tmp_path, per_label=4)
    with caplog.at_level(logging.WARNING):
        dataset = load_fer_dataset(tmp_path, validation_size=0.25, test_size=0.25)
    held_out = [path for split in ("validation", "test") for path in dataset[split]["rgb"][:]]
    assert held_out and not any("/RgbAug/" in path for path in held_out)
    train = dataset["train"]["rgb"][:]
    originals = {Path(path).name for path in train if "/RgbAug/" not in path}
    copies = [Path(path).name for path in train if "/RgbAug/" in path]
    # Every copy in train has its original in train; the copies of held-out originals are gone, and counted.
    assert copies and {name.removeprefix("aug_") for name in copies} == originals
    assert f"Left out {len(held_out)} augmented copies" in caplog.text
    assert labels_of(dataset["test"]).count("surprised") == 1  # "Surprise" in file names


def test_single_modality_data(tmp_path):
    root = tmp_path / "data"
    for label in FER_LABELS:
        for index in range(3):
            write_rgb(root / "rgb" / label / f"{index}.jpg")
    dataset = load_fer_dataset(root, validation_size=0, test_size=0)
    assert dataset["train"].column_names == ["rgb", "label"]

    rows = [{"thermal": row["thermal"], "label": row["label"]} for row in subject_rows(tmp_path, num_subjects=2)]
    thermal_only = load_fer_dataset(write_manifest(tmp_path, rows), validation_size=0, test_size=0)
    assert thermal_only["train"].column_names == ["thermal", "label"]


def test_modalities_argument_loads_one_side_of_paired_data(tmp_path):
    root = write_folder_layout(tmp_path / "data", per_label=2)
    write_thermal(root / "thermal" / "happy" / "no_rgb_partner.png")
    dataset = load_fer_dataset(root, modalities=["rgb"], validation_size=0, test_size=0)
    assert dataset["train"].column_names == ["rgb", "label"]
    with pytest.raises(ValueError, match="non-empty subset"):
        load_fer_dataset(root, modalities=["rgb", "depth"])
    rgb_only = tmp_path / "rgb_only"
    write_rgb(rgb_only / "rgb" / "sad" / "a.jpg")
    with pytest.raises(ValueError, match=r"asks for \['thermal'\]"):
        load_fer_dataset(rgb_only, modalities=["thermal"])


# Splits


def test_subject_wise_split_has_no_overlap(tmp_path):
    write_manifest(tmp_path, subject_rows(tmp_path, num_subjects=10))
    dataset = load_fer_dataset(tmp_path, validation_size=0.2, test_size=0.2, seed=3)
    subjects = {split: set(part["subject"]) for split, part in dataset.items()}
    assert subjects["train"].isdisjoint(subjects["validation"])
    assert subjects["train"].isdisjoint(subjects["test"])
    assert subjects["validation"].isdisjoint(subjects["test"])
    assert sum(len(s) for s in subjects.values()) == 10
    assert len(dataset["test"]) == len(dataset["validation"]) == 14  # 2 whole subjects of 7 samples each


def test_subject_split_is_seeded():
    labels = [i % 7 for i in range(140)]
    groups = [f"s{i // 7}" for i in range(140)]
    first = split_indices(labels, groups=groups, seed=1)
    again = split_indices(labels, groups=groups, seed=1)
    other = split_indices(labels, groups=groups, seed=2)
    assert all(np.array_equal(first[s], again[s]) for s in first)
    assert not np.array_equal(first["test"], other["test"])


def test_stratified_split_without_subjects():
    labels = [label for label in range(7) for _ in range(20)]
    splits = split_indices(labels, validation_size=0.1, test_size=0.2, seed=0)
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(140))
    for split, share in (("validation", 2), ("test", 4), ("train", 14)):
        counts = np.bincount(np.asarray(labels)[splits[split]], minlength=7)
        assert counts.tolist() == [share] * 7


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(validation_size=0.5, test_size=0.5), "below 1"),
        (dict(test_size=1.2), r"\[0, 1\)"),
        (dict(groups=["a", "b"] * 3), "needs as many subjects"),
    ],
)
def test_split_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_indices([0, 1] * 3, **kwargs)


# Bad data


def bad_case(root: Path, case: str) -> str:
    """Writes one bad sample into a good folder layout; returns a file name the error must list."""
    write_folder_layout(root, per_label=2)
    if case == "unpaired":
        write_rgb(root / "rgb" / "happy" / "lonely.jpg")
        return "lonely.jpg"
    if case == "unreadable":
        write_rgb(root / "rgb" / "sad" / "broken.jpg")
        (root / "rgb" / "sad" / "broken.jpg").write_bytes(b"not an image")
        write_thermal(root / "thermal" / "sad" / "broken.png")
        return "broken.jpg"
    if case == "truncated":
        noise = np.random.default_rng(0).integers(0, 2**16, (64, 64), dtype=np.uint16)
        path = root / "thermal" / "fear" / "cut.png"
        Image.fromarray(noise).save(path)
        path.write_bytes(path.read_bytes()[:3000])
        write_rgb(root / "rgb" / "fear" / "cut.jpg", size=(64, 64))
        return "cut.png"
    if case == "unknown label":
        write_rgb(root / "rgb" / "contempt" / "c.jpg")
        write_thermal(root / "thermal" / "contempt" / "c.png")
        return "'contempt'"
    if case == "size mismatch":
        write_rgb(root / "rgb" / "angry" / "odd.jpg", size=(20, 20))
        write_thermal(root / "thermal" / "angry" / "odd.png", size=(10, 10))
        return "odd.png is 10x10"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, problem",
    [
        ("unpaired", "unpaired"),
        ("unreadable", "unreadable"),
        ("truncated", "unreadable"),
        ("unknown label", "unknown label"),
        ("size mismatch", "size mismatch"),
    ],
)
def test_bad_data_is_listed_or_skipped_with_a_count(tmp_path, case, problem, caplog):
    listed = bad_case(tmp_path, case)
    with pytest.raises(BadDataError, match=f"1 bad samples .*1 {problem}") as error:
        load_fer_dataset(tmp_path)
    assert listed in str(error.value)
    with caplog.at_level(logging.WARNING):
        dataset = load_fer_dataset(tmp_path, skip_bad_samples=True)
    assert f"1 bad samples in {tmp_path} (1 {problem})" in caplog.text
    assert sum(len(split) for split in dataset.values()) == 7 * 2


def test_many_bad_samples_are_summarised(tmp_path):
    write_folder_layout(tmp_path, per_label=1)
    for index in range(15):
        write_rgb(tmp_path / "rgb" / "neutral" / f"orphan{index:02d}.jpg")
    with pytest.raises(BadDataError, match="15 bad samples") as error:
        load_fer_dataset(tmp_path)
    assert "orphan09.jpg" in str(error.value) and "orphan10.jpg" not in str(error.value)
    assert "and 5 more" in str(error.value)


def test_manifest_rows_without_a_pair_or_file(tmp_path):
    rows = subject_rows(tmp_path, num_subjects=3)
    rows[0]["thermal"] = ""
    rows[1]["rgb"] = "images/missing.jpg"
    write_manifest(tmp_path, rows)
    with pytest.raises(BadDataError, match="1 unpaired, 1 missing file|1 missing file, 1 unpaired") as error:
        load_fer_dataset(tmp_path)
    assert "row 2 has no thermal path" in str(error.value) and "missing.jpg does not exist" in str(error.value)


def test_unknown_layout_is_explained(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(ValueError, match="Cannot tell the layout"):
        load_fer_dataset(tmp_path)


# Transforms and collator


def registration_pair(root: Path, size: int = 48) -> tuple[Path, Path]:
    """An RGB image and a 16-bit thermal frame of the same off-centre square: bright in RGB, hot in thermal."""
    mask = np.zeros((size, size), dtype=bool)
    mask[8:26, 14:40] = True
    rgb = np.where(mask[..., None], 255, 0).astype(np.uint8).repeat(3, axis=-1)
    Image.fromarray(rgb).save(root / "square.png")
    counts = np.where(mask, round((40 + 273.15) * 100), round((20 + 273.15) * 100)).astype(np.uint16)
    Image.fromarray(counts).save(root / "square_ir.png")
    return root / "square.png", root / "square_ir.png"


def test_paired_augmentation_keeps_the_pair_registered(tmp_path):
    rgb_path, thermal_path = registration_pair(tmp_path)
    processor = ViTFERImageProcessor(size=32, do_normalize=False)
    transform = FERTransform(processor, train=True, generator=torch.Generator().manual_seed(0))
    batch = {"rgb": [str(rgb_path)] * 16, "thermal": [str(thermal_path)] * 16, "label": [3] * 16}
    outputs = transform(batch)
    masks = []
    for rgb, thermal in zip(outputs["pixel_values"], outputs["thermal_pixel_values"], strict=True):
        # Each modality's own threshold, half-way up its range: photometric jitter differs per modality.
        rgb_mask = rgb.mean(0) > (rgb.mean(0).min() + rgb.mean(0).max()) / 2
        thermal_mask = thermal.mean(0) > (thermal.mean(0).min() + thermal.mean(0).max()) / 2
        assert (rgb_mask == thermal_mask).float().mean() > 0.99
        masks.append(rgb_mask)
    # The augmentation did move the square around (so the check above is not vacuous).
    assert len({tuple(mask.flatten().tolist()) for mask in masks}) > 8


def test_paired_augmentation_refuses_pairs_of_different_sizes():
    augmentation = PairedAugmentation((16, 16), AugmentationConfig())
    with pytest.raises(ValueError, match="one image size"):
        augmentation({"rgb": np.zeros((3, 20, 20), np.float32), "thermal": np.zeros((3, 10, 10), np.float32)})


def test_evaluation_transform_is_the_processor_and_deterministic(synthetic_dataset_dir, tiny_image_processor):
    dataset = with_fer_transforms(load_fer_dataset(synthetic_dataset_dir), tiny_image_processor)
    first, second = dataset["test"][0], dataset["test"][0]
    raw = load_fer_dataset(synthetic_dataset_dir)["test"][0]
    direct = tiny_image_processor(images=load_rgb_file(raw["rgb"]), thermal_images=load_thermal_file(raw["thermal"]))
    for key in ("pixel_values", "thermal_pixel_values"):
        torch.testing.assert_close(first[key], second[key], atol=0, rtol=0)
        torch.testing.assert_close(first[key], direct[key][0], atol=0, rtol=0)
    assert first["labels"] == raw["label"]
    train_a, train_b = dataset["train"][0], dataset["train"][0]
    assert not torch.equal(train_a["pixel_values"], train_b["pixel_values"])


def test_collator_batches_for_the_trainer(synthetic_dataset_dir, tiny_image_processor):
    dataset = with_fer_transforms(load_fer_dataset(synthetic_dataset_dir), tiny_image_processor)["train"]
    batch = FERDataCollator()([dataset[i] for i in range(4)])
    assert batch["pixel_values"].shape == batch["thermal_pixel_values"].shape == (4, 3, 32, 32)
    assert (
        batch["labels"].dtype == torch.long
        and batch["labels"].tolist() == load_fer_dataset(synthetic_dataset_dir)["train"]["label"][:4]
    )


def test_collator_refuses_batches_mixing_modalities():
    with_thermal = {"pixel_values": torch.zeros(3, 4, 4), "thermal_pixel_values": torch.zeros(3, 4, 4), "labels": 1}
    without = {"pixel_values": torch.zeros(3, 4, 4), "labels": 2}
    with pytest.raises(ValueError, match="mix samples with and without a modality"):
        FERDataCollator()([with_thermal, without])


def test_thermal_only_model_reads_thermal_as_pixel_values(synthetic_dataset_dir, tiny_image_processor):
    class ThermalConfig:
        modality = "thermal"

    names = input_names_for_config(ThermalConfig())
    assert names == {"thermal": "pixel_values"}
    dataset = with_fer_transforms(load_fer_dataset(synthetic_dataset_dir), tiny_image_processor, input_names=names)
    sample = dataset["test"][0]
    assert set(sample) == {"pixel_values", "labels"}
    raw = load_fer_dataset(synthetic_dataset_dir)["test"][0]
    expected = tiny_image_processor(thermal_images=load_thermal_file(raw["thermal"]))["thermal_pixel_values"][0]
    torch.testing.assert_close(sample["pixel_values"], expected)


def test_transform_on_columns_a_trainer_removed_says_what_to_do(synthetic_dataset_dir, tiny_image_processor):
    """Splits prepared by hand (not with `with_fer_transforms`) lose their image columns to a Trainer's
    remove_unused_columns=True; the transform's error says so and names both ways out."""
    raw = load_fer_dataset(synthetic_dataset_dir)["train"]
    pruned = raw.remove_columns([c for c in raw.column_names if c not in ("label",)])  # what the Trainer keeps
    with pytest.raises(ValueError, match="with_fer_transforms.*remove_unused_columns=False"):
        pruned.with_transform(FERTransform(tiny_image_processor))[0]
