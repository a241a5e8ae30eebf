"""The Qwen-Image family as plain data: components, detectors, sources, presets (no torch)."""

from __future__ import annotations

from diffsynth.plugin import CheckpointHeader, ComponentSpec, ExtraInputSpec, FamilyOption
from diffsynth.plugin import FamilySpec, PresetSpec, VariantSpec

NAME = "qwen-image"
BASE_REPO = "Qwen/Qwen-Image"
EDIT_REPO = "Qwen/Qwen-Image-Edit"
BASE_2512_REPO = "Qwen/Qwen-Image-2512"
EDIT_2509_REPO = "Qwen/Qwen-Image-Edit-2509"
EDIT_2511_REPO = "Qwen/Qwen-Image-Edit-2511"

# DiffSynth-Studio's default LoRA targets for Qwen-Image (all attention and MLP/modulation outs).
DEFAULT_LORA_TARGETS = (
    "to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out",
    "img_mlp.net.2", "img_mod.1", "txt_mlp.net.2", "txt_mod.1",
)  # fmt: skip


def is_dit(header: CheckpointHeader) -> bool:
    """QwenImageTransformer2DModel (diffusers keys): image/text input projections + MMDiT blocks."""
    return header.has("img_in.weight", "txt_in.weight", "txt_norm.weight") and header.has_prefix(
        "transformer_blocks.0.img_mod."
    )


def is_text_encoder(header: CheckpointHeader) -> bool:
    """Qwen2.5-VL: a language model plus a vision tower, in the saved (`model.*`, `visual.*`)
    layout of the real repo or the in-memory (`model.language_model.*`) one."""
    lm = header.has("model.embed_tokens.weight") or header.has("model.language_model.embed_tokens.weight")
    vision = header.has_prefix("visual.merger.") or header.has_prefix("model.visual.merger.")
    return lm and vision


def is_vae(header: CheckpointHeader) -> bool:
    """AutoencoderKLQwenImage: causal 3-D convolutions (5-D weights) and a 16-channel latent."""
    keys = ("encoder.conv_in.weight", "decoder.conv_in.weight", "quant_conv.weight")
    return header.has(*keys) and len(header.shape("encoder.conv_in.weight")) == 5


def _dit_variant(name: str, description: str, repo: str, edit: bool = False) -> VariantSpec:
    """A variant whose transformer comes from `repo` and the text encoder, VAE and tokenizer from
    Qwen/Qwen-Image (DiffSynth-Studio's sources for it); an Edit one also takes `repo`'s processor."""
    return VariantSpec(
        name,
        description,
        model_sources=(
            f"{repo}:transformer/diffusion_pytorch_model*.safetensors",
            f"{BASE_REPO}:text_encoder/model*.safetensors",
            f"{BASE_REPO}:vae/diffusion_pytorch_model.safetensors",
        ),
        tokenizer_source=f"{BASE_REPO}:tokenizer/",
        processor_source=f"{repo}:processor/" if edit else None,
    )


FAMILY = FamilySpec(
    name=NAME,
    description="Qwen-Image(-2512) 20B MMDiT text-to-image, and Qwen-Image-Edit(-2509/-2511) (image(s) + instruction).",
    components=(
        ComponentSpec("dit", "MMDiT denoiser", is_dit, "diffusers.QwenImageTransformer2DModel"),
        ComponentSpec(
            "text_encoder", "Qwen2.5-VL text (and, for Edit, vision) encoder", is_text_encoder,
            "transformers.Qwen2_5_VLForConditionalGeneration", tokenized=True,
        ),
        ComponentSpec("vae", "Causal 3-D image autoencoder", is_vae, "diffusers.AutoencoderKLQwenImage"),
    ),
    variants=(
        _dit_variant("qwen-image", "Qwen-Image text-to-image", BASE_REPO),
        _dit_variant(
            "edit", "Qwen-Image-Edit: the Edit transformer with the base text encoder and VAE", EDIT_REPO, edit=True
        ),
        _dit_variant("2512", "Qwen-Image-2512: the base architecture with new weights", BASE_2512_REPO),
        _dit_variant(
            "edit-2509", "Qwen-Image-Edit-2509 (Edit Plus): several reference images, 'Picture N:' prompts", EDIT_2509_REPO, edit=True
        ),
        _dit_variant(
            "edit-2511", "Qwen-Image-Edit-2511: Edit Plus with timestep 0 for the reference tokens (zero_cond_t)",
            EDIT_2511_REPO, edit=True,
        ),
    ),
    default_lora_targets=DEFAULT_LORA_TARGETS,
    denoiser="dit",
    extra_inputs=(
        ExtraInputSpec(
            "edit_image",
            "Image to edit (Qwen-Image-Edit), or a JSON list of reference images (Edit-2509/2511); shown to the DiT and the text encoder",
            "edit",
        ),
    ),
    presets=(
        PresetSpec("tiny", "Random ~1 MB Qwen-Image in the Qwen/Qwen-Image layout (tests, smoke runs)"),
        PresetSpec("tiny-edit", "Random tiny Qwen-Image-Edit in the Qwen/Qwen-Image-Edit layout (adds processor/)"),
        PresetSpec("tiny-2512", "Random tiny Qwen-Image-2512 in the Qwen/Qwen-Image-2512 layout (the base architecture)"),
        PresetSpec("tiny-edit-2509", "Random tiny Qwen-Image-Edit-2509 in its layout (QwenImageEditPlusPipeline, processor/)"),
        PresetSpec("tiny-edit-2511", "Random tiny Qwen-Image-Edit-2511 in its layout (Edit Plus, transformer zero_cond_t)"),
    ),
    options=(
        FamilyOption(
            "zero_cond_t", bool, False,
            "Timestep 0 for the reference images' tokens (Qwen-Image-Edit-2511; its config.json sets it already).",
        ),
    ),
    resolution_multiple=16,
    repeated_blocks=("transformer_blocks",),
)
