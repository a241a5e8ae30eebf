"""It learns: the tiny Qwen-Image architecture, trained by the real trainer on red vs blue,
samples (core Euler sampler, the family's schedule) nearer its prompt's class for >= 90% of seeds."""

from __future__ import annotations

from diffsynth.config import TrainConfig
from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV
from diffsynth.plugins import load_registry
from diffsynth.testing.learns import train_and_sample, write_two_class_dataset


def test_tiny_qwen_image_learns_red_vs_blue(tmp_path, model_base, monkeypatch):
    monkeypatch.setenv(MODEL_BASE_ENV, str(model_base))
    monkeypatch.setenv(SKIP_DOWNLOAD_ENV, "True")
    data = write_two_class_dataset(tmp_path / "data", size=32)
    config = TrainConfig(
        family="qwen-image",
        dataset_base_path=str(data),
        trainable_models="dit",
        learning_rate=1e-3,
        dataset_repeat=30,
        output_path=str(tmp_path / "out"),
        seed=0,
    )
    result = train_and_sample(load_registry(), config, num_seeds=20)
    assert result.fraction >= 0.9, f"{result.correct}/{result.total} samples nearer their own class"
