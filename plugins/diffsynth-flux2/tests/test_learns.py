"""It learns: the tiny FLUX.2 klein architecture, trained by the real trainer on red vs blue,
samples (core Euler sampler, the family's mu = 0.8 schedule) nearer its prompt's class."""

from diffsynth.testing.learns import assert_family_learns


def test_tiny_flux2_learns_red_vs_blue(tmp_path, model_base):
    assert_family_learns("flux2", model_base, tmp_path, learning_rate=1e-3, dataset_repeat=30)
