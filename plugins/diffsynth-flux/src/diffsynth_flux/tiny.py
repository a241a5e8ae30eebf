"""`diffsynth models init flux DIR --preset tiny|tiny-kontext`: deterministic random models in the
layout of the real black-forest-labs/FLUX.1-dev (or FLUX.1-Kontext-dev) repo: the BFL single
files (`flux1-dev.safetensors`, `ae.safetensors`) and the diffusers folders, tokenizers,
scheduler and `model_index.json`, so `FluxPipeline.from_pretrained(DIR)` works."""

from __future__ import annotations

import string
from pathlib import Path

import torch
from safetensors.torch import save_file

from diffsynth.plugin import UserError, calibration_images, flow_match_scheduler_config, write_json

from . import original_format, real_configs

# Sizes from design.md §4: each module well under 1M parameters. The transformer and autoencoder
# are FLUX.1's own (real_configs.py: guidance embedding; 4 levels, 16 latent channels, no quant
# convs), narrow and shallow.
TINY_DIT = dict(
    real_configs.DIT, num_layers=2, num_single_layers=2, attention_head_dim=16, num_attention_heads=4,
    joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6),
)  # fmt: skip
# the latent shift/scale are measured on calibration images (build_vae), not FLUX.1's constants
TINY_VAE = dict(real_configs.VAE, block_out_channels=[8, 16, 16, 16], layers_per_block=1, norm_num_groups=8)
TINY_CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77, projection_dim=32)
TINY_T5 = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu", relative_attention_num_buckets=8)

T5_TINY_LENGTH = 32

PRESETS = {"tiny": ("FluxPipeline", "flux1-dev.safetensors"), "tiny-kontext": ("FluxKontextPipeline", "flux1-kontext-dev.safetensors")}
# Split the tiny transformer (3 shards) and T5 (2+) like the real, sharded, repo folders.
DIT_SHARD_SIZE, T5_SHARD_SIZE = "800KB", "60KB"


class Presets:
    """The family's `init_model`."""

    def init_model(self, preset: str, directory: Path, seed: int = 0) -> None:
        """Write `preset` into `directory` (created if needed)."""
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r} for flux (choose from: {', '.join(PRESETS)})")
        pipeline_class, dit_file = PRESETS[preset]
        directory.mkdir(parents=True, exist_ok=True)
        clip_tok, t5_tok = build_clip_tokenizer(), build_t5_tokenizer()
        torch.manual_seed(seed)
        write_clip(build_clip(clip_tok), directory / "text_encoder")
        build_t5(t5_tok).save_pretrained(directory / "text_encoder_2", max_shard_size=T5_SHARD_SIZE)
        vae = build_vae()
        vae.save_pretrained(directory / "vae")
        vae_meta = {"scaling_factor": str(vae.config.scaling_factor), "shift_factor": str(vae.config.shift_factor)}
        save_file(original_format.vae_to_original(vae.state_dict()), str(directory / "ae.safetensors"), metadata=vae_meta)
        torch.manual_seed(seed + (preset == "tiny-kontext"))  # Kontext: another transformer, same encoders
        dit = build_dit()
        dit.save_pretrained(directory / "transformer", max_shard_size=DIT_SHARD_SIZE)
        save_file(original_format.transformer_to_original(dit.state_dict()), str(directory / dit_file))
        clip_tok.save_pretrained(directory / "tokenizer")
        t5_tok.save_pretrained(directory / "tokenizer_2")
        # black-forest-labs/FLUX.1-dev's scheduler/scheduler_config.json
        write_json(directory / "scheduler" / "scheduler_config.json", flow_match_scheduler_config())
        write_json(
            directory / "model_index.json",
            {
                "_class_name": pipeline_class,
                "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "text_encoder_2": ["transformers", "T5EncoderModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "tokenizer_2": ["transformers", "T5TokenizerFast"],
                "transformer": ["diffusers", "FluxTransformer2DModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            },
        )


def build_dit() -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(**TINY_DIT)


def build_vae() -> torch.nn.Module:
    """A random autoencoder whose `shift_factor`/`scaling_factor` are measured on calibration
    images, as the real ones were measured on data (with FLUX's constants a random encoder's
    latents are far from unit scale and a tiny model learns little)."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**TINY_VAE)
    with torch.no_grad():
        latents = vae.encode(calibration_images()).latent_dist.mode()
    vae.register_to_config(shift_factor=latents.mean().item(), scaling_factor=1.0 / latents.std().clamp_min(1e-6).item())
    return vae


def build_clip(tokenizer) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), **TINY_CLIP, **ids))


def write_clip(clip: torch.nn.Module, folder: Path) -> None:
    """One `model.safetensors` with the real repo's `text_model.*` keys (transformers 5 keeps
    them without the prefix in memory, and would save them so)."""
    clip.save_pretrained(folder)
    state = {f"text_model.{k}": v.contiguous() for k, v in clip.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def build_t5(tokenizer) -> torch.nn.Module:
    from transformers import T5Config, T5EncoderModel

    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    return T5EncoderModel(T5Config(vocab_size=len(tokenizer), **TINY_T5, **ids))


def build_clip_tokenizer():
    """CLIP's byte-level BPE with a minimal vocabulary (every byte, alone and word-final, no
    merges): built offline, deterministic, and it tokenizes any text."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77)


def build_t5_tokenizer():
    """T5's Unigram (sentencepiece) layout with a character vocabulary: <pad>=0, </s>=1, <unk>=2."""
    from transformers import T5TokenizerFast

    chars = string.ascii_letters + string.digits + string.punctuation
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + c, -3.0) for c in chars] + [(c, -4.0) for c in chars]
    # 32, not T5-XXL's 512: the prompt sequence is what a tiny DiT spends its time on
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=T5_TINY_LENGTH)

