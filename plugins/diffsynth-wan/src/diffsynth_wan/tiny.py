"""`diffsynth models init wan DIR --preset tiny|tiny-i2v|tiny-ti2v|tiny-a14b`: deterministic random
models in the original Wan repos' layout: root config.json, `diffusion_pytorch_model*.safetensors`
with original key names, `.pth` state dicts for umT5 / VAE / CLIP, and `google/umt5-xxl/`.

`tiny-a14b` is Wan-AI/Wan2.2-T2V-A14B's layout: two experts with different weights, each a
sharded DiT with its own config.json in `high_noise_model/` and `low_noise_model/` (the folders
Wan2.2's `WanModel.from_pretrained(checkpoint_dir, subfolder=...)` and diffusers'
`scripts/convert_wan_to_diffusers.py --model_type Wan2.2-T2V-A14B` read), the umT5 and the
16-channel Wan2.1 VAE at the root, and a root `configuration.json` instead of a DiT config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from diffsynth.plugin import UserError, calibration_images, write_json

from . import convert
from .spec import A14B_EXPERTS, CLIP_FILE, T5_FILE, VAE21_FILE, VAE22_FILE

# Sizes from design.md §4, each module well under 1M parameters, but 3 DiT blocks: with 2 the
# red-vs-blue learns check plateaus at 36/40 samples right whatever the learning rate; 3 gives 38/40.
TEXT_DIM = 32
CLIP_DIM = 80  # one 80-wide head, like ViT-H/14's
TINY_DIT = dict(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=16, in_channels=16, out_channels=16,
                text_dim=TEXT_DIM, freq_dim=32, ffn_dim=64, num_layers=3, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6)  # fmt: skip
TINY_T5 = dict(d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=32)
TINY_CLIP = dict(hidden_size=CLIP_DIM, intermediate_size=160, num_hidden_layers=2, num_attention_heads=1,
                 image_size=28, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5)  # fmt: skip
# Context length (the real repos' config.json says 512): 8 keeps a tiny model's cross-attention
# from drowning 2 prompt tokens among 510 identical pads, and its steps cheap.
TEXT_LEN = 8
SHARD_BYTES = 200_000  # splits the tiny I2V / TI2V DiTs into shards like the real repos


@dataclass(frozen=True)
class Preset:
    dit_in: int
    latent: int  # VAE latent channels: 16 (Wan2.1) or 48 (Wan2.2)
    image_encoder: bool
    sharded: bool
    model_type: str
    experts: tuple[str, ...] = ()  # MoE expert subfolders (A14B), each with its own DiT + config.json


PRESETS = {
    "tiny": Preset(dit_in=16, latent=16, image_encoder=False, sharded=False, model_type="t2v"),
    "tiny-i2v": Preset(dit_in=36, latent=16, image_encoder=True, sharded=True, model_type="i2v"),
    "tiny-ti2v": Preset(dit_in=48, latent=48, image_encoder=False, sharded=True, model_type="ti2v"),
    "tiny-a14b": Preset(dit_in=16, latent=16, image_encoder=False, sharded=True, model_type="t2v", experts=A14B_EXPERTS),
}


class Presets:
    """The family's `init_model`."""

    def init_model(self, preset: str, directory: Path, seed: int = 0) -> None:
        """Write `preset` into `directory` (created if needed)."""
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r} for wan (choose from: {', '.join(PRESETS)})")
        layout = PRESETS[preset]
        directory.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        tokenizer = build_tokenizer()
        tokenizer.save_pretrained(directory / "google" / "umt5-xxl")
        if layout.experts:
            for expert in layout.experts:  # built one after the other: different random weights
                (directory / expert).mkdir(exist_ok=True)
                write_dit(directory / expert, build_dit(layout), layout)
            write_json(directory / "configuration.json", {"framework": "Pytorch", "task": "text-to-video"})
        else:
            write_dit(directory, build_dit(layout), layout)
        torch.save(convert.t5_to_original(build_t5(len(tokenizer)).state_dict()), directory / T5_FILE)
        vae = build_vae(layout.latent)
        vae_file = VAE22_FILE if layout.latent == 48 else VAE21_FILE
        torch.save(convert.vae_to_original(vae.state_dict(), residual=layout.latent == 48), directory / vae_file)
        if layout.image_encoder:
            state = convert.clip_to_original(build_clip().state_dict())
            # the file holds the whole XLMRobertaCLIP (Wan's wan/modules/clip.py): the visual tower's
            # projection `visual.head` (dim x embed_dim), `log_scale` and the text tower, all unused here
            state["visual.head"] = torch.randn(CLIP_DIM, TEXT_DIM) / CLIP_DIM**0.5
            state["log_scale"] = torch.tensor(4.6052)
            torch.save(state, directory / CLIP_FILE)


