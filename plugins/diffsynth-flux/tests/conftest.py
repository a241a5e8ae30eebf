"""Shared fixtures: the tiny presets written once per session in the real repos' layout under a
model base path (`<base>/black-forest-labs/FLUX.1-dev`, `.../FLUX.1-Kontext-dev`)."""

from __future__ import annotations

import os

# One intra-op thread, set before torch loads: tiny models run ~30x faster so on 2 shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest
import torch
from diffsynth_flux import FAMILY, plugin
from diffsynth_flux.spec import DEV_REPO, KONTEXT_REPO, NAME

from diffsynth.config import TrainConfig
from diffsynth.types import RunContext
from diffsynth.testing.contract import offline_files, offline_model_files
from diffsynth.testing.fixtures import model_base_fixture, random_image
from diffsynth.types import ModelFiles, Sample

# Tiny models: one thread is faster, and far faster on a CPU other jobs share (thread contention).
torch.set_num_threads(1)


model_base = model_base_fixture(plugin.init_model, {DEV_REPO: "tiny", KONTEXT_REPO: "tiny-kontext"})


@pytest.fixture(scope="session")
def tiny_dir(model_base) -> Path:
    return model_base / DEV_REPO


@pytest.fixture(scope="session")
def tiny_kontext_dir(model_base) -> Path:
    return model_base / KONTEXT_REPO


resolve = offline_files  # (source, files) of one repo:glob, by the core's rules

def model_files(base: Path, variant: str = "dev", sources: tuple[str, ...] = ()) -> ModelFiles:
    """What `train` resolves offline under `base`: the variant's defaults, or explicit `sources`."""
    return offline_model_files(FAMILY, base, variant, sources)


def config(kontext: bool = False, guidance: float = 1.0) -> RunContext:
    """What the family's hooks get for a run with these flags."""
    flags = TrainConfig(dtype="fp32", extra_inputs="kontext_images" if kontext else None, family=NAME)
    return RunContext.for_run(flags, FAMILY.options_value({"guidance": guidance}))


image = random_image


def sample(kontext: bool = False) -> Sample:
    fields = {"image": image(0), "prompt": "a red cat"}
    if kontext:
        fields["kontext_images"] = image(1, 48, 32)
    return Sample(index=0, fields=fields)
