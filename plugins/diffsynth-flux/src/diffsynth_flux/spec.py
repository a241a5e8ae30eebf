"""The FLUX.1 family as plain data: components, detectors, sources, LoRA names, presets (no torch)."""

from __future__ import annotations

from diffsynth.plugin import CheckpointHeader, ComponentSpec, ExtraInputSpec, FamilyOption, FamilySpec, PresetSpec
from diffsynth.plugin import VariantSpec

NAME = "flux"
DEV_REPO = "black-forest-labs/FLUX.1-dev"
KONTEXT_REPO = "black-forest-labs/FLUX.1-Kontext-dev"

# DiffSynth-Studio's FLUX LoRA targets (the seed's list), in diffusers module names.
DEFAULT_LORA_TARGETS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj",
    "attn.to_out.0", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
    "ff_context.net.2", "norm1.linear", "norm1_context.linear", "proj_mlp", "proj_out", "norm.linear",
)  # fmt: skip

_IMG_QKV = ("attn.to_q", "attn.to_k", "attn.to_v")
_TXT_QKV = ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")
# Other tools' names -> diffusers suffixes. Matching is by suffix, so a name for a double-block
# q/k/v (`a_to_qkv`, `img_attn.qkv`) also wraps the single blocks' attn.to_q/k/v, and `proj_out`
# also wraps the final projection: diffusers names the two alike.
LORA_TARGET_ALIASES: dict[str, tuple[str, ...]] = {
    # DiffSynth-Studio (FluxDiT)
    "a_to_qkv": _IMG_QKV,
    "b_to_qkv": _TXT_QKV,
    "a_to_out": ("attn.to_out.0",),
    "b_to_out": ("attn.to_add_out",),
    "ff_a.0": ("ff.net.0.proj",),
    "ff_a.2": ("ff.net.2",),
    "ff_b.0": ("ff_context.net.0.proj",),
    "ff_b.2": ("ff_context.net.2",),
    "norm1_a.linear": ("norm1.linear",),
    "norm1_b.linear": ("norm1_context.linear",),
    "to_qkv_mlp": (*_IMG_QKV, "proj_mlp"),
    # Black Forest Labs' original names (flux1-dev.safetensors, ComfyUI, kohya)
    "img_attn.qkv": _IMG_QKV,
    "txt_attn.qkv": _TXT_QKV,
    "img_attn.proj": ("attn.to_out.0",),
    "txt_attn.proj": ("attn.to_add_out",),
    "img_mlp.0": ("ff.net.0.proj",),
    "img_mlp.2": ("ff.net.2",),
    "txt_mlp.0": ("ff_context.net.0.proj",),
    "txt_mlp.2": ("ff_context.net.2",),
    "img_mod.lin": ("norm1.linear",),
    "txt_mod.lin": ("norm1_context.linear",),
    "linear1": (*_IMG_QKV, "proj_mlp"),
    "linear2": ("proj_out",),
    "modulation.lin": ("norm.linear",),
}


def is_dit(header: CheckpointHeader) -> bool:
    """FluxTransformer2DModel: BFL's original keys (double_blocks/single_blocks, fused qkv) or
    diffusers' (transformer_blocks/single_transformer_blocks). `vector_in` (the CLIP pooled
    embedding's projection) tells a FLUX.1 BFL file from a FLUX.2 one, which has no CLIP."""
    bfl = header.has("img_in.weight", "txt_in.weight", "vector_in.in_layer.weight") and header.has_prefix(
        "double_blocks.0.img_attn.qkv."
    )
    diffusers = header.has("x_embedder.weight", "context_embedder.weight") and header.has_prefix(
        "single_transformer_blocks.0.attn.to_q."
    )
    return bfl or diffusers


def is_vae(header: CheckpointHeader) -> bool:
    """The FLUX autoencoder (BFL `ae.safetensors` or diffusers `vae/`): 2-D convolutions and a
    16-channel latent (the encoder outputs mean and log-variance: 32 channels)."""
    if not header.has("encoder.conv_in.weight", "decoder.conv_in.weight", "encoder.conv_out.weight"):
        return False
    return len(header.shape("encoder.conv_in.weight")) == 4 and header.shape("encoder.conv_out.weight")[0] == 32


