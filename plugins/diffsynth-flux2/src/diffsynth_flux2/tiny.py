"""`diffsynth models init flux2 DIR --preset tiny|tiny-base|tiny-dev`: deterministic random models
in the layout of black-forest-labs/FLUX.2-klein-4B (or -base-4B, or FLUX.2-dev): BFL's single
transformer file at the root, the diffusers folders (transformer/, text_encoder/, tokenizer/,
vae/, scheduler/) and `model_index.json`, so `Flux2KleinPipeline.from_pretrained(DIR)` (klein)
or `Flux2Pipeline.from_pretrained(DIR, tokenizer=...)` (dev, see `build_mistral_tokenizer`) loads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file

from diffsynth.plugin import UserError, calibration_images, flow_match_scheduler_config, write_json

from . import original_format

TEXT_HIDDEN = 16
#: Qwen3's hidden states at layers 9, 18 and 27 are stacked: the DiT reads 3 x the text width.
#: 28 layers keep the real layer indices (the real Qwen3-4B/8B have 36).
TINY_TEXT = dict(
    hidden_size=TEXT_HIDDEN, intermediate_size=32, num_hidden_layers=28, num_attention_heads=2,
    num_key_value_heads=1, head_dim=8, max_position_embeddings=512, tie_word_embeddings=True,
    rope_theta=1000000.0, rms_norm_eps=1e-6,
    # a trained Qwen3's hidden states are O(1) and up; at the default 0.02 a random one's are
    # ~0.02 and a prompt barely moves the DiT (red vs blue would not be learnt)
    initializer_range=0.1,
)  # fmt: skip
TINY_DIT = dict(
    patch_size=1, in_channels=128, num_layers=2, num_single_layers=2, attention_head_dim=16,
    num_attention_heads=4, joint_attention_dim=3 * TEXT_HIDDEN, axes_dims_rope=(4, 4, 4, 4),
    guidance_embeds=False,
)  # fmt: skip
# The real autoencoder's topology (4 levels, 32 latent channels, quant convs), narrow.
TINY_VAE = dict(
    block_out_channels=[8, 16, 16, 16], layers_per_block=1, latent_channels=32, norm_num_groups=8,
    use_quant_conv=True, use_post_quant_conv=True,
)  # fmt: skip
#: prompts are padded to this many tokens (the real pipelines pad to 512)
TINY_MAX_LENGTH = 64

# FLUX.2's scheduler config (scripts/convert_flux2_to_diffusers.py takes FLUX.1-dev's); the
# pipelines pass their own empirical `mu`, so `shift` is unused.
SCHEDULER_CONFIG = flow_match_scheduler_config()
#: preset -> (BFL file name, is_distilled)
PRESETS = {"tiny": ("flux-2-klein-4b.safetensors", True), "tiny-base": ("flux-2-klein-base-4b.safetensors", False)}
DEV_PRESET = "tiny-dev"
SHARD_SIZE = "150KB"  # text encoder and transformer in 2+ shards, as in the real repos

# Qwen3's special tokens used by its chat template; <|endoftext|> pads.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
THINK_TOKENS = ("<think>", "</think>")
# Qwen3's chat template, reduced to what the FLUX.2 pipelines use (one user turn, a generation
# prompt, enable_thinking=False adds the empty think block): the same text as the real template.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)


class Presets:
    """The family's `init_model`."""

    def init_model(self, preset: str, directory: Path, seed: int = 0) -> None:
        """Write `preset` into `directory` (created if needed)."""
        if preset == DEV_PRESET:
            from .tiny_dev import write_dev_preset

            return write_dev_preset(directory, seed)
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r} for flux2 (choose from: {', '.join([*PRESETS, DEV_PRESET])})")
        original_file, distilled = PRESETS[preset]
        tokenizer = build_tokenizer()
        # the base model: another transformer, the same encoders
        write_models(directory, seed, lambda: build_text_encoder(tokenizer), seed + (not distilled), original_file)
        tokenizer.save_pretrained(directory / "tokenizer")
        index = model_index("Flux2KleinPipeline", "Qwen3ForCausalLM", "Qwen2TokenizerFast", is_distilled=distilled)
        write_json(directory / "model_index.json", index)


def write_models(
    directory: Path, seed: int, text_encoder: Callable[[], torch.nn.Module], dit_seed: int, original_file: str, **dit_overrides
) -> None:
    """The folders every preset has: text_encoder/ (`text_encoder()` at `seed`), vae/, transformer/
    (at `dit_seed`) with BFL's single file of the same weights, scheduler/."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    text_encoder().save_pretrained(directory / "text_encoder", max_shard_size=SHARD_SIZE)
    build_vae().save_pretrained(directory / "vae")
    torch.manual_seed(dit_seed)
    dit = build_dit(**dit_overrides)
    dit.save_pretrained(directory / "transformer", max_shard_size=SHARD_SIZE)
    save_file(original_format.transformer_to_original(dit.state_dict()), str(directory / original_file))
    write_json(directory / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG)


def model_index(pipeline: str, text_encoder: str, tokenizer: str, **flags) -> dict[str, Any]:
    """A FLUX.2 repo's model_index.json: the pipeline class, its flags, each folder's library and class."""
    classes = {
        "scheduler": "FlowMatchEulerDiscreteScheduler", "text_encoder": text_encoder, "tokenizer": tokenizer,
        "transformer": "Flux2Transformer2DModel", "vae": "AutoencoderKLFlux2",
    }  # fmt: skip
    library = {"text_encoder": "transformers", "tokenizer": "transformers"}
    folders = {name: [library.get(name, "diffusers"), cls] for name, cls in classes.items()}
    return {"_class_name": pipeline, **flags, **folders}


def build_dit(**overrides) -> torch.nn.Module:
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(**{**TINY_DIT, **overrides})


def build_vae() -> torch.nn.Module:
    """A random autoencoder whose latent batch-norm statistics are measured on calibration
    images, as the real ones were measured on data (the pipelines normalise the patchified
    latents with `bn.running_mean` / `running_var`)."""
    from diffusers import AutoencoderKLFlux2

    vae = AutoencoderKLFlux2(**TINY_VAE)
    with torch.no_grad():
        latents = vae.encode(calibration_images()).latent_dist.mode()
        b, c, h, w = latents.shape
        patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, -1)
        per_channel = patches.transpose(0, 1).reshape(c * 4, -1)
        vae.bn.running_mean.copy_(per_channel.mean(1))
        vae.bn.running_var.copy_(per_channel.var(1).clamp_min(1e-6))
    return vae


def build_text_encoder(tokenizer) -> torch.nn.Module:
    """Qwen3ForCausalLM as the real repos save it (`model.*`, the head tied to the embedding)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in
           (("pad_token_id", "<|endoftext|>"), ("bos_token_id", "<|endoftext|>"), ("eos_token_id", "<|im_end|>"))}  # fmt: skip
    return Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tokenizer), **TINY_TEXT, **ids))


def build_tokenizer():
    """Qwen's byte-level BPE (Qwen2TokenizerFast) with a 256-byte vocabulary and no merges, the
    chat-template tokens as added tokens, and Qwen3's chat template: offline and deterministic."""
    from tokenizers import pre_tokenizers
    from transformers import AddedToken, Qwen2TokenizerFast

    vocab = {byte: i for i, byte in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab, merges=[], model_max_length=TINY_MAX_LENGTH, pad_token="<|endoftext|>",
        unk_token=None, bos_token=None, eos_token="<|im_end|>",
    )  # fmt: skip
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
