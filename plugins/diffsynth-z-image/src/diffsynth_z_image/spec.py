"""The Z-Image family as plain data: components, detectors, sources, presets (no torch)."""

from __future__ import annotations

from diffsynth.plugin import CheckpointHeader, ComponentSpec, FamilySpec, PresetSpec, VariantSpec

NAME = "z-image"
BASE_REPO = "Tongyi-MAI/Z-Image"
TURBO_REPO = "Tongyi-MAI/Z-Image-Turbo"

# DiffSynth-Studio's Z-Image LoRA example (examples/z_image/model_training/lora/Z-Image.sh):
# every attention projection and the SwiGLU feed-forward of every block.
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "w1", "w2", "w3")


def is_dit(header: CheckpointHeader) -> bool:
    """ZImageTransformer2DModel (diffusers keys): caption embedder, pad tokens, refiner blocks."""
    return header.has("cap_embedder.1.weight", "x_pad_token", "cap_pad_token") and header.has_prefix(
        "noise_refiner.0.attention."
    )


def is_text_encoder(header: CheckpointHeader) -> bool:
    """Qwen3 (saved as Qwen3ForCausalLM, `model.*`, or as Qwen3Model): Qwen3's per-head q/k
    norms tell it from Qwen2."""
    return any(
        header.has(f"{p}embed_tokens.weight", f"{p}layers.0.self_attn.q_norm.weight") for p in ("model.", "")
    )


def is_vae(header: CheckpointHeader) -> bool:
    """AutoencoderKL (2-D convolutions) with a 16-channel latent (the FLUX.1 autoencoder)."""
    if not header.has("encoder.conv_in.weight", "decoder.conv_in.weight", "encoder.conv_out.weight"):
        return False
    return len(header.shape("encoder.conv_in.weight")) == 4 and header.shape("encoder.conv_out.weight")[0] == 32


def _sources(repo: str) -> tuple[str, ...]:
    return (
        f"{repo}:transformer/*.safetensors",
        f"{repo}:text_encoder/*.safetensors",
        f"{repo}:vae/diffusion_pytorch_model.safetensors",
    )


FAMILY = FamilySpec(
    name=NAME,
    description="Z-Image 6B single-stream DiT text-to-image (base and the distilled Turbo).",
    components=(
        ComponentSpec("dit", "Single-stream DiT denoiser", is_dit, "diffusers.ZImageTransformer2DModel"),
        ComponentSpec(
            "text_encoder", "Qwen3 text encoder (second-to-last layer)", is_text_encoder, "transformers.Qwen3Model",
            tokenized=True,
        ),
        ComponentSpec("vae", "16-channel image autoencoder", is_vae, "diffusers.AutoencoderKL"),
    ),
    variants=(
        VariantSpec("base", "Z-Image: the undistilled model (CFG, ~50 steps)", _sources(BASE_REPO), f"{BASE_REPO}:tokenizer/"),
        VariantSpec("turbo", "Z-Image-Turbo: distilled, 8 steps without CFG", _sources(TURBO_REPO), f"{TURBO_REPO}:tokenizer/"),
    ),
    default_lora_targets=DEFAULT_LORA_TARGETS,
    denoiser="dit",
    presets=(
        PresetSpec("tiny", "Random ~1 MB Z-Image in the Tongyi-MAI/Z-Image layout (tests, smoke runs)"),
        PresetSpec("tiny-turbo", "Random ~1 MB Z-Image-Turbo in the Tongyi-MAI/Z-Image-Turbo layout"),
    ),
    resolution_multiple=16,  # VAE factor 8 x patch 2
    repeated_blocks=("noise_refiner", "context_refiner", "layers"),
)
