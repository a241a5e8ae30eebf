"""Module configs for checkpoints: the sibling config.json when there is one, else each component's
fallback (the DiT's and VAE's inferred from the tensor shapes in the header; the text encoder has
none); plus the text encoder's saved -> in-memory key layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from diffsynth.plugin import CheckpointGroup, CheckpointHeader, ModelFiles, init_args


def _sibling_or(group: CheckpointGroup, fallback: Callable[[CheckpointGroup], dict[str, Any]]) -> dict[str, Any]:
    """The config.json next to `group`'s files (a repo folder), else `fallback(group)` (a bare file)."""
    return group.sibling_config() or fallback(group)


def dit_config(group: CheckpointGroup) -> dict[str, Any]:
    from diffusers import QwenImageTransformer2DModel

    return init_args(QwenImageTransformer2DModel, _sibling_or(group, lambda g: infer_dit_config(g.header)))


def infer_dit_config(header: CheckpointHeader) -> dict[str, Any]:
    """QwenImageTransformer2DModel arguments from weight shapes (a bare safetensors file)."""
    inner, in_channels = header.shape("img_in.weight")
    head_dim = header.shape("transformer_blocks.0.attn.norm_q.weight")[0]
    patch_size = 2  # Qwen-Image packs 2x2 latent patches; the weights can't tell it apart from channels
    return dict(
        patch_size=patch_size,
        in_channels=in_channels,
        out_channels=header.shape("proj_out.weight")[0] // (patch_size * patch_size),
        num_layers=header.count_indexed(r"transformer_blocks\.(\d+)\."),
        attention_head_dim=head_dim,
        num_attention_heads=inner // head_dim,
        joint_attention_dim=header.shape("txt_in.weight")[1],
        guidance_embeds=False,
        axes_dims_rope=rope_axes(head_dim),
        zero_cond_t=False,
        use_additional_t_cond=header.has("time_text_embed.addition_t_embedding.weight"),
        use_layer3d_rope=False,
    )


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """RoPE split (frame, height, width) of a head: the real model's 128 -> (16, 56, 56), i.e.
    1/8 for frames, rest halved; each part even, so 16 -> (4, 6, 6)."""
    frames = (head_dim // 8) & ~1
    if ((head_dim - frames) // 2) % 2:
        frames += 2
    side = (head_dim - frames) // 2
    return (frames, side, side)


#: model_index.json's pipeline class of Qwen-Image-Edit-2509 and -2511
EDIT_PLUS_PIPELINE = "QwenImageEditPlusPipeline"


def repo_pipeline_class(folder: Path | None) -> str | None:
    """`_class_name` of the model_index.json of the repo that `folder` (its transformer/ or
    processor/ folder, diffusers layout) belongs to, or None (a bare file, no model_index.json)."""
    if folder is None or not (folder / "config.json").is_file() and not (folder / "preprocessor_config.json").is_file():
        return None
    index = folder.parent / "model_index.json"
    return json.loads(index.read_text()).get("_class_name") if index.is_file() else None


def is_edit_plus(models: ModelFiles, zero_cond_t: bool) -> bool:
    """Whether the run's Edit model is an Edit Plus one (2509/2511: several references, the
    "Picture N:" prompt): its repo's model_index.json (next to the DiT, else to the processor when
    the DiT is not loaded, as in an encoder-cache run) names QwenImageEditPlusPipeline, or the DiT
    uses zero_cond_t (2511). A bare DiT file cannot tell: a list-valued edit_image column also
    selects Edit Plus (DiffSynth-Studio's rule)."""
    if zero_cond_t:
        return True
    dit = models.components.get("dit")
    folder = dit.files[0].parent if dit is not None else models.processor_path
    return repo_pipeline_class(Path(folder) if folder is not None else None) == EDIT_PLUS_PIPELINE


def vae_config(group: CheckpointGroup) -> dict[str, Any]:
    from diffusers import AutoencoderKLQwenImage

    return init_args(AutoencoderKLQwenImage, _sibling_or(group, _vae_widths))


def _vae_widths(group: CheckpointGroup) -> dict[str, Any]:
    """The real topology (AutoencoderKLQwenImage's defaults: dim_mult, res blocks, latents
    mean/std) with the widths read off the weights."""
    return dict(
        base_dim=group.header.shape("encoder.conv_in.weight")[0],
        z_dim=group.header.shape("post_quant_conv.weight")[0],
    )


def text_encoder_config(group: CheckpointGroup):
    from transformers import Qwen2_5_VLConfig

    # Qwen2.5-VL's many settings cannot be read off the weights
    return Qwen2_5_VLConfig.from_dict(group.required_config("Qwen2.5-VL text encoder", "text_encoder/"))


def text_encoder_keys(state: dict) -> dict:
    """Saved Qwen2.5-VL keys (`model.*`, `visual.*`, as in the real repo) -> the module's
    (`model.language_model.*`, `model.visual.*`); keys already in module layout pass through."""
    out = {}
    for key, value in state.items():
        if key.startswith("visual."):
            key = "model." + key
        elif key.startswith("model.") and not key.startswith(("model.language_model.", "model.visual.")):
            key = "model.language_model." + key.removeprefix("model.")
        out[key] = value
    return out
