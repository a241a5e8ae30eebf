"""Shared fixtures: the tiny presets written once per session in the real repos' layout under a
model base path (`<base>/black-forest-labs/FLUX.2-klein-4B`, `.../FLUX.2-klein-base-4B`,
`.../FLUX.2-dev`)."""

from __future__ import annotations

import os

# One intra-op thread, set before torch loads: tiny models run far faster so on 2 shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pytest
import torch
from diffsynth_flux2 import FAMILY, plugin
from diffsynth_flux2.spec import DEV, EDIT, KLEIN_4B, KLEIN_BASE_4B, NAME
from PIL import Image

from diffsynth.config import TrainConfig
from diffsynth.testing.contract import offline_model_files
from diffsynth.testing.fixtures import model_base_fixture, random_image
from diffsynth.types import ModelFiles, RunContext, Sample

torch.set_num_threads(1)


model_base = model_base_fixture(plugin.init_model, {KLEIN_4B: "tiny", KLEIN_BASE_4B: "tiny-base", DEV: "tiny-dev"})


@pytest.fixture(scope="session")
def tiny_dir(model_base) -> Path:
    return model_base / KLEIN_4B


def model_files(base: Path, variant: str = "klein-4b", sources: tuple[str, ...] = ()) -> ModelFiles:
    """What `train` resolves offline under `base`: the variant's defaults, or explicit `sources`."""
    return offline_model_files(FAMILY, base, variant, sources)


def config(edit: bool = False, **options) -> RunContext:
    """What the family's hooks get for a run with these flags (family `options`: e.g. guidance)."""
    flags = TrainConfig(dtype="fp32", extra_inputs=EDIT if edit else None, family=NAME)
    return RunContext.for_run(flags, FAMILY.options_value(options))


image = random_image


def sample(references: int = 0) -> Sample:
    fields = {"image": image(0), "prompt": "a red cat"}
    if references:
        fields[EDIT] = [image(1 + i, 64 + 16 * i, 64) for i in range(references)]
    return Sample(index=0, fields=fields)


def pixels(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
