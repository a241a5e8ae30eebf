"""Core defaults for the per-family hooks, registered `trylast` so any family can override them.

Import-light: heavy modules are imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffsynth.hookspecs import hookimpl

if TYPE_CHECKING:
    import torch

    from diffsynth.config import TrainConfig
    from diffsynth.training.flow_matching import FlowPredictor
    from diffsynth.types import (
        FamilyPipeline,
        OutputFile,
        TrainedWeights,
        TrainingInputs,
    )


@hookimpl(trylast=True)
def compute_loss(
    pipeline: FamilyPipeline, inputs: TrainingInputs, config: TrainConfig, predict: FlowPredictor
) -> torch.Tensor:
    """Flow-matching MSE: noise the latents at a sigma from the family's schedule and regress
    the network's prediction onto `noise - latents`."""
    import torch

    from diffsynth.training import flow_matching as fm

    latents = inputs.latents
    sigmas = pipeline.schedule.sample_training_sigmas(
        latents.shape[0],
        min_boundary=config.min_timestep_boundary,
        max_boundary=config.max_timestep_boundary,
    ).to(latents.device)
    noise = torch.randn_like(latents)
    noisy = fm.add_noise(latents, noise, sigmas)
    prediction = predict(noisy, sigmas)
    return fm.flow_matching_loss(prediction, fm.flow_target(latents, noise), inputs.loss_mask)


@hookimpl(trylast=True)
def split_state_dict(family: str, weights: TrainedWeights, config: TrainConfig) -> list[OutputFile]:
    """One file per trained component, keys unchanged; a single component gets no suffix."""
    from diffsynth.types import OutputFile

    files = []
    single = len(weights.tensors) == 1
    for component, tensors in weights.tensors.items():
        metadata = {"diffsynth_component": component, "diffsynth_kind": weights.kind}
        if weights.kind == "lora":
            metadata.update(lora_rank=str(weights.lora_rank), lora_alpha=str(weights.lora_alpha))
        files.append(OutputFile("" if single else f"-{component}", tensors, metadata))
    return files


@hookimpl(trylast=True)
def normalize_lora_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """No family-specific names: the core's generic normalisation does the rest."""
    return state_dict
