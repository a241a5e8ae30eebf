"""Shared fixtures: the tiny presets written once per session in the real repos' layout under a
model base path (`<base>/Tongyi-MAI/Z-Image`, `<base>/Tongyi-MAI/Z-Image-Turbo`)."""

from __future__ import annotations

import os

# One intra-op thread, set before torch loads: tiny models run much faster so on 2 shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest
from diffsynth_z_image import plugin
from diffsynth_z_image.spec import BASE_REPO, TURBO_REPO


@pytest.fixture(scope="session")
def model_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("models")
    plugin.init_model("tiny", base / BASE_REPO, 0)
    plugin.init_model("tiny-turbo", base / TURBO_REPO, 0)
    return base
