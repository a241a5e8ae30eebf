"""Helpers for the recipe tests: in-process toy runs through the real Trainer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest.mock import patch

from safetensors.torch import load_file

from diffsynth.config import TrainConfig
from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV
from diffsynth.plugins import load_registry
from diffsynth.training.trainer import Trainer
from tests.conftest import EXAMPLE_DATA


def toy_config(out: Path, **options) -> TrainConfig:
    base = dict(
        family="toy", dataset_base_path=str(EXAMPLE_DATA), max_pixels=4096, output_path=str(out),
        lora_base_model="dit", lora_rank=4, learning_rate=1e-3, dataset_repeat=2,
    )
    base.update(options)
    return TrainConfig(**base)


def train(models: Path, out: Path, **options) -> Trainer:
    """Run the toy family with `options` (TrainConfig fields) into `out`; returns the trainer."""
    with patch.dict(os.environ, {MODEL_BASE_ENV: str(models), SKIP_DOWNLOAD_ENV: "True"}):
        trainer = Trainer(load_registry(), toy_config(out, **options))
        trainer.result = trainer.run()
    return trainer


def losses(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]


def weights(path: Path) -> dict:
    return load_file(str(path))
