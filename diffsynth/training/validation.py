"""Validation loss that means something from step to step, and the best file by it.

Each held-out row is encoded once; its loss is the flow-matching loss at fixed noise levels
(`SIGMAS`) with fixed noise (seeded by the run's seed and the row), so the figure changes only
when the weights do. It never touches the training's random state, so a run with validation
trains exactly as one without (and resumes bit for bit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch

from diffsynth.config import TrainConfig
from diffsynth.data.dataset import DatasetOptions, TrainingDataset, check_dataset_quickly
from diffsynth.spec import FamilySpec
from diffsynth.training import flow_matching as fm
from diffsynth.training.outputs import atomic_write_text
from diffsynth.types import FamilyPipeline, RunContext, TrainingInputs

#: Noise levels every held-out row is scored at (spread over the schedule, ends excluded).
SIGMAS = (0.2, 0.4, 0.6, 0.8)
BEST_STEM = "best"
BEST_RECORD = "best.json"


@dataclass
class ValidationSet:
    """The held-out rows, encoded once."""

    inputs: list[TrainingInputs]
    seed: int


def validation_dataset(config: TrainConfig, family: FamilySpec) -> TrainingDataset | None:
    """`--validation_metadata_path` read like the training metadata (same base folder, columns,
    resolution), checked before any model loads; None without the flag (`--validation_split`
    holds out training rows instead: `held_out_split`)."""
    if not config.validation_metadata_path:
        return None
    flags = replace(config, dataset_metadata_path=config.validation_metadata_path, dataset_repeat=1)
    options = DatasetOptions.from_config(
        flags,
        multiple=family.resolution_multiple,
        required_columns=("prompt",),
        derivable_inputs=tuple(e.name for e in family.extra_inputs if not e.column_required),
        default_file_keys=family.default_data_file_keys,
    )
    return TrainingDataset(options, check_dataset_quickly(options))


def encode_validation_set(hooks, pipeline: FamilyPipeline, context: RunContext, dataset: TrainingDataset, seed: int) -> ValidationSet:
    """Every held-out row through the family's preprocessing, without gradients."""
    inputs = [hooks.preprocess(pipeline, dataset[index], context) for index in range(dataset.num_rows)]
    return ValidationSet(inputs, seed)


def validation_loss(hooks, pipeline: FamilyPipeline, validation: ValidationSet) -> float:
    """Mean flow-matching loss over the held-out rows and `SIGMAS`, with fixed noise."""
    devices = [pipeline.device] if pipeline.device is not None and pipeline.device.type == "cuda" else []
    total, count = 0.0, 0
    with torch.no_grad(), torch.random.fork_rng(devices=devices):  # the training's RNG stays as it was
        for row, inputs in enumerate(validation.inputs):
            latents = inputs.latents
            noise_source = torch.Generator().manual_seed(validation.seed * 1_000_003 + row)
            noise = torch.randn(latents.shape, generator=noise_source).to(latents)
            for sigma in SIGMAS:
                sigmas = torch.full((latents.shape[0],), sigma, device=latents.device)
                prediction = hooks.predict(pipeline, inputs, fm.add_noise(latents, noise, sigmas), sigmas)
                total += fm.flow_matching_loss(prediction, fm.flow_target(latents, noise), inputs.loss_mask).item()
                count += 1
    return total / count


@dataclass
class BestRecord:
    """The lowest validation loss so far and the step it was reached at (`best.json`)."""

    step: int
    val_loss: float

    @classmethod
    def read(cls, folder: Path) -> BestRecord | None:
        path = folder / BEST_RECORD
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(int(data["step"]), float(data["val_loss"]))

    def write(self, folder: Path) -> None:
        atomic_write_text(folder / BEST_RECORD, json.dumps({"step": self.step, "val_loss": self.val_loss}) + "\n")


