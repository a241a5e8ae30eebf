"""A file column that holds a list of paths (JSON/JSONL metadata, DiffSynth-Studio's multi-image
edit datasets): every path is checked, loaded in order and fitted to its own size; bad lists fail
in one line naming the row and column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from diffsynth.config import TrainConfig
from diffsynth.data.check import check_dataset
from diffsynth.data.dataset import DatasetOptions, TrainingDataset, check_dataset_quickly
from diffsynth.errors import UserError

KEYS = dict(data_file_keys="image,edit_image", extra_inputs="edit_image")


def write(folder: Path, rows: list[dict], suffix: str = ".json") -> Path:
    sizes = {"target.png": (64, 64), "wide.png": (128, 32), "tall.png": (32, 96), "square.png": (48, 48)}
    for i, (name, size) in enumerate(sizes.items()):
        Image.new("RGB", size, (40 * i, 200 - 40 * i, 90)).save(folder / name)
    path = folder / f"metadata{suffix}"
    text = "\n".join(json.dumps(r) for r in rows) if suffix == ".jsonl" else json.dumps(rows)
    path.write_text(text)
    return path


def options(folder: Path, metadata: Path, **flags) -> DatasetOptions:
    config = TrainConfig(dataset_base_path=str(folder), dataset_metadata_path=str(metadata), **{**KEYS, **flags})
    return DatasetOptions.from_config(config, multiple=16)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_list_column_loads_every_image_in_order_at_its_own_size(tmp_path, suffix):
    rows = [
        {"image": "target.png", "edit_image": ["wide.png", "tall.png"], "prompt": "two references"},
        {"image": "target.png", "edit_image": "square.png", "prompt": "one image, not a list"},
    ]
    opts = options(tmp_path, write(tmp_path, rows, suffix), max_pixels=32 * 32)
    table = check_dataset_quickly(opts)
    ds = TrainingDataset(opts, table)
    first = ds[0].fields
    assert first["image"].size == (32, 32)  # 64x64 under 32*32 pixels
    refs = first["edit_image"]
    assert isinstance(refs, list) and [r.size for r in refs] == [(64, 16), (16, 48)]  # own aspect, multiple of 16
    assert refs[0].getpixel((0, 0)) == Image.open(tmp_path / "wide.png").getpixel((0, 0))  # order kept
    assert refs[1].getpixel((0, 0)) == Image.open(tmp_path / "tall.png").getpixel((0, 0))
    single = ds[1].fields["edit_image"]
    assert isinstance(single, Image.Image) and single.size == (32, 32)  # a plain path is aligned to the row, as before
    assert ds.training_size(0) == (32, 32)
    assert check_dataset(opts).ok


def test_fixed_size_crops_every_list_item_to_it(tmp_path):
    rows = [{"image": "target.png", "edit_image": ["wide.png", "tall.png"], "prompt": "p"}]
    ds = TrainingDataset(options(tmp_path, write(tmp_path, rows), height=32, width=48))
    assert [r.size for r in ds[0].fields["edit_image"]] == [(48, 32), (48, 32)]


def test_a_list_in_the_first_file_column_sizes_the_row_from_its_first_image(tmp_path):
    rows = [{"image": ["wide.png", "square.png"], "edit_image": "tall.png", "prompt": "p"}]
    ds = TrainingDataset(options(tmp_path, write(tmp_path, rows), max_pixels=10**6))
    assert ds.training_size(0) == (128, 32)
    assert [i.size for i in ds[0].fields["image"]] == [(128, 32), (48, 48)]
    assert ds[0].fields["edit_image"].size == (128, 32)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["wide.png", "missing.png"], "row 1: file 'missing.png' (column 'edit_image') not found under --dataset_base_path"),
        ([], "row 1: column 'edit_image' is an empty list, expected file paths"),
        (["wide.png", ""], "row 1: column 'edit_image' is empty, expected a file path"),
        (["wide.png", ["tall.png"]], "row 1: column 'edit_image': [\"tall.png\"] is not a file path (a path, or a list of paths)"),
    ],
)
def test_bad_lists_fail_in_one_line_naming_row_and_column(tmp_path, value, message):
    metadata = write(tmp_path, [{"image": "target.png", "edit_image": value, "prompt": "p"}])
    with pytest.raises(UserError) as err:
        check_dataset_quickly(options(tmp_path, metadata))
    text = str(err.value)
    assert message in text and "\n" not in text and str(metadata) in text


def test_dataset_check_reports_a_broken_file_inside_a_list(tmp_path):
    metadata = write(tmp_path, [{"image": "target.png", "edit_image": ["wide.png", "broken.png"], "prompt": "p"}])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    report = check_dataset(options(tmp_path, metadata))
    assert [(p.row, p.column) for p in report.problems] == [(0, "edit_image")]
    assert "broken.png" in report.problems[0].message
