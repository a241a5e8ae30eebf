"""LoRA files that load unchanged in diffusers and in ComfyUI.

Format: `transformer.<diffusers module>.lora_A.weight`, `.lora_B.weight` and a scalar `.alpha`
per module (alpha / rank = the trained scale).
- diffusers (`FluxLoraLoaderMixin`, also FluxKontextPipeline) keeps only `transformer.*` keys
  for FLUX; it pops every `*.alpha` into `network_alphas` and builds the adapter with those
  alphas, so the scale is exactly ours (checked in tests/test_lora_export.py).
- ComfyUI maps `transformer.<diffusers name>` onto its fused FLUX weights (`img_attn.qkv`,
  `linear1`, ...) with row offsets, and reads `<name>.alpha` (scale alpha/rank; 1 if absent).
The alternatives fail one of them: `diffusion_model.*` keys with lora_A/B load nothing in
diffusers for FLUX; adapter metadata alone keeps the scale in diffusers but not in ComfyUI.
"""

from __future__ import annotations

import torch

from diffsynth.config import TrainConfig
from diffsynth.errors import PluginError
from diffsynth.types import OutputFile, TrainedWeights

PREFIX = "transformer."
LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight")


def split(weights: TrainedWeights, config: TrainConfig) -> list[OutputFile] | None:
    """The DiT LoRA in the shared diffusers/ComfyUI format; other components keep their keys.
    Full fine-tunes -> None (the core default writes diffusers keys, which load into
    `FluxTransformer2DModel` as they are)."""
    if weights.kind != "lora" or "dit" not in weights.tensors:
        return None
    alpha = float(weights.lora_alpha if weights.lora_alpha is not None else config.effective_lora_alpha())
    single = len(weights.tensors) == 1
    files = []
    for component, tensors in weights.tensors.items():
        metadata = {
            "diffsynth_family": "flux",
            "diffsynth_component": component,
            "diffsynth_kind": "lora",
            "lora_rank": str(weights.lora_rank),
            "lora_alpha": str(alpha),
        }
        if component == "dit":
            tensors = to_diffusers_comfy(tensors, alpha)
            metadata["lora_key_format"] = "transformer.<module>.lora_A/lora_B.weight + .alpha"
        files.append(OutputFile("" if single else f"-{component}", tensors, metadata))
    return files


def to_diffusers_comfy(peft_tensors: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
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


def normalize(state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    """A FLUX LoRA in any layout diffusers reads (BFL `diffusion_model.double_blocks...` with fused
    qkv, kohya `lora_unet_double_blocks_...`, XLabs, diffusers/ours) -> diffusers module names,
    through diffusers' own converters; the alphas it returns separately go back in as `.alpha`."""
    from diffusers import FluxPipeline

    converted, alphas = FluxPipeline.lora_state_dict(dict(state_dict), return_alphas=True)
    converted = dict(converted)
    for key, alpha in (alphas or {}).items():
        converted[key if key.endswith(".alpha") else f"{key}.alpha"] = torch.tensor(float(alpha))
    return converted
