"""Streaming (`load_fer_dataset(..., streaming=True)`, train.py --streaming): the same samples and subject-disjoint
splits as the map-style loader for a folder, a manifest and a `datasets` dataset; a shuffle buffer that reorders and
keeps every sample; bad files named when they are read; disjoint shards for several processes; training by
--max_steps to a loadable model."""

import logging
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from datasets.distributed import split_dataset_by_node
from train_script import train, user_error
from transformers import AutoModelForImageClassification

from vit_fer.data import BadDataError, load_fer_dataset
from vit_fer.image_processing_vit_fer import ViTFERImageProcessor
from vit_fer.thermal import load_rgb_file, load_thermal_file
from vit_fer.transforms import FERDataCollator, with_fer_transforms

TINY = [
    "--image_size", "32", "--patch_size", "8", "--hidden_size", "32", "--num_hidden_layers", "2",
    "--num_attention_heads", "4", "--intermediate_size", "64", "--per_device_train_batch_size", "8",
    "--disable_tqdm", "true",
]  # fmt: skip


def image_key(value) -> bytes | str:
    """A file path as it is, a decoded image by its pixels."""
    return value if isinstance(value, str) else np.asarray(value).tobytes()


def samples(split) -> list[tuple]:
    return [(image_key(row["rgb"]), image_key(row["thermal"]), row["label"], row.get("subject")) for row in split]


def embedded_dataset(folder) -> datasets.Dataset:
    """The synthetic benchmark as a `datasets` dataset with the image bytes inside, as `save_to_disk` keeps them."""
    rows = [line.split(",") for line in (folder / "manifest.csv").read_text().splitlines()]
    columns = dict(zip(rows[0], zip(*rows[1:], strict=True), strict=False))
    features = datasets.Features(
        {"rgb": datasets.Image(), "thermal": datasets.Image(), "label": datasets.Value("string"),
         "subject": datasets.Value("string")}  # fmt: skip
    )
    return datasets.Dataset.from_dict(
        {
            **{m: [{"bytes": (folder / p).read_bytes(), "path": None} for p in columns[m]] for m in ("rgb", "thermal")},
            "label": list(columns["label"]),
            "subject": list(columns["subject"]),
        },
        features=features,
    )


@pytest.mark.parametrize("source", ["folder", "manifest", "dataset"])
def test_streamed_splits_hold_the_map_style_samples_and_keep_subjects_apart(synthetic_dataset_dir, source):
    data = {
        "folder": synthetic_dataset_dir,
        "manifest": synthetic_dataset_dir / "manifest.csv",
        "dataset": embedded_dataset(synthetic_dataset_dir),
    }[source]
    layout = "folder" if source == "folder" else "auto"
    # The folder layout has no subject ids: its split is stratified by label, the others' by subject.
    mapped = load_fer_dataset(data, layout=layout, validation_size=0.2, test_size=0.2)
    streamed = load_fer_dataset(data, layout=layout, validation_size=0.2, test_size=0.2, streaming=True)
    assert isinstance(streamed, datasets.IterableDatasetDict) and list(streamed) == list(mapped)
    for split in mapped:
        assert isinstance(streamed[split], datasets.IterableDataset)
        assert sorted(samples(streamed[split])) == sorted(samples(mapped[split])), split
    if source != "folder":
        subjects = {split: {row["subject"] for row in streamed[split]} for split in streamed}
        assert len(subjects) == 3 and not subjects["train"] & (subjects["validation"] | subjects["test"])
        assert not subjects["validation"] & subjects["test"]


def test_shuffle_buffer_and_epochs_reorder_the_train_split_and_keep_every_sample(
    synthetic_dataset_dir, tiny_image_processor
):
    def order(buffer_size: int, epoch: int = 0) -> list[str]:
        train_split = load_fer_dataset(synthetic_dataset_dir, streaming=True, shuffle_buffer_size=buffer_size)["train"]
        train_split.set_epoch(epoch)
        return [row["rgb"] for row in train_split]

    unbuffered, buffered = order(1), order(16)
    assert buffered == order(16)  # the seed makes it reproducible
    assert buffered != unbuffered and sorted(buffered) == sorted(unbuffered)
    next_epoch = order(16, epoch=1)
    assert next_epoch != buffered and sorted(next_epoch) == sorted(buffered)
    # The Trainer calls set_epoch on the transformed split it is given: the reshuffle reaches through the transforms.
    prepared = with_fer_transforms(
        load_fer_dataset(synthetic_dataset_dir, streaming=True, shuffle_buffer_size=16), tiny_image_processor
    )["train"]
    epochs = []
    for epoch in (0, 1):
        prepared.set_epoch(epoch)
        epochs.append([int(row["labels"]) for row in prepared])
    assert epochs[0] != epochs[1] and sorted(epochs[0]) == sorted(epochs[1])
    # The listing is shuffled before the buffer: a folder lists one class after another.
    labels = [path.split("/")[-2] for path in unbuffered]
    assert labels != sorted(labels)


