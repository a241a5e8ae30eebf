"""`diffsynth models init z-image DIR --preset tiny|tiny-turbo`: deterministic random models
written with the file names and layout of the real Tongyi-MAI/Z-Image(-Turbo) repos:
model_index.json, transformer/ (sharded + index), text_encoder/ (Qwen3, sharded + index),
tokenizer/ (Qwen2Tokenizer with a chat template), vae/, scheduler/."""

from __future__ import annotations

from pathlib import Path

import torch

from diffsynth.plugin import UserError, calibration_images, write_json

TEXT_DIM = 32
# head_dim = dim / n_heads = 16 = sum(axes_dims); the real model: 3840 / 30 = 128 = 32 + 48 + 48.
TINY_DIT = dict(
    all_patch_size=[2], all_f_patch_size=[1], in_channels=16, dim=32, n_layers=2, n_refiner_layers=1,
    n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=TEXT_DIM, rope_theta=256.0,
    t_scale=1000.0, axes_dims=[4, 6, 6], axes_lens=[1536, 512, 512],
)  # fmt: skip
# The FLUX.1 autoencoder's topology (4 levels: factor 8, 16 latent channels, no quant convs),
# 8 channels wide instead of 128-512.
TINY_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[8, 8, 8, 8], layers_per_block=1,
    norm_num_groups=4, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    use_quant_conv=False, use_post_quant_conv=False, force_upcast=True, sample_size=1024,
)  # fmt: skip
TINY_TEXT = dict(
    hidden_size=TEXT_DIM, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
)  # fmt: skip
# Qwen3's special tokens (the real ids start at 151643; here after the 256 byte symbols).
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
# Qwen3's chat template, reduced to what a single user message renders: diffusers' ZImagePipeline
# calls apply_chat_template(add_generation_prompt=True, enable_thinking=True), which gives
# "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"; enable_thinking=False adds
# an empty think block, as the real template does.
CHAT_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

# scheduler/scheduler_config.json of the real repos: the only configuration difference between
# Z-Image and Z-Image-Turbo (same transformer, text encoder and VAE configs).
SCHEDULERS = {
    "tiny": {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "use_dynamic_shifting": False, "shift": 6.0},
    "tiny-turbo": {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "use_dynamic_shifting": False, "shift": 3.0},
}
MODEL_INDEX = {
    "_class_name": "ZImagePipeline",
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "Qwen3Model"],
    "tokenizer": ["transformers", "Qwen2Tokenizer"],
    "transformer": ["diffusers", "ZImageTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
SHARD_SIZE = "100KB"  # splits the tiny transformer and text encoder into shards, as the real repos are


class Presets:
    """The family's `init_model`."""

    def init_model(self, preset: str, directory: Path, seed: int = 0) -> None:
        """Write `preset` into `directory` (created if needed)."""
        if preset not in SCHEDULERS:
            raise UserError(f"unknown preset {preset!r} for z-image (choose from: {', '.join(SCHEDULERS)})")
        directory.mkdir(parents=True, exist_ok=True)
        tokenizer = build_tokenizer()
        torch.manual_seed(seed)
        build_dit().save_pretrained(directory / "transformer", max_shard_size=SHARD_SIZE)
        build_text_encoder(tokenizer).save_pretrained(directory / "text_encoder", max_shard_size=SHARD_SIZE)
        build_vae().save_pretrained(directory / "vae")
        tokenizer.save_pretrained(directory / "tokenizer")
        write_json(directory / "scheduler" / "scheduler_config.json", SCHEDULERS[preset])
        write_json(directory / "model_index.json", MODEL_INDEX)


def build_dit() -> torch.nn.Module:
    from diffusers import ZImageTransformer2DModel

    dit = ZImageTransformer2DModel(**TINY_DIT)
    with torch.no_grad():  # the real pad tokens are trained, not zero: give them values a test can see
        dit.x_pad_token.normal_(0, 0.02)
        dit.cap_pad_token.normal_(0, 0.02)
    return dit


def build_text_encoder(tokenizer) -> torch.nn.Module:
    """Qwen3, saved as the real checkpoint is (Qwen3ForCausalLM keys `model.*`, the tied
    lm_head not stored); diffusers and we load it as Qwen3Model."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    config = Qwen3Config(
        vocab_size=len(tokenizer), bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], **TINY_TEXT
    )
    return Qwen3ForCausalLM(config)


def build_vae() -> torch.nn.Module:
    """A random AutoencoderKL whose shift/scaling factors are measured on calibration images (as the
    real 0.1159 / 0.3611 were measured on data), so its latents have unit scale."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**TINY_VAE)
    with torch.no_grad():
        latents = vae.encode(calibration_images()).latent_dist.mode()
    vae.register_to_config(shift_factor=latents.mean().item(), scaling_factor=1.0 / latents.std().clamp_min(1e-6).item())
    return vae


def build_tokenizer():
    """A byte-level BPE Qwen2Tokenizer (Qwen3's tokenizer class) with the 256 byte symbols as its
    vocabulary and no merges (every byte one token), Qwen3's special tokens and chat template."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import AddedToken, Qwen2Tokenizer

    vocab = {symbol: i for i, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=131072)
    tokenizer.add_tokens([AddedToken(tok, special=True, normalized=False) for tok in SPECIAL_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
