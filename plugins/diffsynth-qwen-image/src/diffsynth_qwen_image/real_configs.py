"""The real Qwen-Image modules' configs (no download needed) and `Planning`, the family's
`plan_pipeline` (the modules on the meta device).

Values are those of the real repos' config.json files:
- transformer: Qwen/Qwen-Image transformer/config.json (the same numbers as
  benchmarks/gpu/bench.py's CONFIGS and diffusers' QwenImageTransformer2DModel docs: 60 layers,
  24 heads of 128, joint_attention_dim 3584); Qwen-Image-Edit's transformer has the same shape.
- vae: Qwen/Qwen-Image vae/config.json = AutoencoderKLQwenImage's defaults (base_dim 96, z_dim 16,
  dim_mult [1, 2, 4, 4], 2 res blocks, temporal downsample [False, True, True]).
- text_encoder: Qwen/Qwen-Image text_encoder/config.json = Qwen2.5-VL-7B-Instruct's (hidden 3584,
  MLP 18944, 28 layers, 28 heads / 4 KV heads, vocab 152064, mRoPE sections [16, 24, 24]; vision
  tower 32 blocks of 1280, 16 heads, MLP 3420, out 3584, full attention at blocks 7/15/23/31).
When a real `config.json` is present under `$DIFFSYNTH_MODEL_BASE_PATH/Qwen/Qwen-Image/`, it is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO = "Qwen/Qwen-Image"

DIT = dict(
    patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=3584, guidance_embeds=False, axes_dims_rope=(16, 56, 56),
)  # fmt: skip
VAE = dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True])
TEXT = dict(
    vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, max_position_embeddings=128000, rms_norm_eps=1e-6, hidden_act="silu",
    tie_word_embeddings=False,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
)  # fmt: skip
VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584, in_channels=3,
    fullatt_block_indexes=[7, 15, 23, 31], window_size=112, patch_size=14, spatial_merge_size=2,
    temporal_patch_size=2, hidden_act="silu",
)  # fmt: skip
#: Qwen2.5-VL's special token ids (tokenizer_config.json of the real tokenizer)
TOKEN_IDS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)


def _local_config(folder: str) -> dict[str, Any] | None:
    """`config.json` of the real repo's folder when the model files are present."""
    path = Path(os.environ.get("DIFFSYNTH_MODEL_BASE_PATH", "models")) / REPO / folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


class Planning:
    """The family's `plan_pipeline`."""

    def plan_pipeline(self, variant: str | None, context):
        """Real-size dit, text_encoder and vae on the meta device, the tiny tokenizer (offline: the
        prompt's token count, not its ids, is what memory depends on)."""
        from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        from diffsynth.plan.meta import empty_module
        from diffsynth.plugin import UserError, init_args

        from .pipeline import SCHEDULE, QwenImageModules
        from .spec import FAMILY
        from .tiny import build_tokenizer

        names = [v.name for v in FAMILY.variants]  # all have the real Qwen-Image sizes
        if variant not in (None, *names):
            raise UserError(f"qwen-image plan: unknown variant {variant!r} ({', '.join(names)})")
        if "edit_image" in context.extra_inputs:
            raise UserError("qwen-image plan: edit_image (the vision tower's input) is not planned yet")
        dtype = context.torch_dtype
        dit_cfg = init_args(QwenImageTransformer2DModel, _local_config("transformer") or DIT)
        vae_cfg = init_args(AutoencoderKLQwenImage, _local_config("vae") or VAE)
        found = _local_config("text_encoder")
        text_cfg = Qwen2_5_VLConfig.from_dict(found) if found else Qwen2_5_VLConfig(text_config=TEXT, vision_config=VISION, **TOKEN_IDS)
        modules = {
            "dit": empty_module(lambda: QwenImageTransformer2DModel(**dit_cfg), dtype),
            "text_encoder": empty_module(lambda: Qwen2_5_VLForConditionalGeneration(text_cfg), dtype),
            "vae": empty_module(lambda: AutoencoderKLQwenImage(**vae_cfg), dtype),
        }
        return QwenImageModules(modules=modules, schedule=SCHEDULE, denoiser="dit", tokenizer=build_tokenizer())
