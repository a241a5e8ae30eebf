"""Helpers for tests of `diffsynth sample` on a family's tiny presets: the real CLI run in-process
(offline, under a model base path), a tiny LoRA trained by the real trainer, and the pixels of
what was written (PNG or MP4)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def offline_in(model_base: Path, cwd: Path) -> Iterator[None]:
    """Models from `model_base` (no download), working directory `cwd`, restored afterwards."""
    import pytest

    from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(MODEL_BASE_ENV, str(model_base))
        mp.setenv(SKIP_DOWNLOAD_ENV, "True")
        mp.delenv("DIFFSYNTH_DEBUG", raising=False)
        mp.chdir(cwd)
        yield


def run_in_process(model_base: Path, cwd: Path, *args: str | Path) -> None:
    """`diffsynth ARGS` through the real entry point, in this process (SystemExit on an error)."""
    from diffsynth.cli import main

    cwd.mkdir(parents=True, exist_ok=True)
    with offline_in(model_base, cwd):
        main([str(a) for a in args])


def train_tiny_lora(family: str, model_base: Path, workdir: Path, *flags: str, steps: int = 6, lr: float = 2e-2) -> Path:
    """A rank-4 LoRA on the denoiser, trained by `diffsynth train` for a few steps on the red/blue
    toy dataset at a learning rate high enough to change what the model generates."""
    from diffsynth.testing.learns import write_two_class_dataset

    data = write_two_class_dataset(workdir / "data")
    out = workdir / "lora"
    run_in_process(
        model_base, workdir, "train", family, "--dataset_base_path", data, "--height", "32", "--width", "32",
        "--lora_base_model", "dit", "--lora_rank", "4", "--learning_rate", str(lr), "--max_steps", str(steps),
        "--save_steps", str(steps), "--output_path", out, *flags,
    )  # fmt: skip
    return out / f"step-{steps}.safetensors"


def tiny_lora_fixture(family: str) -> Any:
    """A module fixture `lora`: `train_tiny_lora(family, ...)` once for the test module.
    In a test module: `lora = tiny_lora_fixture("<family>")`."""
    import pytest

    @pytest.fixture(scope="module")
    def lora(model_base, tmp_path_factory) -> Path:
        return train_tiny_lora(family, model_base, tmp_path_factory.mktemp("lora"))

    return lora


def sampler(family: str, *size: str) -> Callable[..., np.ndarray]:
    """`sample(model_base, cwd, name, *args, prompt="red")`: the pixels (read_frames) of
    `diffsynth sample FAMILY --prompt PROMPT SIZE --output NAME ARGS`, run in `cwd`."""

    def sample(model_base: Path, cwd: Path, name: str, *args: str | Path, prompt: str = "red") -> np.ndarray:
        run_in_process(model_base, cwd, "sample", family, "--prompt", prompt, *size, "--output", name, *args)
        return read_frames(cwd / name)

    return sample


def read_frames(path: Path) -> np.ndarray:
    """(frames, height, width, 3) uint8 pixels of a PNG (one frame) or a video file."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(path) as img:
            assert img.mode == "RGB", img.mode
            return np.asarray(img)[None]
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
