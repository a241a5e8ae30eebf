"""`diffsynth sample flux` on the tiny presets, through diffusers' FluxPipeline /
FluxKontextPipeline: the asked size, the same pixels twice, a trained LoRA changes them (scale 0
does not), the Kontext reference image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diffsynth.testing.sample import sampler, tiny_lora_fixture

SIZE = ("--height", "32", "--width", "48", "--steps", "3")


lora = tiny_lora_fixture("flux")
sample = sampler("flux", *SIZE)


@pytest.fixture(scope="module")
def base(model_base, tmp_path_factory):
    """The pixels of the plain command (no LoRA, default guidance), sampled once for the module."""
    return sample(model_base, tmp_path_factory.mktemp("base"), "base.png")


def test_writes_the_asked_size_and_the_same_pixels_twice(model_base, tmp_path, base):
    first, second = base, sample(model_base, tmp_path, "b.png")
    assert first.shape == (1, 32, 48, 3) and first.std() > 0
    assert np.array_equal(first, second)
    assert not np.array_equal(first, sample(model_base, tmp_path, "g.png", "--guidance", "1.0"))  # embedded guidance is used


def test_a_trained_lora_changes_the_pixels_and_scale_zero_does_not(model_base, tmp_path, lora, base):
    with_lora = sample(model_base, tmp_path, "lora.png", "--lora", lora)
    assert (with_lora != base).mean() > 0.01
    off = sample(model_base, tmp_path, "off.png", "--lora", lora, "--lora_scale", "0")
    assert np.abs(off.astype(int) - base).max() <= 1


def test_kontext_reference_samples_flux_kontext(model_base, tmp_path):
    Image.new("RGB", (40, 24), (200, 20, 20)).save(tmp_path / "ref.png")
    out = sample(model_base, tmp_path, "k.png", "--kontext_images", tmp_path / "ref.png", "--steps", "2")
    assert out.shape == (1, 32, 48, 3) and out.std() > 0