def is_clip_text(header: CheckpointHeader) -> bool:
    """CLIP-L text encoder: `CLIPTextModel` keys as saved (`text_model.*`) or as held in memory."""
    saved = header.has("text_model.embeddings.token_embedding.weight")
    memory = header.has("embeddings.token_embedding.weight", "final_layer_norm.weight")
    return (saved or memory) and not header.has_prefix("vision_model.")


def is_t5_encoder(header: CheckpointHeader) -> bool:
    """T5-XXL encoder (transformers `T5EncoderModel` keys, sharded in the real repo)."""
    return header.has_prefix("encoder.block.0.layer.0.SelfAttention.") and not header.has_prefix("decoder.")


def _sources(dit: str) -> tuple[str, ...]:
    return (dit, f"{DEV_REPO}:text_encoder/model.safetensors", f"{DEV_REPO}:text_encoder_2/", f"{DEV_REPO}:ae.safetensors")


FAMILY = FamilySpec(
    name=NAME,
    description="FLUX.1-dev 12B rectified-flow MMDiT text-to-image, and FLUX.1-Kontext-dev (image + instruction).",
    components=(
        ComponentSpec("dit", "MMDiT denoiser (19 double + 38 single blocks)", is_dit, "diffusers.FluxTransformer2DModel"),
        # the CLIP tokenizer folder is --tokenizer_path; T5's is found from it (pipeline.py)
        ComponentSpec(
            "text_encoder", "CLIP-L text encoder (pooled embedding)", is_clip_text, "transformers.CLIPTextModel", tokenized=True
        ),
        ComponentSpec("text_encoder_2", "T5-XXL encoder (token embeddings)", is_t5_encoder, "transformers.T5EncoderModel"),
        ComponentSpec("vae", "16-channel image autoencoder", is_vae, "diffusers.AutoencoderKL"),
    ),
    variants=(
        VariantSpec(
            "dev",
            "FLUX.1-dev text-to-image (BFL single files, as DiffSynth-Studio loads them)",
            model_sources=_sources(f"{DEV_REPO}:flux1-dev.safetensors"),
            tokenizer_source=f"{DEV_REPO}:tokenizer/",
        ),
        VariantSpec(
            "kontext",
            "FLUX.1-Kontext-dev: the Kontext transformer with FLUX.1-dev's text encoders and autoencoder",
            model_sources=_sources(f"{KONTEXT_REPO}:flux1-kontext-dev.safetensors"),
            tokenizer_source=f"{DEV_REPO}:tokenizer/",
        ),
    ),
    default_lora_targets=DEFAULT_LORA_TARGETS,
    lora_target_aliases=LORA_TARGET_ALIASES,
    denoiser="dit",
    extra_inputs=(
        # training joins every reference; FluxKontextPipeline (sampling) takes one
        ExtraInputSpec(
            "kontext_images", "Reference image(s) for FLUX.1-Kontext, joined to the DiT's image tokens", "kontext", max_images=1
        ),
    ),
    presets=(
        PresetSpec("tiny", "Random ~2 MB FLUX.1-dev in the black-forest-labs/FLUX.1-dev layout (BFL files + diffusers folders)"),
        PresetSpec("tiny-kontext", "Random tiny FLUX.1-Kontext-dev in the black-forest-labs/FLUX.1-Kontext-dev layout"),
    ),
    options=(
        FamilyOption(
            "guidance", float, 1.0,
            "Embedded guidance the guidance-distilled DiT sees in training (DiffSynth-Studio uses 1.0).",
        ),
        FamilyOption(
            "align_to_opensource_format", bool, False,
            "Accepted for DiffSynth-Studio compatibility; LoRA files are always in the open (diffusers/ComfyUI) format.",
        ),
    ),
    resolution_multiple=16,
    repeated_blocks=("transformer_blocks", "single_transformer_blocks"),
)
