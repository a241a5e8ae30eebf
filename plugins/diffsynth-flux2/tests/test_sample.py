"""`diffsynth sample flux2` on the tiny preset, through diffusers' Flux2KleinPipeline: the asked
size, the same pixels twice, a trained LoRA changes them (scale 0 does not), reference images."""

from __future__ import annotations

import numpy as np
from PIL import Image

from diffsynth.testing.sample import sampler, tiny_lora_fixture

SIZE = ("--height", "32", "--width", "48", "--steps", "2")


lora = tiny_lora_fixture("flux2")
sample = sampler("flux2", *SIZE)


def test_asked_size_same_pixels_twice_and_a_lora_changes_them(model_base, tmp_path, lora):
    base, again = sample(model_base, tmp_path, "a.png"), sample(model_base, tmp_path, "b.png")
    assert base.shape == (1, 32, 48, 3) and base.std() > 0 and np.array_equal(base, again)
    assert (sample(model_base, tmp_path, "lora.png", "--lora", lora) != base).mean() > 0.01
    off = sample(model_base, tmp_path, "off.png", "--lora", lora, "--lora_scale", "0")
    assert np.abs(off.astype(int) - base).max() <= 1


def test_reference_image_conditions_the_sample(model_base, tmp_path):
    Image.new("RGB", (64, 64), (200, 20, 20)).save(tmp_path / "ref.png")
    base = sample(model_base, tmp_path, "base.png")
    out = sample(model_base, tmp_path, "ref_out.png", "--edit_image", tmp_path / "ref.png")
    assert out.shape == (1, 32, 48, 3) and not np.array_equal(out, base)
