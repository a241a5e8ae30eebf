"""The real Wan modules' configs (no download needed) and the family's `plan_pipeline` (`Planning`),
which builds them on the meta device.

Sources (diffusers' WanTransformer3DModel arguments):
- DiTs: the original repos' configs (Wan2.1 `wan/configs/wan_t2v_14B.py`, `wan_t2v_1_3B.py`,
  `wan_i2v_14B.py`; Wan2.2 `wan_ti2v_5B.py`, `wan_t2v_A14B.py`) as diffusers'
  `scripts/convert_wan_to_diffusers.py` maps them: 14B = 40 heads of 128 (5120), FFN 13824, 40
  layers; 1.3B = 12 heads (1536), FFN 8960, 30 layers; I2V-14B adds 36 input channels and the
  CLIP image embedder (image_dim 1280, added_kv_proj_dim 5120); TI2V-5B = 24 heads (3072), FFN
  14336, 30 layers, 48 channels; each A14B expert has the 14B T2V shape. text_len 512 everywhere.
- VAEs: Wan2.1 = AutoencoderKLWan's defaults; Wan2.2 = configs.py's 48-channel settings with
  base_dim 160 / decoder_base_dim 256 (convert_wan_to_diffusers.py's convert_vae_22).
- umT5-XXL encoder: vocab 256384, d_model 4096, d_ff 10240, 24 layers, 64 heads of 64, 32 buckets.
- CLIP (I2V): open-clip XLM-RoBERTa ViT-H/14 visual tower: 1280 wide, 32 blocks, 16 heads, MLP
  5120, 224 px, patch 14.
"""

from __future__ import annotations

WAN21_14B = dict(num_attention_heads=40, ffn_dim=13824, num_layers=40, in_channels=16, out_channels=16)
DITS = {
    "t2v": dict(num_attention_heads=12, ffn_dim=8960, num_layers=30, in_channels=16, out_channels=16),
    "t2v-14b": WAN21_14B,
    "i2v": dict(WAN21_14B, in_channels=36, image_dim=1280, added_kv_proj_dim=5120),
    "ti2v": dict(num_attention_heads=24, ffn_dim=14336, num_layers=30, in_channels=48, out_channels=48),
    "a14b": WAN21_14B,  # each expert; plan measures one (the step runs one expert at a time)
    "a14b-high": WAN21_14B,
    "a14b-low": WAN21_14B,
}
DIT_COMMON = dict(
    patch_size=(1, 2, 2), attention_head_dim=128, text_dim=4096, freq_dim=256, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
)  # fmt: skip
VAE21 = dict(base_dim=96, z_dim=16)
VAE22 = dict(
    base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, in_channels=12, out_channels=12, patch_size=2,
    scale_factor_spatial=16, scale_factor_temporal=4,
)  # fmt: skip
UMT5 = dict(
    vocab_size=256384, d_model=4096, d_ff=10240, d_kv=64, num_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
    tie_word_embeddings=False, dropout_rate=0.0,
)  # fmt: skip
CLIP = dict(
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224,
    patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5,
)  # fmt: skip
TEXT_LEN = 512


class Planning:
    """The family's `plan_pipeline`."""

    def plan_pipeline(self, variant: str | None, context):
        """Real-size dit, umT5 and VAE (+ CLIP for I2V) of `variant` (default t2v = Wan2.1-T2V-1.3B;
        `t2v-14b` = Wan2.1-T2V-14B, plan only) on the meta device; the tiny umT5 tokenizer (the
        pipeline pads the prompt to 512 tokens whatever it is)."""
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
        from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

        from diffsynth.plan.meta import empty_module
        from diffsynth.plugin import UserError

        from .configs import VAE22_LATENTS_MEAN, VAE22_LATENTS_STD
        from .pipeline import SCHEDULE, WanModules, detect_mode
        from .tiny import build_tokenizer

        variant = variant or "t2v"
        if variant not in DITS:
            raise UserError(f"wan plan: unknown variant {variant!r} ({', '.join(DITS)})")
        dtype = context.torch_dtype
        dit_cfg = dict(DIT_COMMON, **DITS[variant])
        vae22 = dict(VAE22, latents_mean=VAE22_LATENTS_MEAN, latents_std=VAE22_LATENTS_STD)
        vae_cfg = vae22 if variant == "ti2v" else VAE21
        modules = {
            "dit": empty_module(lambda: WanTransformer3DModel(**dit_cfg), dtype),
            "text_encoder": empty_module(lambda: UMT5EncoderModel(UMT5Config(**UMT5)), dtype),
            "vae": empty_module(lambda: AutoencoderKLWan(**vae_cfg), dtype),
        }
        if variant == "i2v":
            modules["image_encoder"] = empty_module(lambda: CLIPVisionModel(CLIPVisionConfig(**CLIP)), dtype)
        mode = detect_mode(modules, "input_image" in context.extra_inputs)
        return WanModules(
            modules=modules, schedule=SCHEDULE, denoiser="dit", tokenizer=build_tokenizer(), mode=mode, text_len=TEXT_LEN
        )
