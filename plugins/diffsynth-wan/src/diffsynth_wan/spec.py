"""The Wan family as plain data: components, detectors, sources, presets (no torch).

Detectors read only key names and shapes, so a variant (T2V / I2V / TI2V) is told apart by what
the checkpoint holds (DiT input channels 16 / 36 / 48, image-embedding keys), never by file name.
"""

from __future__ import annotations

from diffsynth.plugin import CheckpointHeader, ComponentSpec, ExpertSpec, ExtraInputSpec, FamilySpec
from diffsynth.plugin import PresetSpec, VariantSpec

NAME = "wan"
T2V_REPO = "Wan-AI/Wan2.1-T2V-1.3B"
I2V_REPO = "Wan-AI/Wan2.1-I2V-14B-480P"
TI2V_REPO = "Wan-AI/Wan2.2-TI2V-5B"
A14B_REPO = "Wan-AI/Wan2.2-T2V-A14B"

DIT_FILES = "diffusion_pytorch_model*.safetensors"
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
VAE21_FILE = "Wan2.1_VAE.pth"
VAE22_FILE = "Wan2.2_VAE.pth"
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
TOKENIZER_FOLDER = "google/umt5-xxl/"
# Wan2.2-T2V-A14B's two experts, each a folder with config.json + sharded original-key DiT.
A14B_EXPERTS = ("high_noise_model", "low_noise_model")
# DiffSynth-Studio's T2V-A14B training split (--max/--min_timestep_boundary): a fraction of the
# 1000-step shift-5 training grid counted from its noisy end. Index 417 has sigma ~0.875, i.e.
# timestep 875 = diffusers WanPipeline's boundary_ratio 0.875 x num_train_timesteps 1000, where
# the pipeline hands over from `transformer` (high noise, t >= 875) to `transformer_2`.
A14B_BOUNDARY = 0.417

# diffusers module names of DiffSynth-Studio's default Wan targets (q,k,v,o,ffn.0,ffn.2).
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
# Original Wan names (what DiffSynth-Studio users pass) -> diffusers WanTransformer3DModel names.
LORA_TARGET_ALIASES = {
    "q": ("to_q",),
    "k": ("to_k",),
    "v": ("to_v",),
    "o": ("to_out.0",),
    "k_img": ("add_k_proj",),
    "v_img": ("add_v_proj",),
    "ffn.0": ("ffn.net.0.proj",),
    "ffn.2": ("ffn.net.2",),
    "self_attn.q": ("attn1.to_q",),
    "self_attn.k": ("attn1.to_k",),
    "self_attn.v": ("attn1.to_v",),
    "self_attn.o": ("attn1.to_out.0",),
    "cross_attn.q": ("attn2.to_q",),
    "cross_attn.k": ("attn2.to_k",),
    "cross_attn.v": ("attn2.to_v",),
    "cross_attn.o": ("attn2.to_out.0",),
}


def is_dit(header: CheckpointHeader) -> bool:
    """WanModel: original keys (`blocks.N.self_attn.q`) or diffusers' (`blocks.N.attn1.to_q`)."""
    if not header.has("patch_embedding.weight"):
        return False
    original = header.has("head.head.weight") and header.has_prefix("blocks.0.self_attn.q.")
    diffusers = header.has("proj_out.weight") and header.has_prefix("blocks.0.attn1.to_q.")
    return original or diffusers


def is_text_encoder(header: CheckpointHeader) -> bool:
    """Wan's umT5-XXL encoder (`token_embedding`, `blocks.N.attn.q`, per-block relative bias)."""
    return header.has("token_embedding.weight", "norm.weight") and header.has_prefix("blocks.0.attn.q.")


def is_vae(header: CheckpointHeader) -> bool:
    """Wan 2.1 / 2.2 causal 3-D VAE, original keys (`encoder.conv1`, `conv1`, `conv2`)."""
    keys = ("encoder.conv1.weight", "decoder.conv1.weight", "conv1.weight", "conv2.weight")
    return header.has(*keys) and len(header.shape("encoder.conv1.weight")) == 5


def is_image_encoder(header: CheckpointHeader) -> bool:
    """open-clip XLM-RoBERTa ViT-H/14: only its visual tower is used (I2V)."""
    return header.has("visual.patch_embedding.weight") and header.has_prefix("visual.transformer.0.attn.to_qkv.")


def _sources(repo: str, vae: str, dit: str = DIT_FILES, clip: bool = False) -> tuple[str, ...]:
    files = [f"{repo}:{dit}", f"{repo}:{T5_FILE}", f"{repo}:{vae}"]
    return tuple(files + ([f"{repo}:{CLIP_FILE}"] if clip else []))


