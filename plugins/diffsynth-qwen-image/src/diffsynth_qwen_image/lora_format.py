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

import torch

from diffsynth.config import TrainConfig
from diffsynth.errors import PluginError
from diffsynth.types import OutputFile, TrainedWeights

PREFIX = "diffusion_model."
LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight")


def split(weights: TrainedWeights, config: TrainConfig) -> list[OutputFile] | None:
    """The DiT LoRA in the shared diffusers/ComfyUI format; other components keep their keys.
    Full fine-tunes -> None (the core default writes the module's own, diffusers-loadable keys)."""
    if weights.kind != "lora" or "dit" not in weights.tensors:
        return None
    alpha = float(weights.lora_alpha if weights.lora_alpha is not None else config.effective_lora_alpha())
    single = len(weights.tensors) == 1
    files = []
    for component, tensors in weights.tensors.items():
        metadata = {
            "diffsynth_family": "qwen-image",
            "diffsynth_component": component,
            "diffsynth_kind": "lora",
            "lora_rank": str(weights.lora_rank),
            "lora_alpha": str(alpha),
        }
        if component == "dit":
            tensors = to_comfy_diffusers(tensors, alpha)
            metadata["lora_key_format"] = "diffusion_model.<module>.lora_A/lora_B.weight + .alpha"
        files.append(OutputFile("" if single else f"-{component}", tensors, metadata))
    return files


def to_comfy_diffusers(peft_tensors: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """peft names without adapter (`transformer_blocks.0.attn.to_q.lora_A.weight`) -> our format."""
    out: dict[str, torch.Tensor] = {}
    modules = set()
    for key, tensor in peft_tensors.items():
        if not key.endswith(LORA_SUFFIXES):
            raise PluginError(f"unexpected LoRA tensor {key!r} (expected *.lora_A.weight / *.lora_B.weight)")
        out[PREFIX + key] = tensor.contiguous()
        modules.add(key.rsplit(".", 2)[0])
    for module in sorted(modules):
        out[f"{PREFIX}{module}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
    return out
