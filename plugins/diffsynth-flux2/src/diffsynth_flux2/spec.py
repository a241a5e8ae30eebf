"""The FLUX.2 family as plain data: components, detectors, sources, LoRA names, presets (no torch)."""

from __future__ import annotations

from diffsynth.plugin import CheckpointHeader, ComponentSpec, ExtraInputSpec, FamilyOption
from diffsynth.plugin import FamilySpec, PresetSpec, VariantSpec

NAME = "flux2"
ORG = "black-forest-labs"
KLEIN_4B = f"{ORG}/FLUX.2-klein-4B"
KLEIN_BASE_4B = f"{ORG}/FLUX.2-klein-base-4B"
KLEIN_9B = f"{ORG}/FLUX.2-klein-9B"
KLEIN_BASE_9B = f"{ORG}/FLUX.2-klein-base-9B"
DEV = f"{ORG}/FLUX.2-dev"
#: BFL's single transformer file at the root of each repo (the diffusers folders sit beside it)
ORIGINAL_FILES = {
    KLEIN_4B: "flux-2-klein-4b.safetensors",
    KLEIN_BASE_4B: "flux-2-klein-base-4b.safetensors",
    KLEIN_9B: "flux-2-klein-9b.safetensors",
    KLEIN_BASE_9B: "flux-2-klein-base-9b.safetensors",
    DEV: "flux2-dev.safetensors",
}
#: DiffSynth-Studio trains FLUX.2-dev's guidance-distilled DiT at embedded guidance 1.0
#: (examples/flux2/model_training/train.py: "embedded_guidance": 1.0)
DEFAULT_GUIDANCE = 1.0
EDIT = "edit_image"

# The single blocks' fused output Linear, one name per block: a bare `attn.to_out` suffix would also
# name the double blocks' `attn.to_out` ModuleList, which peft cannot wrap. DiffSynth-Studio's
# commands list them so; 48 covers every FLUX.2 (names past a model's last block match nothing).
SINGLE_BLOCK_OUTPUTS = tuple(f"single_transformer_blocks.{i}.attn.to_out" for i in range(48))
# DiffSynth-Studio's FLUX.2 LoRA targets (examples/flux2/model_training/lora/*.sh), in diffusers
# module names: every attention and MLP projection of both block kinds.
DEFAULT_LORA_TARGETS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
    "attn.add_v_proj", "attn.to_add_out", "ff.linear_in", "ff.linear_out", "ff_context.linear_in",
    "ff_context.linear_out", "attn.to_qkv_mlp_proj", *SINGLE_BLOCK_OUTPUTS,
)  # fmt: skip

# Black Forest Labs' original Linear names (the single .safetensors, ComfyUI) in a double / single
# block -> the diffusers modules whose rows they stack (original_format.py maps whole files by them).
ORIGINAL_DOUBLE_BLOCK = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "img_attn.proj": ("attn.to_out.0",),
    "txt_attn.proj": ("attn.to_add_out",),
    "img_mlp.0": ("ff.linear_in",),
    "img_mlp.2": ("ff.linear_out",),
    "txt_mlp.0": ("ff_context.linear_in",),
    "txt_mlp.2": ("ff_context.linear_out",),
}
ORIGINAL_SINGLE_BLOCK = {"linear1": ("attn.to_qkv_mlp_proj",), "linear2": ("attn.to_out",)}
LORA_TARGET_ALIASES: dict[str, tuple[str, ...]] = {**ORIGINAL_DOUBLE_BLOCK, **ORIGINAL_SINGLE_BLOCK, "linear2": SINGLE_BLOCK_OUTPUTS}


def is_dit(header: CheckpointHeader) -> bool:
    """Flux2Transformer2DModel: diffusers keys (fused `to_qkv_mlp_proj` single blocks) or BFL's
    original ones (shared `single_stream_modulation`, which FLUX.1 files do not have)."""
    diffusers = header.has("x_embedder.weight", "context_embedder.weight") and header.has_prefix(
        "single_transformer_blocks.0.attn.to_qkv_mlp_proj."
    )
    original = header.has("img_in.weight", "single_stream_modulation.lin.weight")
    return diffusers or original


def is_qwen3(header: CheckpointHeader) -> bool:
    """Qwen3 (klein; `Qwen3ForCausalLM` as saved, `model.*`, or the bare `Qwen3Model`): q/k RMS
    norms in the attention set it apart from Qwen2; no vision tower."""
    saved = header.has("model.embed_tokens.weight") and header.has_prefix("model.layers.0.self_attn.q_norm.")
    bare = header.has("embed_tokens.weight") and header.has_prefix("layers.0.self_attn.q_norm.")
    return (saved or bare) and not header.has_prefix("visual.") and not header.has_prefix("model.visual.")