def read_validation_prompts(path: str | None) -> tuple[str, ...]:
    """`--validation_prompts FILE`: one prompt per line (blank lines skipped); checked before any
    model loads."""
    from diffsynth.errors import UserError

    if not path:
        return ()
    try:
        prompts = tuple(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--validation_prompts {path}: cannot read it ({exc})") from None
    if not prompts:
        raise UserError(f"--validation_prompts {path}: no prompt in it (expected one prompt per line)")
    return prompts


def sample_size(config: TrainConfig, family: FamilySpec) -> tuple[int, int]:
    """The training resolution: --height/--width, else the square of --max_pixels, both rounded
    down to the family's multiple."""
    multiple = family.resolution_multiple
    if config.height and config.width:
        height, width = config.height, config.width
    else:
        height = width = int(config.max_pixels**0.5)
    return max(multiple, height // multiple * multiple), max(multiple, width // multiple * multiple)


def write_samples(hooks, pipeline: FamilyPipeline, context: RunContext, config: TrainConfig, family: FamilySpec,
                  prompts: tuple[str, ...], folder: Path, tensorboard=None, step: int = 0) -> list[Path]:  # fmt: skip
    """Each prompt through the family's inference pipeline with the weights as they are now (the
    LoRA live in the module; give it unwrapped modules: a DDP wrapper's forward would wait for the
    other processes), fixed seed: `folder/<i>.png` (`.mp4` for video) and `grid.png`, which also
    goes to TensorBoard when `tensorboard` (the accelerator) is given."""
    from PIL import Image

    from diffsynth.training.outputs import atomic_write
    from diffsynth.types import SampleRequest

    height, width = sample_size(config, family)
    request = SampleRequest(prompts=prompts, height=height, width=width, seed=config.seed,
                            num_frames=config.num_frames if family.makes_videos else None)  # fmt: skip
    devices = [pipeline.device] if pipeline.device is not None and pipeline.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):  # the training's RNG stays as it was
        result = hooks.sample_images(pipeline, request, context)
    written = []
    for i, frames in enumerate(result.frames):
        path = folder / (f"{i}.mp4" if len(frames) > 1 else f"{i}.png")
        atomic_write(path, partial(_write_frames, frames=frames, fps=result.fps or 16))
        written.append(path)
    firsts = [frames[0].convert("RGB") for frames in result.frames]
    grid = Image.new("RGB", (sum(f.width for f in firsts), max(f.height for f in firsts)), "white")
    x = 0
    for frame in firsts:
        grid.paste(frame, (x, 0))
        x += frame.width
    atomic_write(folder / "grid.png", partial(_write_frames, frames=[grid], fps=1))
    if tensorboard is not None:
        import numpy as np

        pixels = np.asarray(grid)[None]
        tensorboard.get_tracker("tensorboard").log_images({"samples": pixels}, step=step, dataformats="NHWC")
    return [*written, folder / "grid.png"]


def _write_frames(path: Path, frames: list, fps: int) -> None:
    """One frame as PNG, several as an MP4 video."""
    from diffsynth.sampling import write_video

    if len(frames) > 1:
        write_video(path, frames, fps)
    else:
        frames[0].save(path, format="PNG")


def validation_card_note(folder: Path, best: BestRecord | None) -> str:
    """Model card lines linking the loss curve, the best file and the newest samples."""
    lines = []
    if (folder / "loss.png").is_file():
        lines += ["![loss, smoothed loss and val_loss against steps](loss.png)"]
    if best is not None:
        lines += [f"Lowest validation loss {best.val_loss:.5g} at step {best.step}: `{BEST_STEM}*.safetensors`."]
    steps = sorted((p for p in (folder / "samples").glob("step-*") if (p / "grid.png").is_file()),
                   key=lambda p: int(p.name.removeprefix("step-")))  # fmt: skip
    if steps:
        lines += [f"Samples at step {steps[-1].name.removeprefix('step-')} (fixed seed; every validation step in "
                  f"`samples/`):", "", f"![samples]({steps[-1].relative_to(folder)}/grid.png)"]
    return "\n".join(["", "## Validation", "", *lines]) + "\n" if lines else ""
