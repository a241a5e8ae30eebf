"""The contract between the core and a model-family plugin (pluggy project "diffsynth").

A family is written as a subclass of `diffsynth.plugin.Family`, whose typed methods carry these
hooks (see docs/plugins.md). Per-family hooks take `family` (the family name) first and return
None for families they don't own, so several plugins live side by side and a third-party plugin
can override one step of an existing family with `@hookimpl(tryfirst=True)`. When no plugin
answers `compute_loss`, `split_state_dict` or `normalize_lora_state_dict`, the core's default
is used. Hooks receive a frozen `RunContext`, never the trainer's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import torch

    from diffsynth.spec import FamilySpec
    from diffsynth.training.flow_matching import FlowPredictor
    from diffsynth.types import FamilyPipeline, ModelFiles, OutputFile, RunContext, Sample, SampleRequest, SampleResult
    from diffsynth.types import TrainedWeights, TrainingInputs

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
def load_pipeline(family: str, models: ModelFiles, context: RunContext) -> FamilyPipeline | None:
    """Build the family's modules from identified checkpoint files, on CPU, in `context.dtype`.

    The core then sets the pipeline's `dtype` and `device`, moves the modules and applies
    freezing, LoRA and checkpointing. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def plan_pipeline(family: str, variant: str | None, context: RunContext) -> FamilyPipeline | None:
    """The real-size modules of `variant` (None: the family's first) built on the meta device,
    without weights, with whatever `preprocess_inputs` needs besides (tokenizers, processors),
    from the real configs the family ships. `diffsynth plan` runs one training step of it under
    fake tensors to measure memory. Stops at the first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def preprocess_inputs(
    family: str, pipeline: FamilyPipeline, sample: Sample, context: RunContext
) -> TrainingInputs | None:
    """Turn a raw sample (PIL images, prompt, extra inputs) into latents + conditioning.

    The core sets the grad mode (no grad unless an encoder is trained). Stops at the first
    non-None result.
    """


@hookspec(firstresult=True)
def collate_inputs(family: str, inputs: list[TrainingInputs]) -> TrainingInputs | None:
    """Several samples' inputs (from `preprocess_inputs`, one sample each, same training size)
    as one batch for `--batch_size`. Without an answer the core joins every tensor along its
    batch dimension, right-padding sequences of different lengths with zeros (pad masks the same
    way: 0 = no token). Stops at the first non-None result.
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
    context: RunContext,
    predict: FlowPredictor,
) -> torch.Tensor | None:
    """Scalar training loss. `predict(noisy_latents, sigmas)` is the family's `predict_flow`
    bound to this sample. Without an answer the core's flow-matching MSE is used; implement
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
    `--lora_checkpoint` and `--preset_lora_path`. Without an answer the file is used as it is.
    Stops at the first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def sample_images(
    family: str, pipeline: FamilyPipeline, request: SampleRequest, context: RunContext
) -> SampleResult | None:
    """Generate `request.prompts` with the family's real inference pipeline (e.g. a diffusers
    pipeline built around `pipeline.modules`, which the core has put on `pipeline.device` in
    `pipeline.dtype`), after applying `request.loras` through that pipeline's own LoRA loader.
    Returns a `SampleResult` (frames per prompt). Used by `diffsynth sample`. A family without
    it cannot be sampled. Stops at the first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def split_state_dict(
    family: str, weights: TrainedWeights, context: RunContext
) -> list[OutputFile] | None:
    """Trained parameters -> the files to write, with the key names other tools load
    (diffusers `load_lora_weights`, ComfyUI). Without an answer the core writes one file per
    component, the denoiser's LoRA in the family's `lora_key_format` (with alpha).
    Stops at the first non-None result.
    """