def is_mistral3(header: CheckpointHeader) -> bool:
    """Mistral3ForConditionalGeneration (FLUX.2-dev's Mistral Small 3.1): a Mistral text model
    beside a Pixtral vision tower, as transformers saves it (`language_model.model.*`,
    `vision_tower.*`) or in its in-memory names (`model.language_model.*`, `model.vision_tower.*`)."""
    saved = header.has("language_model.model.embed_tokens.weight") and header.has_prefix("vision_tower.")
    loaded = header.has("model.language_model.embed_tokens.weight") and header.has_prefix("model.vision_tower.")
    return saved or loaded


def is_text_encoder(header: CheckpointHeader) -> bool:
    """Qwen3 (klein) or Mistral 3 (dev)."""
    return is_qwen3(header) or is_mistral3(header)


def is_vae(header: CheckpointHeader) -> bool:
    """AutoencoderKLFlux2 (diffusers `vae/`): a 2-D autoencoder plus the batch-norm statistics of
    its patchified latents (`bn.running_mean`)."""
    return header.has("encoder.conv_in.weight", "decoder.conv_in.weight", "bn.running_mean")


def _sources(transformer_repo: str, encoder_repo: str) -> tuple[str, ...]:
    """DiffSynth-Studio's sources: the diffusers folders (a base model takes its distilled sibling's
    text encoder and autoencoder, which are the same weights)."""
    return (
        f"{encoder_repo}:text_encoder/*.safetensors",
        f"{transformer_repo}:transformer/*.safetensors",
        f"{encoder_repo}:vae/diffusion_pytorch_model.safetensors",
    )


def _variant(name: str, description: str, transformer_repo: str, encoder_repo: str) -> VariantSpec:
    """The tokenizer (klein's Qwen tokenizer, dev's Mistral processor folder) sits beside the text encoder."""
    return VariantSpec(name, description, _sources(transformer_repo, encoder_repo), f"{encoder_repo}:tokenizer/")


FAMILY = FamilySpec(
    name=NAME,
    description=(
        "FLUX.2 rectified-flow DiT: klein (4B/9B, base and 4-step distilled, Qwen3 text encoder) and dev "
        "(32B, guidance-distilled, Mistral Small 3.1 text encoder), reference images."
    ),
    components=(
        ComponentSpec("dit", "Flux2 DiT (double + single-stream blocks)", is_dit, "diffusers.Flux2Transformer2DModel"),
        ComponentSpec(
            "text_encoder", "Qwen3 (klein: hidden states of layers 9, 18, 27) or Mistral 3 (dev: layers 10, 20, 30)",
            is_text_encoder, "transformers.Qwen3Model / transformers.MistralModel", tokenized=True,
        ),
        ComponentSpec("vae", "32-channel autoencoder with latent batch-norm statistics", is_vae, "diffusers.AutoencoderKLFlux2"),
    ),
    variants=(
        _variant("klein-4b", "FLUX.2-klein-4B, step-distilled (Qwen3-4B)", KLEIN_4B, KLEIN_4B),
        _variant("klein-base-4b", "FLUX.2-klein-base-4B, undistilled, for fine-tuning (Qwen3-4B)", KLEIN_BASE_4B, KLEIN_4B),
        _variant("klein-9b", "FLUX.2-klein-9B, step-distilled (Qwen3-8B)", KLEIN_9B, KLEIN_9B),
        _variant("klein-base-9b", "FLUX.2-klein-base-9B, undistilled (Qwen3-8B)", KLEIN_BASE_9B, KLEIN_9B),
        _variant("dev", "FLUX.2-dev, guidance-distilled (Mistral Small 3.1 24B)", DEV, DEV),
    ),
    default_lora_targets=DEFAULT_LORA_TARGETS,
    lora_target_aliases=LORA_TARGET_ALIASES,
    denoiser="dit",
    extra_inputs=(
        ExtraInputSpec(EDIT, "Reference image(s) FLUX.2 conditions on (the pipelines' `image=`), joined to the image tokens"),
    ),
    presets=(
        PresetSpec("tiny", "Random tiny FLUX.2-klein-4B (step-distilled) in the black-forest-labs repo layout"),
        PresetSpec("tiny-base", "Random tiny FLUX.2-klein-base-4B (undistilled) in the black-forest-labs repo layout"),
        PresetSpec("tiny-dev", "Random tiny FLUX.2-dev (guidance embedding, Mistral 3 with a Pixtral tower) in the black-forest-labs repo layout"),
    ),
    options=(
        FamilyOption(
            "guidance", float, DEFAULT_GUIDANCE,
            "Embedded guidance FLUX.2-dev's guidance-distilled DiT sees in training (DiffSynth-Studio uses 1.0); klein has none.",
        ),
    ),
    resolution_multiple=16,  # VAE factor 8 x 2x2 latent patches
    repeated_blocks=("transformer_blocks", "single_transformer_blocks"),
)
