"""Video data: the frame-count rule, decoding every container in examples/data/video, still images
as 1-frame clips, per-frame sizing, and the family's default file keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from diffsynth.config import TrainConfig
from diffsynth.data.dataset import (
    DatasetOptions,
    TrainingDataset,
    check_dataset_quickly,
)
from diffsynth.data.video import frame_count, load_frames, load_video
from diffsynth.errors import UserError

VIDEO = Path(__file__).resolve().parents[2] / "examples" / "data" / "video"
# file -> frames in the file (examples/make_example_data.py)
CLIPS = {"red_circle.mp4": 9, "blue_square.webm": 11, "green_triangle.gif": 6, "yellow_circle.avi": 8}


@pytest.mark.parametrize(
    ("total", "requested", "kept"),
    [(81, 81, 81), (100, 81, 81), (100, 10, 10), (80, 81, 77), (11, 81, 9), (8, 81, 5), (6, 81, 5), (4, 81, 1), (1, 81, 1)],
)
def test_frame_count_takes_n_or_the_largest_4k_plus_1(total, requested, kept):
    assert frame_count(total, requested) == kept


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_every_example_container_decodes(name):
    frames = load_video(VIDEO / "videos" / name, num_frames=81)
    assert len(frames) == frame_count(CLIPS[name], 81)
    assert all(f.mode == "RGB" and f.size == (32, 32) for f in frames)
    # the shape slides right: the first and last frames differ
    assert frames[0].tobytes() != frames[-1].tobytes()
    assert len(load_video(VIDEO / "videos" / name, num_frames=3)) == 3  # only the first N


def test_still_image_is_a_one_frame_clip():
    frames = load_frames(VIDEO / "i2v" / "images" / "red_circle_first.png", num_frames=81)
    assert len(frames) == 1 and isinstance(frames[0], Image.Image)


def test_bad_video_is_a_one_line_user_error(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(UserError, match="clip.mp4: not a video"):
        load_video(bad, 5)
    with pytest.raises(UserError, match="not found"):
        load_video(tmp_path / "missing.mp4", 5)


def options(base: Path, **flags) -> DatasetOptions:
    return DatasetOptions.from_config(TrainConfig(dataset_base_path=str(base), **flags), multiple=16)


def test_video_column_loads_frames_resized_per_frame():
    ds = TrainingDataset(options(VIDEO, data_file_keys="video", num_frames=5, height=16, width=16))
    for row in range(ds.num_rows):
        frames = ds[row].fields["video"]
        assert isinstance(frames, list) and len(frames) == 5
        assert all(f.size == (16, 16) for f in frames)


def test_i2v_rows_pair_a_video_and_an_image(tmp_path):
    ds = TrainingDataset(options(VIDEO / "i2v", data_file_keys="video,input_image", num_frames=81, max_pixels=16 * 16))
    sample = ds[0]
    assert len(sample.fields["video"]) == 9 and sample.fields["input_image"].size == (16, 16)
    assert sample.fields["video"][0].size == (16, 16)


def test_image_in_a_video_column_is_one_frame(tmp_path):
    (tmp_path / "still.png").write_bytes((VIDEO / "i2v" / "images" / "blue_square_first.png").read_bytes())
    (tmp_path / "metadata.csv").write_text("video,prompt\nstill.png,a blue square\n")
    frames = TrainingDataset(options(tmp_path, data_file_keys="video"))[0].fields["video"]
    assert len(frames) == 1 and frames[0].size == (32, 32)


def test_family_default_file_keys_skip_absent_columns(tmp_path):
    config = TrainConfig(dataset_base_path=str(VIDEO), num_frames=5)
    opts = DatasetOptions.from_config(config, multiple=16, default_file_keys=("image", "video"))
    table = check_dataset_quickly(opts)
    ds = TrainingDataset(opts, table)
    assert ds.options.file_keys == ("video",) and len(ds[0].fields["video"]) == 5
    # explicitly named keys must exist
    with pytest.raises(UserError, match="no column 'image'"):
        check_dataset_quickly(options(VIDEO, data_file_keys="image,video"))
    shutil.copy(VIDEO / "metadata.csv", tmp_path / "metadata.csv")
    (tmp_path / "metadata.csv").write_text("clip,prompt\nx.mp4,p\n")
    with pytest.raises(UserError, match="none of the file columns image, video"):
        check_dataset_quickly(DatasetOptions.from_config(TrainConfig(dataset_base_path=str(tmp_path)), multiple=16,
                                                         default_file_keys=("image", "video")))