def build_dit(preset: Preset) -> torch.nn.Module:
    from diffusers import WanTransformer3DModel

    extra = dict(image_dim=CLIP_DIM, added_kv_proj_dim=64) if preset.image_encoder else {}
    return WanTransformer3DModel(**dict(TINY_DIT, in_channels=preset.dit_in, out_channels=preset.latent, **extra))


def write_dit(directory: Path, dit: torch.nn.Module, preset: Preset) -> None:
    """Original keys; one file for 1.3B, shards + index for the larger repos; root config.json."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in convert.dit_to_original(dit.state_dict()).items()}
    cfg = dit.config
    root = {
        "_class_name": "WanModel", "_diffusers_version": "0.30.0", "model_type": preset.model_type,
        "text_len": TEXT_LEN, "in_dim": cfg.in_channels, "dim": cfg.num_attention_heads * cfg.attention_head_dim,
        "ffn_dim": cfg.ffn_dim, "freq_dim": cfg.freq_dim, "out_dim": cfg.out_channels,
        "num_heads": cfg.num_attention_heads, "num_layers": cfg.num_layers, "eps": cfg.eps,
    }  # fmt: skip
    write_json(directory / "config.json", root)
    if not preset.sharded:
        save_file(state, str(directory / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        if size > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][key] = state[key]
        size += state[key].numel() * state[key].element_size()
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())}, "weight_map": weight_map}
    write_json(directory / "diffusion_pytorch_model.safetensors.index.json", index)


def build_t5(vocab_size: int) -> torch.nn.Module:
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(vocab_size=vocab_size, feed_forward_proj="gated-gelu", tie_word_embeddings=False, **TINY_T5)
    return UMT5EncoderModel(config).to(torch.bfloat16)  # the real file is bf16 ("-enc-bf16")


def build_clip() -> torch.nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    return CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP))


def build_vae(latent_channels: int) -> torch.nn.Module:
    """A random Wan VAE with the real latent statistics, its quant convs rescaled so that
    calibration images' latents, normalised with those statistics, have zero mean and unit std
    per channel: a random encoder's raw latents barely differ between images, and a tiny model
    trained on them could not learn red from blue."""
    from diffusers import AutoencoderKLWan

    from .configs import VAE22_LATENTS_MEAN, VAE22_LATENTS_STD

    if latent_channels == 48:
        vae = AutoencoderKLWan(base_dim=8, decoder_base_dim=8, z_dim=48, is_residual=True, in_channels=12,
                               out_channels=12, patch_size=2, scale_factor_spatial=16,
                               latents_mean=VAE22_LATENTS_MEAN, latents_std=VAE22_LATENTS_STD)  # fmt: skip
    else:
        vae = AutoencoderKLWan(base_dim=8, z_dim=16)
    _calibrate(vae)
    return vae


@torch.no_grad()
def _calibrate(vae) -> None:
    z = vae.config.z_dim
    mu = vae.encode(calibration_images()[:, :, None]).latent_dist.mode()  # (N, z, 1, h, w)
    per_channel = mu.transpose(0, 1).reshape(z, -1)
    m, s = per_channel.mean(1), per_channel.std(1).clamp_min(1e-6)
    mean, std = torch.tensor(vae.config.latents_mean), torch.tensor(vae.config.latents_std)
    gain = std / s  # mu' = (mu - m) * std / s + mean, so (mu' - mean) / std = (mu - m) / s
    q, pq = vae.quant_conv, vae.post_quant_conv
    q.weight[:z] *= gain.view(-1, 1, 1, 1, 1)
    q.bias[:z] = (q.bias[:z] - m) * gain + mean
    # the decoder sees mu' and must act as it did on mu = (mu' - mean) / gain + m
    shift = pq.weight.flatten(1) @ (m - mean / gain)
    pq.weight /= gain.view(1, -1, 1, 1, 1)
    pq.bias += shift


def build_tokenizer():
    """A small T5 (Unigram, SentencePiece-style) tokenizer built offline: pad=0, eos=1, unk=2 as
    in umT5, pieces for the letters and a few words."""
    from transformers import T5TokenizerFast

    words = "a an the of on in and red blue green yellow white black circle square triangle sliding right cat dog photo video"
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(f"\u2581{w}", -1.0) for w in words.split()]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)
