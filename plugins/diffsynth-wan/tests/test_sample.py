"""`diffsynth sample wan` on the tiny presets, through diffusers' WanPipeline /
WanImageToVideoPipeline: an MP4 of the asked size and frame count, the same pixels twice, a trained
LoRA changes them (scale 0 does not), Wan2.1 I2V and Wan2.2 TI2V given a first frame, one frame
as a PNG."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diffsynth.testing.sample import sampler, tiny_lora_fixture

SIZE = ("--height", "32", "--width", "48", "--num_frames", "5", "--steps", "3")


lora = tiny_lora_fixture("wan")
sample = sampler("wan", *SIZE)


def first_frame(tmp_path):
    Image.new("RGB", (48, 32), (200, 20, 20)).save(tmp_path / "first.png")
    return tmp_path / "first.png"


def test_writes_a_video_of_the_asked_size_and_the_same_pixels_twice(model_base, tmp_path):
    first, second = sample(model_base, tmp_path, "a.mp4"), sample(model_base, tmp_path, "b.mp4")
    assert first.shape == (5, 32, 48, 3) and first.std() > 0
    assert np.array_equal(first, second)


def test_a_trained_lora_changes_the_pixels_and_scale_zero_does_not(model_base, tmp_path, lora):
    base = sample(model_base, tmp_path, "base.mp4")
    with_lora = sample(model_base, tmp_path, "lora.mp4", "--lora", lora)
    assert (with_lora != base).mean() > 0.01
    off = sample(model_base, tmp_path, "off.mp4", "--lora", lora, "--lora_scale", "0")
    assert np.abs(off.astype(int) - base).max() <= 2  # H.264 of the same frames within a level or two


def test_image_to_video_wan21_i2v(model_base, tmp_path):
    out = sample(model_base, tmp_path, "i2v.mp4", "--input_image", first_frame(tmp_path))
    assert out.shape == (5, 32, 48, 3) and out.std() > 0


def test_image_to_video_wan22_ti2v_and_one_frame_as_png(model_base, tmp_path):
    image = first_frame(tmp_path)
    out = sample(model_base, tmp_path, "ti2v.mp4", "--variant", "ti2v", "--input_image", image, "--width", "64")
    assert out.shape == (5, 32, 64, 3) and out.std() > 0
    one = sample(model_base, tmp_path, "one.png", "--variant", "ti2v", "--num_frames", "1", "--width", "64")
    assert one.shape == (1, 32, 64, 3)


def test_an_image_output_for_a_video_fails_in_one_line(model_base, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        sample(model_base, tmp_path, "x.png")
    assert exit.value.code != 0
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --output x.png: wan generates a video; expected a .mp4 file name (or --num_frames 1)"
    ]
