"""The contract between the core and a model-family plugin (pluggy project "diffsynth").

Per-family hooks take `family` (the family name) first and return None for families they
don't own, so several plugins can live side by side and a third-party plugin can override one
step of an existing family with `@hookimpl(tryfirst=True)`. Implementations may accept fewer
arguments than the spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import torch

    from diffsynth.config import TrainConfig
    from diffsynth.spec import FamilySpec
    from diffsynth.training.flow_matching import FlowPredictor
    from diffsynth.types import (
        FamilyPipeline,
        ModelFiles,
        OutputFile,
        Sample,
        TrainedWeights,
        TrainingInputs,
    )

PROJECT = "diffsynth"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------------------------
# Registration (called for every plugin; must not import torch)
# ---------------------------------------------------------------------------------------------


@hookspec
def register_families(register: Callable[[FamilySpec], None]) -> None:
    """Call `register(FamilySpec(...))` once per family this plugin provides."""


# ---------------------------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def init_model(family: str, preset: str, directory: Path, seed: int) -> bool | None:
    """Write a random model of `preset` to `directory` in the real repo's on-disk layout.

    Returns True when written. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def load_pipeline(family: str, models: ModelFiles, config: TrainConfig) -> FamilyPipeline | None:
    """Build the family's modules from identified checkpoint files, on CPU, in `config.dtype`.

    The core then moves them to the device and applies freezing, LoRA and checkpointing.
    Stops at the first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def preprocess_inputs(
    family: str, pipeline: FamilyPipeline, sample: Sample, config: TrainConfig
) -> TrainingInputs | None:
    """Turn a raw sample (PIL images, prompt, extra inputs) into latents + conditioning.

    Runs under `torch.no_grad()` for frozen encoders. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def predict_flow(
    family: str,
    pipeline: FamilyPipeline,
    inputs: TrainingInputs,
    noisy_latents: torch.Tensor,
    sigmas: torch.Tensor,
) -> torch.Tensor | None:
    """Run the denoiser: predict the flow `noise - latents` at noise level `sigmas` (B,).

    Used by the core's default loss and by the sampler. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def compute_loss(
    family: str,
    pipeline: FamilyPipeline,
    inputs: TrainingInputs,
    config: TrainConfig,
    predict: FlowPredictor,
) -> torch.Tensor | None:
    """Scalar training loss. `predict(noisy_latents, sigmas)` is the family's `predict_flow`
    bound to this sample. The core provides a `trylast` flow-matching MSE default; implement
    this only for a different objective. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def normalize_lora_state_dict(
    family: str, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]
) -> dict[str, torch.Tensor] | None:
    """Convert a LoRA file in the family's original-format names (e.g. the original repo's or a
    fused-qkv layout) to the denoiser's module names, keys ending `.lora_A.weight`,
    `.lora_B.weight` (and optionally `.alpha`). Return the input unchanged when it is already in
    such names; the core then handles prefixes, adapter names and kohya spellings. Used by
    `--lora_checkpoint` and `--preset_lora_path`. Stops at the first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def split_state_dict(
    family: str, weights: TrainedWeights, config: TrainConfig
) -> list[OutputFile] | None:
    """Trained parameters -> the files to write, with the key names other tools load
    (diffusers `load_lora_weights`, ComfyUI). The core provides a `trylast` default that
    writes one file per component with the keys unchanged. Stops at the first non-None result.
    """
