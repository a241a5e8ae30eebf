"""LoRA files that load unchanged in diffusers and in ComfyUI.

Format: `diffusion_model.<module>.lora_A.weight`, `.lora_B.weight` and a scalar `.alpha` per module.
- diffusers (`QwenImageLoraLoaderMixin.lora_state_dict`) sends any file with `diffusion_model.`
  keys or `.alpha` keys through `_convert_non_diffusers_qwen_lora_to_diffusers`, which strips the
  prefix and folds alpha/rank into lora_A/lora_B, so the adapter it builds (alpha = rank) computes
  exactly our scale.
- ComfyUI maps `diffusion_model.<name>` for every model and reads `<name>.alpha` (scale
  alpha/rank; 1 when absent).
The alternative `transformer.*` + diffusers adapter metadata keeps alpha for diffusers only:
ComfyUI ignores that metadata and would apply scale 1. No diffusers `lora_adapter_metadata` is
written on purpose: with the alpha already folded in, diffusers would apply it twice.
"""

from __future__ import annotations

from diffsynth.config import TrainConfig
from diffsynth.training.lora_export import LoraKeyFormat, lora_output_files
from diffsynth.types import OutputFile, TrainedWeights

from .spec import NAME

KEY_FORMAT = LoraKeyFormat(
    prefix="diffusion_model.",
    description="diffusion_model.<module>.lora_A/lora_B.weight + .alpha",
)


def split(weights: TrainedWeights, config: TrainConfig) -> list[OutputFile] | None:
    """The DiT LoRA in the shared diffusers/ComfyUI format; other components keep their keys."""
    return lora_output_files(weights, config, NAME, "dit", KEY_FORMAT)