def test_a_bad_file_is_named_when_streamed_or_skipped_and_counted(synthetic_dataset_dir, tmp_path, caplog):
    folder = shutil.copytree(synthetic_dataset_dir, tmp_path / "data")
    victim = sorted((folder / "thermal").rglob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:60])  # truncated, as an interrupted copy leaves it
    loaded = load_fer_dataset(folder, validation_size=0, test_size=0, streaming=True)  # the listing is fine
    with pytest.raises(BadDataError, match=str(victim)):
        list(loaded["train"])
    skipping = load_fer_dataset(folder, validation_size=0, test_size=0, streaming=True, skip_bad_samples=True)
    with caplog.at_level(logging.WARNING, logger="vit_fer.data.files"):
        rows = list(skipping["train"])
    assert len(rows) == 41 and str(victim) not in {row["thermal"] for row in rows}
    assert "1 bad samples" in caplog.text and str(victim) in caplog.text


def test_processes_read_disjoint_parts_of_the_streamed_train_split(synthetic_dataset_dir, tiny_image_processor):
    # accelerate hands each process `IterableDataset.shard(num_processes, rank)` when it does not dispatch batches
    # from rank 0; `split_dataset_by_node` is the same split for a hand-written loop.
    splits = load_fer_dataset(synthetic_dataset_dir, validation_size=0, test_size=0, streaming=True)
    prepared = with_fer_transforms(splits, tiny_image_processor)["train"]
    everything = [row["rgb"] for row in splits["train"]]
    for split_for in (lambda rank: splits["train"].shard(2, rank),
                      lambda rank: split_dataset_by_node(splits["train"], rank, 2)):  # fmt: skip
        parts = [[row["rgb"] for row in split_for(rank)] for rank in (0, 1)]
        assert not set(parts[0]) & set(parts[1]) and sorted(parts[0] + parts[1]) == sorted(everything)
    batch = FERDataCollator()(list(prepared.shard(2, 1).take(4)))
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["labels"].dtype == torch.long


def test_train_streaming_by_max_steps_saves_a_loadable_model(synthetic_dataset_dir, tmp_path):
    output_dir = tmp_path / "run"
    train.main([
        *TINY, "--per_device_eval_batch_size", "16", "--dataset_dir", str(synthetic_dataset_dir),
        "--output_dir", str(output_dir), "--mode", "combined", "--streaming", "--shuffle_buffer_size", "8",
        "--max_steps", "5", "--eval_strategy", "steps", "--eval_steps", "5", "--save_strategy", "steps",
        "--save_steps", "5", "--remove_unused_columns", "true",
    ])  # fmt: skip
    assert (output_dir / "checkpoint-5").is_dir() and not (output_dir / "checkpoint-6").exists()
    model = AutoModelForImageClassification.from_pretrained(output_dir, trust_remote_code=True).eval()
    processor = ViTFERImageProcessor.from_pretrained(output_dir)
    rgb = sorted((synthetic_dataset_dir / "rgb").rglob("*.jpg"))[0]
    thermal = synthetic_dataset_dir / "thermal" / rgb.parent.name / (rgb.stem + ".png")
    with torch.no_grad():
        inputs = processor(images=load_rgb_file(rgb), thermal_images=load_thermal_file(thermal), return_tensors="pt")
        logits = model(**inputs).logits
    assert logits.shape == (1, 7) and torch.isfinite(logits).all()


def test_train_streaming_names_a_bad_file_when_it_reads_it_exit_2(synthetic_dataset_dir, tmp_path, capsys):
    folder = shutil.copytree(synthetic_dataset_dir, tmp_path / "data")
    victim = Path(next(iter(load_fer_dataset(folder, streaming=True)["train"]))["thermal"])
    victim.write_bytes(victim.read_bytes()[:60])
    error = user_error(capsys, [
        *TINY, "--dataset_dir", str(folder), "--output_dir", str(tmp_path / "run"),
        "--mode", "combined", "--streaming", "--max_steps", "2",
    ])  # fmt: skip
    assert str(victim) in error and "--skip_bad_samples" in error


def test_streaming_without_max_steps_is_one_line_and_exit_2(synthetic_dataset_dir, tmp_path, capsys):
    error = user_error(capsys, ["--dataset_dir", str(synthetic_dataset_dir), "--output_dir", str(tmp_path / "run"),
                                "--streaming"])  # fmt: skip
    assert error.strip().count("\n") == 0 and "--max_steps" in error
    assert not (tmp_path / "run").exists()
