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

from typing import ClassVar

import torch

from diffsynth.plugin import LoraKeyFormat


class LoraFormat:
    """The family's LoRA files: `lora_key_format` (what it writes) and `normalize_lora_state_dict`
    (what it reads)."""

    # diffusers' FLUX loader keeps only `transformer.*` keys; ComfyUI maps them onto its fused
    # weights (see tests/test_lora_export.py)
    lora_key_format: ClassVar[LoraKeyFormat] = LoraKeyFormat(
        "transformer.", description="transformer.<module>.lora_A/lora_B.weight + .alpha"
    )

    def normalize_lora_state_dict(
        self, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]
    ) -> dict[str, torch.Tensor]:
        """A FLUX LoRA in any layout diffusers reads (BFL `diffusion_model.double_blocks...` with fused
        qkv, kohya `lora_unet_double_blocks_...`, XLabs, diffusers/ours) -> diffusers module names,
        through diffusers' own converters; the alphas it returns separately go back in as `.alpha`."""
        from diffusers import FluxPipeline

        converted, alphas = FluxPipeline.lora_state_dict(dict(state_dict), return_alphas=True)
        converted = dict(converted)
        for key, alpha in (alphas or {}).items():
            converted[key if key.endswith(".alpha") else f"{key}.alpha"] = torch.tensor(float(alpha))
        return converted
