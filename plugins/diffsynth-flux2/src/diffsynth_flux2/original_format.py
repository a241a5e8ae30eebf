"""Black Forest Labs' original FLUX.2 transformer names (the single `flux-2-*.safetensors`, also
ComfyUI's) <-> diffusers' Flux2Transformer2DModel names, for any width.

One table of *modules* serves the weights and the LoRA files: an original module holds one or
more diffusers modules stacked along the output dimension (`img_attn.qkv` = to_q, to_k, to_v),
and the final adaLN projection stores (shift, scale) where diffusers wants (scale, shift).
FLUX.2 has no biases; the q/k RMS norms are `*.scale` originally and `*.weight` in diffusers.
`*_to_diffusers` loads an original file; `*_to_original` writes one (`models init`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from diffsynth.plugin import UserError

from .spec import ORIGINAL_DOUBLE_BLOCK, ORIGINAL_SINGLE_BLOCK

#: ComfyUI saves the transformer under this prefix
COMFY_PREFIX = "model.diffusion_model."


@dataclass(frozen=True)
class ModuleMap:
    """One original Linear and the diffusers Linear(s) whose stacked rows it holds."""

    original: str
    parts: tuple[str, ...]
    swap_halves: bool = False


def count_blocks(keys, prefix: str) -> int:
    """How many `prefix.N.` blocks the keys hold (the highest N + 1)."""
    blocks = {int(m[1]) for k in keys if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", k))}
    return max(blocks) + 1 if blocks else 0


def linear_maps(num_double: int, num_single: int, guidance: bool) -> list[ModuleMap]:
    """Every Linear of a Flux2Transformer2DModel with these block counts."""
    top = {
        "img_in": "x_embedder",
        "txt_in": "context_embedder",
        "time_in.in_layer": "time_guidance_embed.timestep_embedder.linear_1",
        "time_in.out_layer": "time_guidance_embed.timestep_embedder.linear_2",
        "double_stream_modulation_img.lin": "double_stream_modulation_img.linear",
        "double_stream_modulation_txt.lin": "double_stream_modulation_txt.linear",
        "single_stream_modulation.lin": "single_stream_modulation.linear",
        "final_layer.linear": "proj_out",
    }
    if guidance:
        top["guidance_in.in_layer"] = "time_guidance_embed.guidance_embedder.linear_1"
        top["guidance_in.out_layer"] = "time_guidance_embed.guidance_embedder.linear_2"
    maps = [ModuleMap(o, (d,)) for o, d in top.items()]
    maps.append(ModuleMap("final_layer.adaLN_modulation.1", ("norm_out.linear",), swap_halves=True))
    for i in range(num_double):
        maps += [ModuleMap(f"double_blocks.{i}.{o}", tuple(f"transformer_blocks.{i}.{p}" for p in d)) for o, d in ORIGINAL_DOUBLE_BLOCK.items()]
    for i in range(num_single):
        maps += [ModuleMap(f"single_blocks.{i}.{o}", tuple(f"single_transformer_blocks.{i}.{p}" for p in d)) for o, d in ORIGINAL_SINGLE_BLOCK.items()]
    return maps


def norm_names(num_double: int, num_single: int) -> dict[str, str]:
    """Original q/k norm scale -> diffusers RMSNorm weight."""
    names = {}
    for i in range(num_double):
        for stream, q, k in (("img", "norm_q", "norm_k"), ("txt", "norm_added_q", "norm_added_k")):
            names[f"double_blocks.{i}.{stream}_attn.norm.query_norm.scale"] = f"transformer_blocks.{i}.attn.{q}.weight"
            names[f"double_blocks.{i}.{stream}_attn.norm.key_norm.scale"] = f"transformer_blocks.{i}.attn.{k}.weight"
    for i in range(num_single):
        names[f"single_blocks.{i}.norm.query_norm.scale"] = f"single_transformer_blocks.{i}.attn.norm_q.weight"
        names[f"single_blocks.{i}.norm.key_norm.scale"] = f"single_transformer_blocks.{i}.attn.norm_k.weight"
    return names


def swap_halves(t: torch.Tensor) -> torch.Tensor:
    first, second = t.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def is_original(keys) -> bool:
    return any(k.removeprefix(COMFY_PREFIX) == "single_stream_modulation.lin.weight" for k in keys)


def transformer_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original keys -> diffusers keys; fused rows split by the model width (from `img_in`)."""
    state = {k.removeprefix(COMFY_PREFIX): v for k, v in state.items()}
    double, single = count_blocks(state, "double_blocks"), count_blocks(state, "single_blocks")
    maps = linear_maps(double, single, "guidance_in.in_layer.weight" in state)
    norms = norm_names(double, single)
    expected = [f"{m.original}.weight" for m in maps] + list(norms)
    missing = [k for k in expected if k not in state]
    if missing:
        raise UserError(f"original FLUX.2 checkpoint lacks {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
    width = state["img_in.weight"].shape[0]
    out = {diffusers: state[original] for original, diffusers in norms.items()}
    for m in maps:
        weight = state[f"{m.original}.weight"]
        weight = swap_halves(weight) if m.swap_halves else weight
        for name, part in zip(m.parts, weight.split(width) if len(m.parts) > 1 else (weight,)):
            out[f"{name}.weight"] = part.contiguous()
    return out


def transformer_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers keys -> the original file's keys."""
    double, single = count_blocks(state, "transformer_blocks"), count_blocks(state, "single_transformer_blocks")
    maps = linear_maps(double, single, "time_guidance_embed.guidance_embedder.linear_1.weight" in state)
    out = {original: state[diffusers].contiguous() for original, diffusers in norm_names(double, single).items()}
    for m in maps:
        weight = torch.cat([state[f"{p}.weight"] for p in m.parts])
        out[f"{m.original}.weight"] = swap_halves(weight) if m.swap_halves else weight.contiguous()
    return out
