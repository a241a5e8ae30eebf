"""It learns: the tiny Wan T2V architecture, trained by the real trainer on red vs blue (still
images, i.e. 1-frame clips), samples nearer its prompt's class for >= 90% of seeds."""

from diffsynth.testing.learns import assert_family_learns


def test_tiny_wan_learns_red_vs_blue(tmp_path, model_base):
    assert_family_learns("wan", model_base, tmp_path, learning_rate=1e-3, dataset_repeat=30)
