"""Samples during training (issue 15) on the real Qwen-Image pipeline: fixed-seed images of the
asked prompts at each validation step, a grid, and the same images for the same weights."""

from pathlib import Path

import numpy as np
from PIL import Image

from diffsynth.config import TrainConfig
from diffsynth.plugins import load_registry
from diffsynth.training.trainer import Trainer

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


def run(tmp_path, model_base, monkeypatch, name, **extra):
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(model_base))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\n\na blue circle\n")
    flags = dict(family="qwen-image", dataset_base_path=str(DATA), height=32, width=32, lora_base_model="dit",
                 lora_rank=4, learning_rate=5e-2, max_steps=4, output_path=str(tmp_path / name),
                 validation_prompts=str(prompts), validation_steps=2)
    Trainer(load_registry(), TrainConfig(**{**flags, **extra})).run()
    return tmp_path / name


def test_samples_at_each_validation_step_with_a_grid(tmp_path, model_base, monkeypatch):
    out = run(tmp_path, model_base, monkeypatch, "a")
    for step in (2, 4):
        folder = out / "samples" / f"step-{step}"
        images = [Image.open(folder / f"{i}.png") for i in range(2)]
        assert all(image.size == (32, 32) for image in images)
        assert Image.open(folder / "grid.png").size == (64, 32)
    step2 = np.asarray(Image.open(out / "samples" / "step-2" / "0.png"), dtype=np.int16)
    step4 = np.asarray(Image.open(out / "samples" / "step-4" / "0.png"), dtype=np.int16)
    assert np.abs(step2 - step4).max() > 0  # the LoRA trained in between shows
    card = (out / "README.md").read_text()
    assert "![samples](samples/step-4/grid.png)" in card and "(loss.png)" in card


def test_the_same_weights_give_the_same_samples(tmp_path, model_base, monkeypatch):
    a = run(tmp_path, model_base, monkeypatch, "a", learning_rate=1e-30)
    b = run(tmp_path, model_base, monkeypatch, "b", learning_rate=1e-30)
    first = np.asarray(Image.open(a / "samples" / "step-2" / "0.png"))
    assert np.array_equal(first, np.asarray(Image.open(b / "samples" / "step-2" / "0.png")))
    assert np.array_equal(first, np.asarray(Image.open(a / "samples" / "step-4" / "0.png")))
