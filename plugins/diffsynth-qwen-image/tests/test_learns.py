"""It learns: the tiny Qwen-Image architecture, trained by the real trainer on red vs blue,
samples (core Euler sampler, the family's schedule) nearer its prompt's class for >= 90% of seeds;
and the Edit-2509 one, whose rows differ only in their reference images, nearer its references'."""

import json
import os
from pathlib import Path
from unittest.mock import patch

import torch

from diffsynth.config import TrainConfig
from diffsynth.testing.learns import CLASSES, assert_family_learns

PROMPT = "the colour of the pictures"


def test_tiny_qwen_image_learns_red_vs_blue(tmp_path, model_base):
    assert_family_learns("qwen-image", model_base, tmp_path, learning_rate=1e-3, dataset_repeat=30)


def write_reference_dataset(folder: Path, size: int = 32, per_class: int = 4) -> Path:
    """Edit-2509 rows whose target colour is told by the references alone: the prompt is the same
    for every row, `edit_image` is [a picture of the class colour, a grey one], as a JSON list."""
    from PIL import Image

    def picture(rgb, texture: int) -> Image.Image:
        img = Image.new("RGB", (size, size))
        img.putdata([tuple(min(255, c + ((x * texture + y) % 3) * 4) for c in rgb) for y in range(size) for x in range(size)])
        return img

    folder.mkdir(parents=True, exist_ok=True)
    picture((128, 128, 128), 1).save(folder / "grey.png")
    rows = []
    for name, rgb in CLASSES.items():
        for i in range(per_class):
            picture(rgb, i).save(folder / f"{name}_{i}.png")
            picture(rgb, i + 1).save(folder / f"{name}_ref_{i}.png")
            rows.append({"image": f"{name}_{i}.png", "edit_image": [f"{name}_ref_{i}.png", "grey.png"], "prompt": PROMPT})
    (folder / "metadata.json").write_text(json.dumps(rows))
    return folder


def test_tiny_edit_2509_learns_the_colour_of_its_reference_images(tmp_path, model_base):
    """Full-train the Edit-2509 DiT on rows that differ only in their references; sampled (core
    Euler sampler) with each class's references, >= 90% land nearer that class's mean latent."""
    from diffsynth.data.dataset import DatasetOptions, TrainingDataset
    from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV
    from diffsynth.plugins import load_registry
    from diffsynth.training.family_hooks import FamilyHooks
    from diffsynth.training.trainer import Trainer

    data = write_reference_dataset(tmp_path / "data")
    config = TrainConfig(
        family="qwen-image", variant="edit-2509", dataset_base_path=str(data), dataset_metadata_path=str(data / "metadata.json"),
        data_file_keys="image,edit_image", extra_inputs="edit_image", trainable_models="dit", learning_rate=1e-3,
        dataset_repeat=10, output_path=str(tmp_path / "out"), seed=0,
    )  # fmt: skip
    with patch.dict(os.environ, {MODEL_BASE_ENV: str(model_base), SKIP_DOWNLOAD_ENV: "True"}):
        registry = load_registry()
        trainer = Trainer(registry, config)
        trainer.run()
    pipeline, hooks = trainer.pipeline, FamilyHooks(registry, trainer.family)
    assert pipeline.edit_plus
    dataset = TrainingDataset(DatasetOptions.from_config(config, multiple=16))
    latents, examples = {name: [] for name in CLASSES}, {}
    with torch.no_grad():
        for row in range(dataset.num_rows):
            sample = dataset[row]
            name = dataset.table.row(row)["image"].split("_")[0]
            inputs = hooks.preprocess(pipeline, sample, trainer.context)
            latents[name].append(inputs.latents)
            examples.setdefault(name, inputs)
        means = {name: torch.stack(lat).mean(0) for name, lat in latents.items()}
        correct = total = 0
        for name, inputs in examples.items():
            for seed in range(10):
                generated = hooks.sample(pipeline, inputs, num_steps=20, seed=seed)
                distance = {other: (generated - mean).pow(2).mean().item() for other, mean in means.items()}
                correct += min(distance, key=distance.get) == name
                total += 1
    assert correct >= 0.9 * total, f"{correct}/{total} samples nearer the class of their references"
