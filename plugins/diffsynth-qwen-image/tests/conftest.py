"""Shared fixtures: the tiny presets written once per session in the real repos' layout under a
model base path (`<base>/Qwen/Qwen-Image`, `<base>/Qwen/Qwen-Image-Edit`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from diffsynth_qwen_image import FAMILY
from diffsynth_qwen_image.spec import NAME
from diffsynth_qwen_image.tiny import write_preset
from PIL import Image

from diffsynth.config import TrainConfig
from diffsynth.models.checkpoints import identify_all
from diffsynth.types import ModelFiles, Sample


@pytest.fixture(scope="session")
def model_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("models")
    write_preset("tiny", base / "Qwen" / "Qwen-Image", 0)
    write_preset("tiny-edit", base / "Qwen" / "Qwen-Image-Edit", 0)
    return base


@pytest.fixture(scope="session")
def tiny_dir(model_base) -> Path:
    return model_base / "Qwen" / "Qwen-Image"


@pytest.fixture(scope="session")
def tiny_edit_dir(model_base) -> Path:
    return model_base / "Qwen" / "Qwen-Image-Edit"


def resolve(base: Path, source: str) -> tuple[str, list[Path]]:
    """`repo/id:glob` -> files under the model base path (what the core's sources do offline)."""
    repo, pattern = source.rsplit(":", 1)
    return source, sorted((base / repo).glob(pattern))


def model_files(base: Path, variant: str) -> ModelFiles:
    spec = FAMILY.variant(variant)
    groups = identify_all(FAMILY, [resolve(base, s) for s in spec.model_sources])
    folder = lambda s: base / s.rsplit(":", 1)[0] / s.rsplit(":", 1)[1]  # noqa: E731
    return ModelFiles(
        components=groups,
        tokenizer_path=folder(spec.tokenizer_source),
        processor_path=folder(spec.processor_source) if spec.processor_source else None,
    )


def config(edit: bool = False) -> TrainConfig:
    return TrainConfig(dtype="fp32", extra_inputs="edit_image" if edit else None, family=NAME)


def image(seed: int, width: int = 32, height: int = 32) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def sample(edit: bool = False) -> Sample:
    fields = {"image": image(0), "prompt": "a red cat"}
    if edit:
        fields["edit_image"] = image(1, 48, 32)
    return Sample(index=0, fields=fields)
