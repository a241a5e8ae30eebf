"""LoRA files with the original Wan key names, which load unchanged in ComfyUI and diffusers.

Format: `diffusion_model.<original module>.lora_A.weight`, `.lora_B.weight` and a scalar `.alpha`
(`diffusion_model.blocks.0.self_attn.q.lora_A.weight`, `...cross_attn.k...`, `...ffn.0...`).
- ComfyUI has no mapping for diffusers' Wan names; it maps `diffusion_model.<original name>`
  and reads `<name>.alpha` (scale alpha/rank).
- diffusers' `WanLoraLoaderMixin.lora_state_dict` sends `diffusion_model.*` keys through
  `_convert_non_diffusers_wan_lora_to_diffusers`, which renames them to `transformer.*` and folds
  alpha/rank into lora_A/lora_B.
"""

from __future__ import annotations

from typing import ClassVar

from diffsynth.plugin import LoraKeyFormat

from .convert import State, dit_name_to_original


class LoraFormat:
    """The family's LoRA key format (written) and `normalize_lora_state_dict` (read)."""

    # original names: ComfyUI maps only those for Wan; diffusers converts them
    lora_key_format: ClassVar[LoraKeyFormat] = LoraKeyFormat(
        rename=dit_name_to_original, description="diffusion_model.<original Wan module>.lora_A/lora_B.weight + .alpha"
    )

    def normalize_lora_state_dict(self, state_dict: State, metadata: dict[str, str]) -> State:
        """A Wan LoRA with original names (ours, ComfyUI's, musubi-tuner's
        `diffusion_model.blocks.N.self_attn.q`), kohya spellings or diffusers names -> diffusers
        `WanTransformer3DModel` names, through diffusers' own Wan converter (which folds alpha/rank
        into the weights)."""
        from diffusers import WanPipeline

        return dict(WanPipeline.lora_state_dict(dict(state_dict)))