FAMILY = FamilySpec(
    name=NAME,
    description="Wan 2.1 / 2.2 video DiT: text-to-video, image-to-video, TI2V-5B, A14B experts.",
    components=(
        ComponentSpec("dit", "Video DiT denoiser", is_dit, "diffusers.WanTransformer3DModel"),
        ComponentSpec(
            "text_encoder", "umT5-XXL text encoder", is_text_encoder, "transformers.UMT5EncoderModel", tokenized=True
        ),
        ComponentSpec("vae", "Causal 3-D video autoencoder (16 or 48 channels)", is_vae, "diffusers.AutoencoderKLWan"),
        ComponentSpec(
            "image_encoder", "CLIP ViT-H/14 visual tower (Wan2.1 I2V only)", is_image_encoder,
            "transformers.CLIPVisionModel", optional=True,
        ),
    ),
    variants=(
        VariantSpec("t2v", "Wan2.1 text-to-video 1.3B", _sources(T2V_REPO, VAE21_FILE), f"{T2V_REPO}:{TOKENIZER_FOLDER}"),
        VariantSpec(
            "i2v", "Wan2.1 image-to-video 14B 480P (adds the CLIP image encoder)",
            _sources(I2V_REPO, VAE21_FILE, clip=True), f"{I2V_REPO}:{TOKENIZER_FOLDER}",
        ),
        VariantSpec(
            "ti2v", "Wan2.2 TI2V-5B: text/image-to-video on the 48-channel Wan2.2 VAE",
            _sources(TI2V_REPO, VAE22_FILE), f"{TI2V_REPO}:{TOKENIZER_FOLDER}",
        ),
        VariantSpec(
            "a14b", "Wan2.2 T2V A14B, both experts (high_noise_model/ first): train them in one run with --train_experts high,low",
            (f"{A14B_REPO}:{A14B_EXPERTS[0]}/{DIT_FILES}", *_sources(A14B_REPO, VAE21_FILE, dit=f"{A14B_EXPERTS[1]}/{DIT_FILES}")),
            f"{A14B_REPO}:{TOKENIZER_FOLDER}",
        ),
        VariantSpec(
            "a14b-high", f"Wan2.2 T2V A14B high-noise expert (train with --max_timestep_boundary {A14B_BOUNDARY})",
            _sources(A14B_REPO, VAE21_FILE, dit=f"{A14B_EXPERTS[0]}/{DIT_FILES}"), f"{A14B_REPO}:{TOKENIZER_FOLDER}",
        ),
        VariantSpec(
            "a14b-low", f"Wan2.2 T2V A14B low-noise expert (train with --min_timestep_boundary {A14B_BOUNDARY})",
            _sources(A14B_REPO, VAE21_FILE, dit=f"{A14B_EXPERTS[1]}/{DIT_FILES}"), f"{A14B_REPO}:{TOKENIZER_FOLDER}",
        ),
    ),  # fmt: skip
    default_lora_targets=DEFAULT_LORA_TARGETS,
    lora_target_aliases=LORA_TARGET_ALIASES,
    denoiser="dit",
    extra_inputs=(
        ExtraInputSpec(
            "input_image",
            "First frame to condition on: CLIP feature + VAE mask conditioning (I2V), or the given "
            "first latent frame (TI2V-5B). An image column, else the video's first frame",
            "i2v",
            column_required=False,  # DiffSynth's rule: without the column, the video's first frame
            max_images=1,  # one first frame
        ),
    ),
    presets=(
        PresetSpec("tiny", "Random tiny Wan2.1 T2V in the Wan-AI/Wan2.1-T2V-1.3B layout (original .pth files)"),
        PresetSpec("tiny-i2v", "Random tiny Wan2.1 I2V in the Wan-AI/Wan2.1-I2V-14B-480P layout (adds the CLIP .pth)"),
        PresetSpec("tiny-ti2v", "Random tiny Wan2.2 TI2V in the Wan-AI/Wan2.2-TI2V-5B layout (48-channel VAE)"),
        PresetSpec(
            "tiny-a14b", "Random tiny Wan2.2 T2V A14B in the Wan-AI/Wan2.2-T2V-A14B layout "
            "(high_noise_model/ and low_noise_model/ experts with different weights, Wan2.1 VAE)",
        ),
    ),
    resolution_multiple=16,
    repeated_blocks=("blocks",),
    default_data_file_keys=("image", "video"),
    # Wan2.2 A14B: the first DiT given is the high-noise expert, the second the low-noise one; the
    # switch is diffusers' boundary_ratio (pipeline.expert_ranges). File names as ComfyUI's Wan2.2
    # LoRAs and ai-toolkit's: <name>_high_noise.safetensors / <name>_low_noise.safetensors.
    experts=(
        ExpertSpec("high", "dit", "high-noise expert (high_noise_model/, diffusers' transformer)", "_high_noise"),
        ExpertSpec("low", "dit_2", "low-noise expert (low_noise_model/, diffusers' transformer_2)", "_low_noise"),
    ),
)
