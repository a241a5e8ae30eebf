"""The training dataset: loaded rows, aligned pair sizes, O(1) repeat, and the quick check."""

from __future__ import annotations

import dataclasses
import shutil
import time
import tracemalloc
from pathlib import Path

import pytest
import torch.utils.data
from PIL import Image

from diffsynth.config import TrainConfig
from diffsynth.data.dataset import (
    DatasetOptions,
    TrainingDataset,
    check_dataset_quickly,
    first_item,
)
from diffsynth.data.sampler import RepeatShuffleSampler
from diffsynth.errors import UserError
from diffsynth.types import Sample

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def options(base: Path = EXAMPLES, **flags) -> DatasetOptions:
    config = TrainConfig(dataset_base_path=str(base), **flags)
    return DatasetOptions.from_config(config, multiple=16)


def test_items_are_rows_with_images_loaded_and_sized() -> None:
    ds = TrainingDataset(options(max_pixels=40 * 40, dataset_repeat=3))
    assert ds.num_rows == 8 and len(ds) == 24
    sample = ds[8 + 1]
    assert sample.index == 1
    assert sample.prompt == "a red square on a white background"
    assert sample.fields["image"].size == (32, 32)  # 64x64 scaled to 40x40, rounded down to 16
    assert sample.fields["image"].getpixel((16, 16)) == (220, 30, 30)


def test_edit_pair_uses_the_first_file_keys_size(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "edit", tmp_path, dirs_exist_ok=True)
    Image.new("RGB", (200, 100), "white").save(tmp_path / "images" / "red_circle.png")  # edit_image of row 0
    ds = TrainingDataset(options(tmp_path, data_file_keys="image,edit_image", extra_inputs="edit_image", height=32, width=48))
    assert {ds[0].fields[k].size for k in ("image", "edit_image")} == {(48, 32)}
    ds = TrainingDataset(options(tmp_path, data_file_keys="image,edit_image", max_pixels=10**6))
    assert ds[0].fields["image"].size == ds[0].fields["edit_image"].size == (64, 64)
    assert ds[0].fields["prompt"] == "make it blue"


def test_dataloader_with_sampler_and_first_item() -> None:
    ds = TrainingDataset(options(dataset_repeat=2))
    loader = torch.utils.data.DataLoader(ds, batch_size=1, sampler=RepeatShuffleSampler(8, 2, seed=0), collate_fn=first_item)
    samples = list(loader)
    assert all(isinstance(s, Sample) for s in samples)
    assert sorted(s.index for s in samples) == sorted(list(range(8)) * 2)


def _cost(ds_options: DatasetOptions, table) -> tuple[int, float, int]:
    """(traced peak bytes, seconds per item) for building the dataset, len() and its last item."""
    tracemalloc.start()
    start = time.perf_counter()
    ds = TrainingDataset(ds_options, table)
    last = len(ds) - 1
    for _ in range(5):
        sample = ds[last]
    seconds = (time.perf_counter() - start) / 5
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, seconds, sample.index


def test_repeat_1e12_costs_no_memory_or_time() -> None:
    small, huge = options(), options(dataset_repeat=10**12)
    table = check_dataset_quickly(small)
    _cost(small, table)  # warm up imports and PIL plugins
    start = time.perf_counter()
    assert len(TrainingDataset(huge, table)) == 8 * 10**12
    assert time.perf_counter() - start < 0.01
    peak_1, seconds_1, index_1 = _cost(small, table)
    peak_big, seconds_big, index_big = _cost(huge, table)
    assert index_1 == index_big == 7
    assert abs(peak_big - peak_1) < 4096, (peak_1, peak_big)  # bytes: nothing scales with repeat
    assert seconds_big < 2 * seconds_1 + 0.002, (seconds_1, seconds_big)


def test_index_out_of_range() -> None:
    ds = TrainingDataset(options(dataset_repeat=10**12))
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_quick_check_names_a_missing_column() -> None:
    with pytest.raises(UserError) as info:
        check_dataset_quickly(options(data_file_keys="image,edit_image"))
    assert str(info.value) == (
        f"{EXAMPLES / 'metadata.csv'}: no column 'edit_image' (named in --data_file_keys); columns: image, prompt"
    )
    with pytest.raises(UserError, match=r"metadata.csv: no column 'mask' \(required by the family or --extra_inputs\)"):
        check_dataset_quickly(options(extra_inputs="mask"))


def test_quick_check_reports_the_first_missing_file_and_the_count(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("edit"))
    (tmp_path / "images" / "red_triangle.png").unlink()  # row 3
    (tmp_path / "images" / "yellow_square.png").unlink()  # row 8
    with pytest.raises(UserError) as info:
        check_dataset_quickly(options(tmp_path))
    assert str(info.value) == (
        f"{tmp_path / 'metadata.csv'} row 3: file 'images/red_triangle.png' (column 'image') not found under "
        f"--dataset_base_path {tmp_path}; 2 of 8 files are missing"
    )


def test_getitem_error_names_row_and_file(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("edit"))
    (tmp_path / "images" / "red_square.png").write_bytes(b"")
    ds = TrainingDataset(options(tmp_path))
    with pytest.raises(UserError, match=r"metadata.csv row 2, column 'image': .*red_square.png: image file is empty"):
        ds[1]


def test_flag_errors() -> None:
    with pytest.raises(UserError, match=r"^--dataset_repeat 0: expected an integer >= 1$"):
        options(dataset_repeat=0)
    with pytest.raises(UserError, match=r"^--height needs --width too"):
        options(height=64)
    with pytest.raises(UserError, match=r"^--dataset_base_path .*nowhere: not a folder$"):
        options(EXAMPLES / "nowhere")
    assert dataclasses.is_dataclass(options()) and options().metadata_path.name == "metadata.csv"
