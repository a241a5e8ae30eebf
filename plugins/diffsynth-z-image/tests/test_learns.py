"""It learns: the tiny Z-Image architecture, trained by the real trainer on red vs blue, samples
(core Euler sampler, the family's schedule) nearer its prompt's class for >= 90% of seeds."""

from diffsynth.testing.learns import assert_family_learns


def test_tiny_z_image_learns_red_vs_blue(tmp_path, model_base):
    assert_family_learns("z-image", model_base, tmp_path, learning_rate=1e-3, dataset_repeat=40)
