"""The real FLUX.1 modules' configs (no download needed) and `plan_pipeline`'s meta builder.

Values are those of black-forest-labs/FLUX.1-dev's config.json files (diffusers layout):
- transformer/config.json: 19 double + 38 single blocks, 24 heads of 128, joint_attention_dim
  4096, pooled 768, guidance embeds (the same numbers as benchmarks/gpu/bench.py's CONFIGS);
  FLUX.1-Kontext-dev's transformer has the same shape.
- vae/config.json: AutoencoderKL, block_out_channels [128, 256, 512, 512], 2 layers per block,
  16 latent channels, no quant convs, scaling 0.3611 / shift 0.1159 (configs.py's constants).
- text_encoder/config.json: openai/clip-vit-large-patch14's text tower (768 wide, 12 layers,
  12 heads, MLP 3072, 77 positions, vocab 49408, quick_gelu, projection 768).
- text_encoder_2/config.json: google/t5-v1_1-xxl's encoder (d_model 4096, d_ff 10240, 24 layers,
  64 heads of 64, vocab 32128, gated-gelu, 32 buckets / distance 128).
When the model files are present under `$DIFFSYNTH_MODEL_BASE_PATH/black-forest-labs/FLUX.1-dev/`
(diffusers layout), their config.json is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .spec import DEV_REPO

DIT = dict(
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)  # fmt: skip
VAE = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=16, norm_num_groups=32,
    sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
    mid_block_add_attention=True,
)  # fmt: skip
CLIP = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, bos_token_id=49406, eos_token_id=49407,
    pad_token_id=1,
)  # fmt: skip
T5 = dict(
    vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
    tie_word_embeddings=False, dropout_rate=0.0,
)  # fmt: skip
#: FluxPipeline pads the T5 prompt to max_sequence_length 512 (inputs.T5_MAX_LENGTH)
T5_LENGTH = 512


def _local_config(folder: str) -> dict[str, Any] | None:
    path = Path(os.environ.get("DIFFSYNTH_MODEL_BASE_PATH", "models")) / DEV_REPO / folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


class Planning:
    """The family's `plan_pipeline`."""

    def plan_pipeline(self, variant: str | None, context):
        """Real-size dit, CLIP, T5 and vae on the meta device; the tiny tokenizers (the CLIP text is
        padded to 77 tokens and the T5 text to 512 whatever the prompt, as the pipeline pads)."""
        from diffusers import AutoencoderKL, FluxTransformer2DModel
        from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

        from diffsynth.plan.meta import empty_module
        from diffsynth.plugin import UserError, init_args

        from .pipeline import SCHEDULE, FluxModules
        from .tiny import build_clip_tokenizer, build_t5_tokenizer

        if variant not in (None, "dev", "kontext"):
            raise UserError(f"flux plan: unknown variant {variant!r} (dev, kontext)")
        dtype = context.torch_dtype
        dit_cfg = init_args(FluxTransformer2DModel, _local_config("transformer") or DIT)
        vae_cfg = init_args(AutoencoderKL, _local_config("vae") or VAE)
        clip_cfg = CLIPTextConfig.from_dict(_local_config("text_encoder") or CLIP)
        t5_cfg = T5Config.from_dict(_local_config("text_encoder_2") or T5)
        modules = {
            "dit": empty_module(lambda: FluxTransformer2DModel(**dit_cfg), dtype),
            "text_encoder": empty_module(lambda: CLIPTextModel(clip_cfg), dtype),
            "text_encoder_2": empty_module(lambda: T5EncoderModel(t5_cfg), dtype),
            "vae": empty_module(lambda: AutoencoderKL(**vae_cfg), dtype),
        }
        tokenizer_2 = build_t5_tokenizer()
        tokenizer_2.model_max_length = T5_LENGTH
        return FluxModules(modules=modules, schedule=SCHEDULE, denoiser="dit", tokenizer=build_clip_tokenizer(), tokenizer_2=tokenizer_2)
