"""The core's flow matching + sampler learn a two-class toy problem (catches sign/target bugs)."""

from diffsynth.config import TrainConfig
from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV
from diffsynth.plugins import load_registry
from diffsynth.testing.learns import train_and_sample, write_two_class_dataset


def test_toy_family_learns_red_vs_blue(tmp_path, toy_models, monkeypatch):
    monkeypatch.setenv(MODEL_BASE_ENV, str(toy_models))
    monkeypatch.setenv(SKIP_DOWNLOAD_ENV, "True")
    data = write_two_class_dataset(tmp_path / "data", size=32)
    config = TrainConfig(
        family="toy",
        dataset_base_path=str(data),
        trainable_models="dit",
        learning_rate=3e-3,
        dataset_repeat=40,
        output_path=str(tmp_path / "out"),
        seed=1,
    )
    result = train_and_sample(load_registry(), config, num_seeds=20)
    assert result.fraction >= 0.9, f"{result.correct}/{result.total} samples nearer their own class"
