"""`diffsynth sample z-image` on the tiny presets, through diffusers' ZImagePipeline: the asked
size, the same pixels twice, a trained LoRA changes them (scale 0 does not), and flags Z-Image
does not use fail in one line."""

from __future__ import annotations

import numpy as np
import pytest

from diffsynth.testing.sample import sampler, train_tiny_lora

SIZE = ("--height", "32", "--width", "48", "--steps", "2")


sample = sampler("z-image", *SIZE)


def test_the_asked_size_deterministic_and_a_lora_changes_it(model_base, tmp_path):
    first = sample(model_base, tmp_path, "a.png")
    assert first.shape == (1, 32, 48, 3) and first.std() > 0
    assert np.array_equal(first, sample(model_base, tmp_path, "b.png"))
    lora = train_tiny_lora("z-image", model_base, tmp_path / "train")
    with_lora = sample(model_base, tmp_path, "lora.png", "--lora", lora)
    assert (with_lora != first).mean() > 0.01
    off = sample(model_base, tmp_path, "off.png", "--lora", lora, "--lora_scale", "0")
    assert np.abs(off.astype(int) - first).max() <= 1


def test_flags_z_image_does_not_use_fail_in_one_line(model_base, tmp_path, capsys):
    with pytest.raises(SystemExit):
        sample(model_base, tmp_path, "x.png", "--guidance", "3.5")
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --guidance: Z-Image has no embedded guidance; use --cfg_scale (ZImagePipeline's guidance_scale)"
    )
