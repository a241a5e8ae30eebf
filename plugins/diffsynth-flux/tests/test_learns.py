"""It learns: the tiny FLUX architecture, trained by the real trainer on red vs blue, samples
(core Euler sampler, the family's shift-3 schedule) nearer its prompt's class for >= 90% of seeds."""

from diffsynth.testing.learns import assert_family_learns


def test_tiny_flux_learns_red_vs_blue(tmp_path, model_base):
    assert_family_learns("flux", model_base, tmp_path, learning_rate=1e-3, dataset_repeat=30)
