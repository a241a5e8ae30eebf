"""LoRA files in Black Forest Labs' original module names, which diffusers' Flux2 pipelines and
ComfyUI both load unchanged.

Format: `diffusion_model.<original module>.lora_A.weight` / `.lora_B.weight` (the ai-toolkit
layout), the trained scale alpha/rank folded into lora_B, no `.alpha` keys:
- diffusers (`Flux2LoraLoaderMixin.lora_state_dict`) converts `diffusion_model.*` keys with
  `_convert_non_diffusers_flux2_lora_to_diffusers`, which refuses any key it does not map (an
  `.alpha` would be one) and loads each module at scale 1 (alpha = rank);
- ComfyUI maps `diffusion_model.<key>` onto the model's own (original-named) weight, and without
  an `.alpha` applies B @ A at scale 1.
A fused original Linear (`double_blocks.N.img_attn.qkv` = to_q, to_k, to_v) gets A = the parts'
A stacked and B = their B block-diagonal: exact in ComfyUI (one product) and in diffusers (which
gives every part the whole A and its own rows of B). `final_layer.adaLN_modulation.1` keeps BFL's
(shift, scale) row order: right in ComfyUI, swapped in diffusers, whose converter maps it as is
(it is not a default target).
"""

from __future__ import annotations

import re

import torch

from diffsynth.plugin import OutputFile, RunContext, TrainedWeights, UserError

from . import original_format

PREFIX = "diffusion_model."
DESCRIPTION = "diffusion_model.<BFL module>.lora_A/lora_B.weight, alpha/rank folded into lora_B"


def _block_counts(names) -> tuple[int, int]:
    def count(pattern: str) -> int:
        found = [int(m[1]) for n in names if (m := re.match(pattern, n))]
        return max(found) + 1 if found else 0

    return count(r"(?:transformer_blocks|double_blocks)\.(\d+)\."), count(r"(?:single_transformer_blocks|single_blocks)\.(\d+)\.")


def to_original(tensors: dict[str, torch.Tensor], rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """peft keys (`transformer_blocks.0.attn.to_q.lora_A.weight`) -> this module's file format."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        module, part, _ = key.rsplit(".", 2)
        layers.setdefault(module, {})[part] = tensor
    scale = alpha / rank
    out: dict[str, torch.Tensor] = {}
    mapped = set()
    for m in original_format.linear_maps(*_block_counts(layers), guidance=True):
        present = [p for p in m.parts if p in layers]
        if not present:
            continue
        mapped.update(present)
        a = torch.cat([layers[p]["lora_A"] for p in present])
        rows = layers[present[0]]["lora_B"].shape[0]  # every part of a fused Linear has the model width
        b = torch.zeros(rows * len(m.parts), a.shape[0], dtype=a.dtype)
        col = 0
        for i, name in enumerate(m.parts):
            if name in layers:
                part = layers[name]["lora_B"]
                b[i * rows : (i + 1) * rows, col : col + part.shape[1]] = part * scale
                col += part.shape[1]
        if m.swap_halves:
            b = original_format.swap_halves(b)
        out[f"{PREFIX}{m.original}.lora_A.weight"] = a.contiguous()
        out[f"{PREFIX}{m.original}.lora_B.weight"] = b.contiguous()
    unmapped = sorted(set(layers) - mapped)
    if unmapped:
        raise UserError(f"--lora_target_modules: no original FLUX.2 name for {', '.join(unmapped[:3])} (LoRA export)")
    return out


class LoraFiles:
    """The family's LoRA files in this format: `split_state_dict` writes them (diffusers' FLUX.2
    loader and ComfyUI read BFL's names), `normalize_lora_state_dict` reads them."""

    def split_state_dict(self, weights: TrainedWeights, context: RunContext) -> list[OutputFile]:
        """One file per trained component: the denoiser's LoRA in this format, anything else (a text
        encoder LoRA, full fine-tunes) with the module's own keys."""
        family, denoiser = self.spec.name, self.spec.denoiser  # type: ignore[attr-defined]  # the family's
        files = []
        for component, tensors in weights.tensors.items():
            metadata = {"diffsynth_family": family, "diffsynth_component": component, "diffsynth_kind": weights.kind}
            if weights.kind == "lora":
                rank = int(weights.lora_rank or 1)
                alpha = float(weights.lora_alpha if weights.lora_alpha is not None else rank)
                metadata.update(lora_rank=str(rank), lora_alpha=str(alpha))
                if component == denoiser:
                    tensors = to_original(tensors, rank, alpha)
                    # the scale is in lora_B now: readers that take alpha from here see scale 1
                    metadata.update(lora_alpha=str(float(rank)), trained_lora_alpha=str(alpha), lora_key_format=DESCRIPTION)
            files.append(OutputFile("" if len(weights.tensors) == 1 else f"-{component}", tensors, metadata))
        return files

    def normalize_lora_state_dict(self, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, torch.Tensor]:
        """A LoRA in original names (ours, ai-toolkit's, ComfyUI's) -> diffusers module names, a fused
        Linear split back into its parts: exactly when B is block-diagonal (our export), else every
        part keeps the whole A and its own rows of B (what diffusers' converter does)."""
        if not any(k.startswith(PREFIX) for k in state_dict):
            return state_dict
        stripped = {k.removeprefix(PREFIX): v for k, v in state_dict.items()}
        out: dict[str, torch.Tensor] = {}
        known = set()
        for m in original_format.linear_maps(*_block_counts(stripped), guidance=True):
            a, b = stripped.get(f"{m.original}.lora_A.weight"), stripped.get(f"{m.original}.lora_B.weight")
            if a is None or b is None:
                continue
            known.update({f"{m.original}.lora_A.weight", f"{m.original}.lora_B.weight", f"{m.original}.alpha"})
            b = original_format.swap_halves(b) if m.swap_halves else b
            n = len(m.parts)
            rows, cols = b.shape[0] // n, a.shape[0] // n
            block_diagonal = a.shape[0] % n == 0 and all(
                not b[i * rows : (i + 1) * rows].index_fill(1, torch.arange(i * cols, (i + 1) * cols), 0).any() for i in range(n)
            )
            for i, name in enumerate(m.parts):
                b_i = b[i * rows : (i + 1) * rows]
                a_i = a
                if n > 1 and block_diagonal:
                    a_i, b_i = a[i * cols : (i + 1) * cols], b_i[:, i * cols : (i + 1) * cols]
                out[f"{name}.lora_A.weight"], out[f"{name}.lora_B.weight"] = a_i.contiguous(), b_i.contiguous()
                if f"{m.original}.alpha" in stripped:
                    out[f"{name}.alpha"] = stripped[f"{m.original}.alpha"]
        unknown = sorted(set(stripped) - known)
        if unknown:
            raise UserError(f"LoRA file: no FLUX.2 module for {', '.join(unknown[:3])}")
        return out
