"""The core's LoRA export: every trained component to files, the denoiser's LoRA in the
family's `LoraKeyFormat` (keys other tools load, with alpha), other components with their own
keys."""

from __future__ import annotations

from diffsynth.lora_format import LoraKeyFormat
from diffsynth.types import OutputFile, TrainedWeights


def lora_output_files(
    weights: TrainedWeights, family: str, denoiser: str, key_format: LoraKeyFormat
) -> list[OutputFile]:
    """One file per trained component (`-<component>` suffixes when there are several; a timestep
    expert's file has its expert's suffix, e.g. `_high_noise`): the denoiser's LoRA (and each
    expert's) in `key_format`, other components (and full fine-tunes) with the modules' own,
    diffusers-loadable keys."""
    single = len(weights.tensors) == 1
    files = []
    for component, tensors in weights.tensors.items():
        metadata = {"diffsynth_family": family, "diffsynth_component": component, "diffsynth_kind": weights.kind}
        expert_suffix = weights.expert_suffixes.get(component)
        if weights.kind == "lora":
            alpha = float(weights.lora_alpha if weights.lora_alpha is not None else weights.lora_rank or 1)
            metadata.update(lora_rank=str(weights.lora_rank), lora_alpha=str(alpha))
            if component == denoiser or expert_suffix is not None:
                tensors = key_format.keys(tensors, alpha)
                metadata["lora_key_format"] = key_format.description
        suffix = expert_suffix if expert_suffix is not None else "" if single else f"-{component}"
        files.append(OutputFile(suffix, tensors, metadata))
    return files
