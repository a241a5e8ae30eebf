"""Shared fixtures: the tiny presets written once per session in the real repos' layout under a
model base path (`<base>/Tongyi-MAI/Z-Image`, `<base>/Tongyi-MAI/Z-Image-Turbo`)."""

from __future__ import annotations

import os

# One intra-op thread, set before torch loads: tiny models run much faster so on 2 shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from diffsynth_z_image import plugin
from diffsynth_z_image.spec import BASE_REPO, TURBO_REPO

from diffsynth.testing.fixtures import model_base_fixture


model_base = model_base_fixture(plugin.init_model, {BASE_REPO: "tiny", TURBO_REPO: "tiny-turbo"})
