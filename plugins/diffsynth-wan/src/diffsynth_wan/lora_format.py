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

import torch

from diffsynth.config import TrainConfig
from diffsynth.errors import PluginError
from diffsynth.types import OutputFile, TrainedWeights

from .convert import dit_name_to_original

PREFIX = "diffusion_model."
LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight")


def split(weights: TrainedWeights, config: TrainConfig) -> list[OutputFile] | None:
    """The DiT LoRA in original Wan names; other components keep their keys. Full fine-tunes ->
    None (the core default writes the diffusers module's own keys)."""
    if weights.kind != "lora" or "dit" not in weights.tensors:
        return None
    alpha = float(weights.lora_alpha if weights.lora_alpha is not None else config.effective_lora_alpha())
    single = len(weights.tensors) == 1
    files = []
    for component, tensors in weights.tensors.items():
        metadata = {
            "diffsynth_family": "wan",
            "diffsynth_component": component,
            "diffsynth_kind": "lora",
            "lora_rank": str(weights.lora_rank),
            "lora_alpha": str(alpha),
        }
        if component == "dit":
            tensors = to_original_lora(tensors, alpha)
            metadata["lora_key_format"] = "diffusion_model.<original Wan module>.lora_A/lora_B.weight + .alpha"
        files.append(OutputFile("" if single else f"-{component}", tensors, metadata))
    return files


def to_original_lora(peft_tensors: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """peft names without adapter (`blocks.0.attn1.to_q.lora_A.weight`) -> our format."""
    out: dict[str, torch.Tensor] = {}
    modules = set()
    for key, tensor in peft_tensors.items():
        if not key.endswith(LORA_SUFFIXES):
            raise PluginError(f"unexpected LoRA tensor {key!r} (expected *.lora_A.weight / *.lora_B.weight)")
        module, suffix = key.rsplit(".", 2)[0], "." + ".".join(key.rsplit(".", 2)[1:])
        name = dit_name_to_original(module)
        out[PREFIX + name + suffix] = tensor.contiguous()
        modules.add(name)
    for name in sorted(modules):
        out[f"{PREFIX}{name}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
    return out


def normalize(state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    """A Wan LoRA with original names (ours, ComfyUI's, musubi-tuner's `diffusion_model.blocks.N.self_attn.q`),
    kohya spellings or diffusers names -> diffusers `WanTransformer3DModel` names, through
    diffusers' own Wan converter (which folds alpha/rank into the weights)."""
    from diffusers import WanPipeline

    return dict(WanPipeline.lora_state_dict(dict(state_dict)))
