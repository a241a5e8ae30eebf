"""The real Z-Image modules' configs (no download needed) and `plan_pipeline`'s meta builder.

Values are those of the real repos' config.json files (Tongyi-MAI/Z-Image and Z-Image-Turbo
share them; only scheduler/scheduler_config.json differs, shift 6.0 vs 3.0):
- transformer: ZImageTransformer2DModel, dim 3840, 30 layers + 2 refiner layers, 30 heads of 128,
  cap_feat_dim 2560, axes_dims [32, 48, 48], axes_lens [1536, 512, 512], rope_theta 256.
- text_encoder: Qwen3-4B (hidden 2560, MLP 9728, 36 layers, 32 heads / 8 KV heads of 128,
  vocab 151936, tied embeddings).
- vae: the FLUX.1 AutoencoderKL (block_out_channels [128, 256, 512, 512], 2 layers per block,
  16 latent channels, no quant convs, scaling 0.3611, shift 0.1159).
When a real `config.json` is present under `$DIFFSYNTH_MODEL_BASE_PATH/<repo>/`, it is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DIT = dict(
    all_patch_size=[2], all_f_patch_size=[1], in_channels=16, dim=3840, n_layers=30, n_refiner_layers=2,
    n_heads=30, n_kv_heads=30, norm_eps=1e-5, qk_norm=True, cap_feat_dim=2560, rope_theta=256.0,
    t_scale=1000.0, axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512],
)  # fmt: skip
TEXT = dict(
    vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000.0,
    tie_word_embeddings=True,
)  # fmt: skip
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, use_quant_conv=False,
    use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159, force_upcast=True, sample_size=1024,
)  # fmt: skip
REPOS = {None: "Tongyi-MAI/Z-Image", "base": "Tongyi-MAI/Z-Image", "turbo": "Tongyi-MAI/Z-Image-Turbo"}


def _local_config(repo: str, folder: str) -> dict[str, Any] | None:
    """`config.json` of the real repo's folder when the model files are present."""
    path = Path(os.environ.get("DIFFSYNTH_MODEL_BASE_PATH", "models")) / repo / folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


class Planning:
    """The family's `plan_pipeline`."""

    def plan_pipeline(self, variant: str | None, context):
        """Real-size dit, text_encoder and vae on the meta device, the tiny tokenizer (offline: the
        prompt's token count, not its ids, is what memory depends on)."""
        from diffusers import AutoencoderKL, ZImageTransformer2DModel
        from transformers import Qwen3Config, Qwen3Model

        from diffsynth.plugin import UserError, empty_module, init_args

        from .pipeline import SCHEDULE, ZImageModules
        from .tiny import build_tokenizer

        if variant not in REPOS:
            raise UserError(f"z-image plan: unknown variant {variant!r} (base, turbo)")
        repo = REPOS[variant]

        dit_cfg = init_args(ZImageTransformer2DModel, _local_config(repo, "transformer") or DIT)
        vae_cfg = init_args(AutoencoderKL, _local_config(repo, "vae") or VAE)
        text_cfg = Qwen3Config.from_dict(_local_config(repo, "text_encoder") or TEXT)
        dtype = context.torch_dtype
        modules = {
            "dit": empty_module(lambda: ZImageTransformer2DModel(**dit_cfg), dtype),
            "text_encoder": empty_module(lambda: Qwen3Model(text_cfg), dtype),
            "vae": empty_module(lambda: AutoencoderKL(**vae_cfg), dtype),
        }
        return ZImageModules(modules=modules, schedule=SCHEDULE, denoiser="dit", tokenizer=build_tokenizer())
