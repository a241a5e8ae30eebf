"""Shared fixtures: the tiny presets written once per session in the original repos' layout under
a model base path (`<base>/Wan-AI/Wan2.1-T2V-1.3B`, ...), loaded through the plugin's real path."""

from __future__ import annotations

import os

# One intra-op thread, set before torch loads: tiny models run ~30x faster so on 2 shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

from diffsynth_wan import FAMILY, plugin
from diffsynth_wan.spec import I2V_REPO, NAME, T2V_REPO, TI2V_REPO

from diffsynth.config import TrainConfig
from diffsynth.types import RunContext
from diffsynth.data.media import resize_and_crop
from diffsynth.data.video import load_video
from diffsynth.testing.contract import offline_files, offline_model_files
from diffsynth.testing.fixtures import model_base_fixture
from diffsynth.types import ModelFiles, Sample

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data" / "video"
REPOS = {"t2v": (T2V_REPO, "tiny"), "i2v": (I2V_REPO, "tiny-i2v"), "ti2v": (TI2V_REPO, "tiny-ti2v")}


model_base = model_base_fixture(plugin.init_model, dict(REPOS.values()))


resolve = offline_files  # (source, files) of one repo:glob, by the core's rules

def model_files(base: Path, variant: str) -> ModelFiles:
    """What `train` resolves offline under `base` for the variant's default sources."""
    return offline_model_files(FAMILY, base, variant)


def config(variant: str = "t2v") -> RunContext:
    """What the family's hooks get for a run of `variant`."""
    return RunContext.for_run(TrainConfig(dtype="fp32", family=NAME, extra_inputs=None if variant == "t2v" else "input_image"))


def load(base: Path, variant: str):
    return plugin.load_pipeline(model_files(base, variant), config(variant))


def clip_frames(num_frames: int = 5, size: int = 32) -> list:
    return [resize_and_crop(f, size, size) for f in load_video(EXAMPLES / "videos" / "red_circle.mp4", num_frames)]


def sample(num_frames: int = 5) -> Sample:
    return Sample(index=0, fields={"video": clip_frames(num_frames), "prompt": "a red circle sliding right"})
