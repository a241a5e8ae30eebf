"""Module configs inferred from checkpoint shapes (plus the repo's root config.json for the DiT's
head count, which no weight shape shows)."""

from __future__ import annotations

from typing import Any

from diffsynth.plugin import CheckpointHeader
from diffsynth.plugin import CheckpointGroup, init_args

# AutoencoderKLWan's defaults are the Wan2.1 VAE's; these are the Wan2.2 VAE's (48 channels).
VAE22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]  # fmt: skip
VAE22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]  # fmt: skip
HEAD_DIM = 128  # every released Wan DiT; used when no config.json names num_heads
CLIP_HEAD_DIM = 80  # open-clip ViT-H/14: 1280 wide, 16 heads


def dit_config(group: CheckpointGroup) -> dict[str, Any]:
    """WanTransformer3DModel arguments: a diffusers config.json as is, else from shapes, with
    num_heads from the original repo's root config.json when it has one."""
    from diffusers import WanTransformer3DModel

    found = group.sibling_config() or {}
    if found.get("_class_name") == "WanTransformer3DModel":
        return init_args(WanTransformer3DModel, found)
    return infer_dit_config(group.header, found.get("num_heads"))


def infer_dit_config(header: CheckpointHeader, num_heads: int | None = None) -> dict[str, Any]:
    h = _original_dit_header(header)
    inner, in_channels, *patch = h("patch_embedding.weight")
    heads = num_heads or max(1, inner // HEAD_DIM)
    image = header.has("img_emb.proj.1.weight") or header.has("condition_embedder.image_embedder.ff.net.0.proj.weight")
    image_dim = h("img_emb.proj.0.weight")[0] if image else None
    pos = header.has("img_emb.emb_pos") or header.has("condition_embedder.image_embedder.pos_embed")
    return dict(
        patch_size=tuple(patch),
        num_attention_heads=heads,
        attention_head_dim=inner // heads,
        in_channels=in_channels,
        out_channels=h("head.head.weight")[0] // (patch[0] * patch[1] * patch[2]),
        text_dim=h("text_embedding.0.weight")[1],
        freq_dim=h("time_embedding.0.weight")[1],
        ffn_dim=h("blocks.0.ffn.0.weight")[0],
        num_layers=header.count_indexed(r"blocks\.(\d+)\."),
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=image_dim,
        added_kv_proj_dim=inner if image else None,
        pos_embed_seq_len=h("img_emb.emb_pos")[1] if pos else None,
    )


def _original_dit_header(header: CheckpointHeader):
    """`shape(original_name)` that also reads a diffusers-layout header."""
    from .convert import dit_name_to_original

    if not header.has_prefix("blocks.0.attn1."):
        return header.shape
    names = {dit_name_to_original(k): k for k in header.tensors}
    return lambda name: header.shape(names[name])


def vae_config(header: CheckpointHeader) -> dict[str, Any]:
    """AutoencoderKLWan arguments for an original Wan2.1 or Wan2.2 VAE (widths from shapes)."""
    from .convert import is_vae22

    base_dim = header.shape("encoder.conv1.weight")[0]
    z_dim = header.shape("conv2.weight")[0]
    if not is_vae22(header.tensors):
        return dict(base_dim=base_dim, z_dim=z_dim)
    return dict(
        base_dim=base_dim,
        decoder_base_dim=header.shape("decoder.head.2.weight")[1],
        z_dim=z_dim,
        is_residual=True,
        in_channels=header.shape("encoder.conv1.weight")[1],
        out_channels=header.shape("decoder.head.2.weight")[0],
        patch_size=2,  # 12 channels = 3 x 2 x 2 pixel patches
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        latents_mean=VAE22_LATENTS_MEAN,
        latents_std=VAE22_LATENTS_STD,
    )


def t5_config(header: CheckpointHeader):
    from transformers import UMT5Config

    vocab, d_model = header.shape("token_embedding.weight")
    buckets, heads = header.shape("blocks.0.pos_embedding.embedding.weight")
    return UMT5Config(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=header.shape("blocks.0.attn.q.weight")[0] // heads,
        d_ff=header.shape("blocks.0.ffn.fc1.weight")[0],
        num_layers=header.count_indexed(r"blocks\.(\d+)\."),
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",  # Wan's T5 GELU is the tanh approximation, gelu_new
        tie_word_embeddings=False,
        dropout_rate=0.0,
    )


def clip_config(header: CheckpointHeader):
    from transformers import CLIPVisionConfig

    hidden, _, patch, _ = header.shape("visual.patch_embedding.weight")
    positions = header.shape("visual.pos_embedding")[1]
    grid = round((positions - 1) ** 0.5)
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=header.shape("visual.transformer.0.mlp.0.weight")[0],
        num_hidden_layers=header.count_indexed(r"visual\.transformer\.(\d+)\."),
        num_attention_heads=max(1, hidden // CLIP_HEAD_DIM),
        image_size=grid * patch,
        patch_size=patch,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )
