"""Module configs: the sibling config.json when there is one (diffusers layout), else inferred
from tensor shapes (BFL single files carry no config)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from diffsynth.plugin import CheckpointGroup, init_args

from .original_format import block_count

# FLUX.1's vae/config.json: the latent normalisation `ae.safetensors` itself does not store.
FLUX_VAE_SCALING = 0.3611
FLUX_VAE_SHIFT = 0.1159
#: safetensors metadata keys a (tiny) `ae.safetensors` may use to carry its own normalisation
VAE_METADATA_KEYS = ("scaling_factor", "shift_factor")


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """RoPE split (index, height, width) of a head: the real 128 -> (16, 56, 56), 16 -> (4, 6, 6)."""
    first = (head_dim // 8) & ~1
    if ((head_dim - first) // 2) % 2:
        first += 2
    side = (head_dim - first) // 2
    return (first, side, side)


def dit_config(group: CheckpointGroup, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """FluxTransformer2DModel arguments: config.json next to diffusers shards, else from the
    (diffusers-keyed) weights."""
    from diffusers import FluxTransformer2DModel

    found = group.sibling_config()
    if found and found.get("_class_name") == "FluxTransformer2DModel":
        return init_args(FluxTransformer2DModel, found)
    inner, in_channels = state["x_embedder.weight"].shape
    head_dim = state["transformer_blocks.0.attn.norm_q.weight"].shape[0]
    return dict(
        patch_size=1,  # FLUX packs 2x2 latent patches before the DiT: x_embedder sees 64 channels
        in_channels=in_channels,
        out_channels=None if state["proj_out.weight"].shape[0] == in_channels else state["proj_out.weight"].shape[0],
        num_layers=block_count(state, "transformer_blocks"),
        num_single_layers=block_count(state, "single_transformer_blocks"),
        attention_head_dim=head_dim,
        num_attention_heads=inner // head_dim,
        joint_attention_dim=state["context_embedder.weight"].shape[1],
        pooled_projection_dim=state["time_text_embed.text_embedder.linear_1.weight"].shape[1],
        guidance_embeds="time_text_embed.guidance_embedder.linear_1.weight" in state,
        axes_dims_rope=list(rope_axes(head_dim)),
    )


def vae_config(group: CheckpointGroup, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """AutoencoderKL arguments: config.json next to `vae/` weights, else the FLUX autoencoder's
    topology with widths read off the (diffusers-keyed) weights."""
    from diffusers import AutoencoderKL

    found = group.sibling_config()
    if found and found.get("_class_name") == "AutoencoderKL":
        return init_args(AutoencoderKL, found)
    levels = block_count(state, "encoder.down_blocks")
    widths = [state[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(levels)]
    meta = group.header.metadata
    return dict(
        in_channels=state["encoder.conv_in.weight"].shape[1],
        out_channels=state["decoder.conv_out.weight"].shape[0],
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        block_out_channels=widths,
        layers_per_block=block_count(state, "encoder.down_blocks.0.resnets"),
        latent_channels=state["encoder.conv_out.weight"].shape[0] // 2,  # mean and log-variance
        norm_num_groups=math.gcd(32, *widths),  # 32 for the real widths; group count is not in the weights
        sample_size=1024,
        scaling_factor=float(meta.get("scaling_factor", FLUX_VAE_SCALING)),
        shift_factor=float(meta.get("shift_factor", FLUX_VAE_SHIFT)),
        use_quant_conv="quant_conv.weight" in state,
        use_post_quant_conv="post_quant_conv.weight" in state,
        mid_block_add_attention="encoder.mid_block.attentions.0.to_q.weight" in state,
    )


def text_config(group: CheckpointGroup, config_class):
    """transformers config of a text encoder: its folder's config.json is required."""
    return config_class.from_dict(group.required_config("text encoder weights", "text_encoder/ or text_encoder_2/"))
