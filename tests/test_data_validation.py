"""Bad data caught when it is loaded, as users hit it: values the model would misread (NaN/inf temperatures, a
transparent thermal PNG, an empty array, a 16-bit PNG given as the RGB image) named with their file and manifest row,
or skipped and counted by reason; manifests with a byte-order mark, repeated rows, a file in two splits, a number where
a path belongs; classes missing from a split."""

import json
import logging
import shutil

import numpy as np
import pytest
from PIL import Image
from train_script import user_error

from vit_fer.cli import main as vit_fer
from vit_fer.data import BadDataError, load_fer_dataset


@pytest.fixture
def dataset(synthetic_dataset_dir, tmp_path):
    """A copy of the synthetic benchmark (42 pairs, manifest.csv), to spoil."""
    return shutil.copytree(synthetic_dataset_dir, tmp_path / "data")


def manifest_rows(folder):
    lines = (folder / "manifest.csv").read_text().splitlines()
    return lines[0], lines[1:]


def spoil(folder, case: str) -> tuple[str, str]:
    """Replaces one sample's file as `case` says, the way the file reaches a user; returns (its path in the
    manifest, the manifest row as the error names it)."""
    header, rows = manifest_rows(folder)
    columns = header.split(",")
    row = rows[3].split(",")
    rgb, thermal = row[columns.index("rgb")], row[columns.index("thermal")]
    if case in ("nan", "inf", "empty"):
        frame = np.full((32, 32), 31.5, dtype=np.float32)
        if case == "nan":
            frame[5, 7] = np.nan
        elif case == "inf":
            frame[0, 0] = np.inf
        else:
            frame = np.zeros((0, 0), dtype=np.float32)
        target = thermal.rsplit(".", 1)[0] + ".npy"
        np.save(folder / target, frame)
        row[columns.index("thermal")] = target
    elif case == "transparent":
        target = thermal
        rgba = Image.new("RGBA", (32, 32), (120, 120, 120, 255))
        rgba.putpixel((3, 3), (120, 120, 120, 0))
        rgba.save(folder / target)
    elif case == "16-bit rgb":
        target = rgb.rsplit(".", 1)[0] + ".png"
        shutil.copy(folder / thermal, folder / target)  # a thermal frame saved as the RGB image
        row[columns.index("rgb")] = target
    rows[3] = ",".join(row)
    (folder / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")
    return target, "manifest.csv row 5"


CASES = {
    "nan": "not finite",
    "inf": "not finite",
    "empty": "empty",
    "transparent": "transparency",
    "16-bit rgb": "wrong bit depth",
}


@pytest.mark.parametrize("case", CASES)
def test_a_sample_the_model_would_misread_is_named_at_load_time(dataset, case, caplog):
    target, row = spoil(dataset, case)
    with pytest.raises(BadDataError) as raised:
        load_fer_dataset(dataset)
    message = str(raised.value)
    assert f"1 {CASES[case]}" in message.splitlines()[0]
    assert f"{row}: {dataset / target}" in message

    with caplog.at_level(logging.WARNING, logger="vit_fer.data.files"):
        loaded = load_fer_dataset(dataset, skip_bad_samples=True)
    assert sum(len(split) for split in loaded.values()) == 41
    assert f"1 bad samples in {dataset} (1 {CASES[case]})" in caplog.text


def test_skipping_counts_every_bad_sample_by_reason(dataset, caplog):
    for offset, case in enumerate(("nan", "transparent", "16-bit rgb")):
        header, rows = manifest_rows(dataset)
        rows = rows[offset:] + rows[:offset]  # each case spoils a different sample
        (dataset / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")
        spoil(dataset, case)
    with caplog.at_level(logging.WARNING, logger="vit_fer.data.files"):
        loaded = load_fer_dataset(dataset, skip_bad_samples=True)
    assert sum(len(split) for split in loaded.values()) == 39
    for reason in ("1 not finite", "1 transparency", "1 wrong bit depth"):
        assert reason in caplog.text


def test_train_py_stops_on_bad_data_before_training_naming_the_file(dataset, tmp_path, capsys):
    target, row = spoil(dataset, "nan")
    message = user_error(capsys, ["--dataset_dir", str(dataset), "--output_dir", str(tmp_path / "run"),
                                  "--image_size", "32", "--patch_size", "8", "--hidden_size", "32",
                                  "--num_hidden_layers", "1", "--num_attention_heads", "4",
                                  "--intermediate_size", "64", "--mode", "thermal"])  # fmt: skip
    assert f"{row}: {dataset / target}: 1 values are NaN or infinite" in message
    assert not any((tmp_path / "run").glob("checkpoint-*"))


def test_predict_refuses_a_16_bit_png_given_as_the_rgb_image(dataset, saved_fer_model, capsys):
    target, _ = spoil(dataset, "16-bit rgb")
    _, rows = manifest_rows(dataset)
    thermal = rows[3].split(",")[1]
    status = vit_fer(["predict", "--model", str(saved_fer_model("late-attention")), "--rgb", str(dataset / target),
                      "--thermal", str(dataset / thermal)])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 2 and "score" not in captured.out
    assert (f"vit-fer predict: error: {dataset / target}: expected an RGB photo (8-bit), got a I;16 single-channel "
            "frame" in captured.err)


def test_a_csv_manifest_with_a_byte_order_mark_keeps_its_first_column(dataset):
    text = (dataset / "manifest.csv").read_text()
    assert text.startswith("rgb,")
    (dataset / "manifest.csv").write_bytes(text.encode("utf-8-sig"))  # Excel's "CSV UTF-8"
    loaded = load_fer_dataset(dataset)
    assert {"rgb", "thermal"} <= set(loaded["train"].column_names)


def test_repeated_rows_are_refused_or_dropped_with_a_count(dataset, caplog):
    header, rows = manifest_rows(dataset)
    (dataset / "manifest.csv").write_text("\n".join([header, *rows, *rows[:5]]) + "\n")
    with pytest.raises(BadDataError, match=r"5 samples repeat a file of an earlier sample \(0 of them given another "
                                           r"split\), e.g. manifest.csv row 44 repeats manifest.csv row 2"):
        load_fer_dataset(dataset)
    with caplog.at_level(logging.WARNING, logger="vit_fer.data.checks"):
        loaded = load_fer_dataset(dataset, drop_duplicates=True)
    assert "Dropped 5 samples repeat a file" in caplog.text
    assert sum(len(split) for split in loaded.values()) == 42
    files = [path for split in loaded.values() for path in split["rgb"]]
    assert len(files) == len(set(files))


def test_the_same_file_in_two_splits_is_refused(dataset):
    header, rows = manifest_rows(dataset)
    header += ",split"
    rows = [row + ("," + ("test" if index % 5 == 0 else "train")) for index, row in enumerate(rows)]
    rows.append(rows[0].rsplit(",", 1)[0] + ",train")  # a test sample also listed for training
    (dataset / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(BadDataError, match=r"1 samples repeat a file of an earlier sample \(1 of them given another "
                                           r"split\), e.g. manifest.csv row 44 repeats manifest.csv row 2"):
        load_fer_dataset(dataset)


def test_a_number_where_a_path_belongs_is_refused_naming_the_row(dataset):
    header, rows = manifest_rows(dataset)
    columns = header.split(",")
    lines = []
    for index, row in enumerate(rows):
        record = dict(zip(columns, row.split(","), strict=True))
        if index == 2:
            record["rgb"] = 17
        lines.append(json.dumps(record))
    (dataset / "manifest.csv").unlink()
    (dataset / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadDataError, match=r"manifest.jsonl row 3: rgb is 17, not a file path"):
        load_fer_dataset(dataset)


def test_classes_missing_from_a_split_are_reported(dataset, caplog):
    header, rows = manifest_rows(dataset)
    header += ",split"
    columns = header.split(",")
    marked = []
    for index, row in enumerate(rows):
        label = row.split(",")[columns.index("label")]
        split = "test" if index % 3 == 0 and label != "fear" else "train"
        marked.append(f"{row},{split}")
    (dataset / "manifest.csv").write_text("\n".join([header, *marked]) + "\n")
    with caplog.at_level(logging.WARNING, logger="vit_fer.data.loading"):
        # An image-level split, asked for explicitly: the given split puts subjects in train and test.
        load_fer_dataset(dataset, validation_size=0.0, split_by_subject=False)
    assert "The test split has no samples of ['fear']" in caplog.text
