"""The core's LoRA export: every trained component to files, the denoiser's LoRA in the
family's `LoraKeyFormat` (keys other tools load, with alpha), other components with their own
keys."""

from __future__ import annotations

from diffsynth.lora_format import LoraKeyFormat
from diffsynth.types import OutputFile, TrainedWeights


def lora_output_files(
    weights: TrainedWeights, family: str, denoiser: str, key_format: LoraKeyFormat
) -> list[OutputFile]:
    """One file per trained component (`-<component>` suffixes when there are several): the
    denoiser's LoRA in `key_format`, other components (and full fine-tunes) with the modules'
    own, diffusers-loadable keys."""
    single = len(weights.tensors) == 1
    files = []
    for component, tensors in weights.tensors.items():
        metadata = {"diffsynth_family": family, "diffsynth_component": component, "diffsynth_kind": weights.kind}
        if weights.kind == "lora":
            alpha = float(weights.lora_alpha if weights.lora_alpha is not None else weights.lora_rank or 1)
            metadata.update(lora_rank=str(weights.lora_rank), lora_alpha=str(alpha))
            if component == denoiser:
                tensors = key_format.keys(tensors, alpha)
                metadata["lora_key_format"] = key_format.description
        files.append(OutputFile("" if single else f"-{component}", tensors, metadata))
    return files
