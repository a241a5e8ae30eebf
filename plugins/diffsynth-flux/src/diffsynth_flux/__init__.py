"""FLUX.1-dev (+ Kontext) family for diffsynth.

This is the entry-point module: it stays light (no torch, diffusers, transformers or peft at
import) so `diffsynth models list` is fast. Each hook imports its heavy module on first call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from diffsynth.hookspecs import hookimpl

from .spec import FAMILY, NAME

if TYPE_CHECKING:
    import torch

    from diffsynth.config import TrainConfig
    from diffsynth.spec import FamilySpec
    from diffsynth.types import (
        FamilyPipeline,
        ModelFiles,
        OutputFile,
        Sample,
        TrainedWeights,
        TrainingInputs,
    )

__all__ = [
    "NAME",
    "FAMILY",
    "register_families",
    "init_model",
    "load_pipeline",
    "preprocess_inputs",
    "predict_flow",
    "split_state_dict",
]


@hookimpl
def register_families(register: Callable[[FamilySpec], None]) -> None:
    register(FAMILY)


@hookimpl
def init_model(family: str, preset: str, directory: Path, seed: int) -> bool | None:
    if family != NAME:
        return None
    from .tiny import write_preset

    write_preset(preset, Path(directory), seed)
    return True


@hookimpl
def load_pipeline(family: str, models: ModelFiles, config: TrainConfig) -> FamilyPipeline | None:
    if family != NAME:
        return None
    from .pipeline import load

    return load(models, config)


@hookimpl
def preprocess_inputs(
    family: str, pipeline: FamilyPipeline, sample: Sample, config: TrainConfig
) -> TrainingInputs | None:
    if family != NAME:
        return None
    from .inputs import preprocess

    return preprocess(pipeline, sample, config)


@hookimpl
def predict_flow(
    family: str,
    pipeline: FamilyPipeline,
    inputs: TrainingInputs,
    noisy_latents: torch.Tensor,
    sigmas: torch.Tensor,
) -> torch.Tensor | None:
    if family != NAME:
        return None
    from .inputs import predict

    return predict(pipeline, inputs, noisy_latents, sigmas)


@hookimpl
def split_state_dict(family: str, weights: TrainedWeights, config: TrainConfig) -> list[OutputFile] | None:
    if family != NAME:
        return None
    from .lora_format import split

    return split(weights, config)
