"""`diffsynth models init qwen-image DIR --preset tiny|tiny-2512|tiny-edit|tiny-edit-2509|tiny-edit-2511`:
deterministic random models written with the file names and layout of the real Qwen/Qwen-Image,
Qwen-Image-2512, Qwen-Image-Edit, Qwen-Image-Edit-2509 and Qwen-Image-Edit-2511 repos."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from diffsynth.plugin import UserError, calibration_images, write_json

# Special tokens of the real Qwen2.5-VL tokenizer, in their real id order (151643...).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip

# Sizes from design.md §4: each module well under 1M parameters.
TINY_DIT = dict(
    patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16,
    num_attention_heads=4, joint_attention_dim=32, guidance_embeds=False, axes_dims_rope=(4, 6, 6),
)  # fmt: skip
TINY_VAE = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True])
TEXT_HIDDEN = 32  # = TINY_DIT joint_attention_dim
TINY_TEXT = dict(
    hidden_size=TEXT_HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=4096,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [1, 1, 2]},
)  # fmt: skip
TINY_VISION = dict(
    depth=2, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=TEXT_HIDDEN,
    fullatt_block_indexes=[1], window_size=112, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
)  # fmt: skip
# The real processor's resize rules, with max_pixels capped so the vision tower sees <= 16 tokens.
TINY_IMAGE_PROCESSOR = dict(min_pixels=56 * 56, max_pixels=28 * 28 * 16, patch_size=14, temporal_patch_size=2, merge_size=2)

# Qwen/Qwen-Image scheduler/scheduler_config.json
SCHEDULER_CONFIG = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "invert_sigmas": False,
    "max_image_seq_len": 8192,
    "max_shift": 0.9,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.02,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}

#: preset -> (model_index.json's pipeline class, DiT config changes); Edit presets add processor/.
PRESETS = {
    "tiny": ("QwenImagePipeline", {}),
    "tiny-2512": ("QwenImagePipeline", {}),
    "tiny-edit": ("QwenImageEditPipeline", {}),
    "tiny-edit-2509": ("QwenImageEditPlusPipeline", {}),
    # the real Qwen-Image-Edit-2511 transformer/config.json sets zero_cond_t, which diffusers reads
    "tiny-edit-2511": ("QwenImageEditPlusPipeline", {"zero_cond_t": True}),
}
# Shard size that splits the tiny transformer and text encoder like the real (sharded) repos.
SHARD_SIZE = "300KB"


class Presets:
    """The family's `init_model`."""

    def init_model(self, preset: str, directory: Path, seed: int = 0) -> None:
        """Write `preset` into `directory` (created if needed)."""
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r} for qwen-image (choose from: {', '.join(PRESETS)})")
        pipeline_class, dit_changes = PRESETS[preset]
        edit = pipeline_class != "QwenImagePipeline"
        directory.mkdir(parents=True, exist_ok=True)
        tokenizer = build_tokenizer()
        torch.manual_seed(seed)
        build_dit(**dit_changes).save_pretrained(directory / "transformer", max_shard_size=SHARD_SIZE)
        build_text_encoder(tokenizer).save_pretrained(directory / "text_encoder", max_shard_size=SHARD_SIZE)
        build_vae().save_pretrained(directory / "vae")
        tokenizer.save_pretrained(directory / "tokenizer")
        write_json(directory / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG)
        components = {
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "text_encoder": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
            "tokenizer": ["transformers", "Qwen2Tokenizer"],
            "transformer": ["diffusers", "QwenImageTransformer2DModel"],
            "vae": ["diffusers", "AutoencoderKLQwenImage"],
        }
        if edit:
            write_processor(directory / "processor", tokenizer)
            components["processor"] = ["transformers", "Qwen2VLProcessor"]
        write_json(directory / "model_index.json", {"_class_name": pipeline_class, **components})


def build_dit(**changes) -> torch.nn.Module:
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel(**{**TINY_DIT, **changes})


def build_vae() -> torch.nn.Module:
    """A random VAE whose `latents_mean`/`latents_std` are measured on calibration images, as
    the real ones were measured on data: with the real model's statistics a random encoder's
    latents barely differ between images (red vs blue: 0.002 MSE), and nothing could learn."""
    from diffusers import AutoencoderKLQwenImage

    vae = AutoencoderKLQwenImage(**TINY_VAE)
    with torch.no_grad():
        latents = vae.encode(calibration_images()[:, :, None]).latent_dist.mode()  # (N, C, 1, h, w)
    per_channel = latents.transpose(0, 1).reshape(latents.shape[1], -1)
    vae.register_to_config(
        latents_mean=per_channel.mean(1).tolist(), latents_std=per_channel.std(1).clamp_min(1e-6).tolist()
    )
    return vae


def build_text_encoder(tokenizer) -> torch.nn.Module:
    """Qwen2.5-VL with the tokenizer's special-token ids (the real ids don't fit a tiny vocab)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    text = dict(TINY_TEXT, vocab_size=len(tokenizer), bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"])
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=TINY_VISION,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def build_tokenizer():
    """A byte-level BPE Qwen2Tokenizer with a small vocabulary learnt from the prompt templates.

    Built offline with the `tokenizers` library; deterministic for a fixed corpus.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    from .prompts import EDIT_TEMPLATE, T2I_TEMPLATE

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=512, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    corpus = [T2I_TEMPLATE.format(""), EDIT_TEMPLATE.format(""), "a photo of a red cat and a blue dog"]
    bpe.train_from_iterator(corpus, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=state["vocab"], merges=merges, model_max_length=32768)
    tokenizer.add_tokens([AddedToken(tok, special=True, normalized=False) for tok in SPECIAL_TOKENS])
    return tokenizer


def write_processor(directory: Path, tokenizer) -> None:
    """Image-only Qwen2-VL processor: the PIL image processor + tokenizer (no video processor,
    which needs torchvision)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    Qwen2VLImageProcessorPil(**TINY_IMAGE_PROCESSOR).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
