"""The real FLUX.2 modules' configs (no download needed) and `plan_pipeline`'s meta builder.

Values are those of the black-forest-labs/FLUX.2-klein-{4B,9B} config.json files, as diffusers'
scripts/convert_flux2_to_diffusers.py writes them (base and distilled share them):
- transformer: 128 input channels (32 latent channels x 2x2), heads of 128 with 4 RoPE axes of 32,
  theta 2000, MLP ratio 3, no guidance embedding; 4B: 24 heads (3072 wide), 5 double + 20 single
  blocks, text 7680 = 3 x 2560; 9B: 32 heads (4096 wide), 8 + 24 blocks, text 12288 = 3 x 4096.
- text_encoder: Qwen3-4B (2560 wide, 36 layers, 32 heads / 8 KV heads of 128, MLP 9728, tied
  embeddings) and Qwen3-8B (4096 wide, 36 layers, MLP 12288, untied), vocabulary 151936.
- vae: AutoencoderKLFlux2's defaults (128/256/512/512 channels, 2 layers per block, 32 latent
  channels, quant convs, latent batch norm over 128 = 32 x 2x2 channels).
FLUX.2-dev (black-forest-labs/FLUX.2-dev):
- transformer: 48 heads of 128 (6144 wide), 8 double + 48 single blocks, text 15360 = 3 x 5120,
  guidance embedding (otherwise klein's numbers);
- text_encoder: Mistral Small 3.1's text model (5120 wide, 40 layers, 32 heads / 8 KV heads of
  128, MLP 32768, vocabulary 131072, RoPE theta 1e9, untied); its Pixtral vision tower is not
  loaded (the pipeline encodes text only);
- vae: the same autoencoder.
When the model files are present under `$DIFFSYNTH_MODEL_BASE_PATH/<repo>/` (diffusers layout),
their config.json is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .spec import FAMILY

_DIT_COMMON = dict(
    patch_size=1, in_channels=128, attention_head_dim=128, timestep_guidance_channels=256, mlp_ratio=3.0,
    axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, eps=1e-6, guidance_embeds=False,
)  # fmt: skip
DIT = {
    "4b": dict(_DIT_COMMON, num_layers=5, num_single_layers=20, num_attention_heads=24, joint_attention_dim=7680),
    "9b": dict(_DIT_COMMON, num_layers=8, num_single_layers=24, num_attention_heads=32, joint_attention_dim=12288),
}
_QWEN3_COMMON = dict(
    vocab_size=151936, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
    max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6, hidden_act="silu",
    bos_token_id=151643, eos_token_id=151645,
)  # fmt: skip
TEXT = {
    "4b": dict(_QWEN3_COMMON, hidden_size=2560, intermediate_size=9728, tie_word_embeddings=True),
    "9b": dict(_QWEN3_COMMON, hidden_size=4096, intermediate_size=12288, tie_word_embeddings=False),
}
DIT["dev"] = dict(
    _DIT_COMMON, num_layers=8, num_single_layers=48, num_attention_heads=48, joint_attention_dim=15360, guidance_embeds=True
)
MISTRAL_SMALL_3_1 = dict(
    vocab_size=131072, hidden_size=5120, intermediate_size=32768, num_hidden_layers=40, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=131072, rope_theta=1000000000.0, rms_norm_eps=1e-5,
    hidden_act="silu", sliding_window=None, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=11,
)  # fmt: skip
VAE: dict[str, Any] = {}  # AutoencoderKLFlux2's defaults are the real model's


def _local_config(source: str, folder: str) -> dict[str, Any] | None:
    repo = source.partition(":")[0]
    path = Path(os.environ.get("DIFFSYNTH_MODEL_BASE_PATH", "models")) / repo / folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _text_encoder(size: str, local: dict[str, Any] | None):
    """(meta builder of the text model, tiny tokenizer) for plan; dev: MistralModel, klein: Qwen3Model."""
    from transformers import Mistral3Config, MistralConfig, MistralModel, Qwen3Config, Qwen3Model

    if size == "dev":
        cfg = Mistral3Config.from_dict(local).text_config if local else MistralConfig(**MISTRAL_SMALL_3_1)
        from .tiny_dev import build_mistral_tokenizer

        return (lambda: MistralModel(cfg)), build_mistral_tokenizer()
    from .tiny import build_tokenizer

    qwen = Qwen3Config.from_dict(local or TEXT[size])
    return (lambda: Qwen3Model(qwen)), build_tokenizer()


class Planning:
    """The family's `plan_pipeline`."""

    def plan_pipeline(self, variant: str | None, context):
        """Real-size dit, text encoder and vae on the meta device; the tiny tokenizer padding every
        prompt to the pipelines' 512 tokens."""
        from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel

        from diffsynth.plugin import UserError, empty_module, init_args

        from .inputs import MAX_LENGTH
        from .pipeline import MISTRAL3, QWEN3, SCHEDULE, Flux2Modules
        from .spec import DEFAULT_GUIDANCE

        variants = {v.name: v for v in FAMILY.variants}
        chosen = variants.get(variant or FAMILY.variants[0].name)
        if chosen is None:
            raise UserError(f"flux2 plan: unknown variant {variant!r} ({', '.join(variants)})")
        size = "dev" if chosen.name == "dev" else "9b" if "9b" in chosen.name else "4b"
        text_source, dit_source, vae_source = chosen.model_sources
        dtype = context.torch_dtype
        dit_cfg = init_args(Flux2Transformer2DModel, _local_config(dit_source, "transformer") or DIT[size])
        vae_cfg = init_args(AutoencoderKLFlux2, _local_config(vae_source, "vae") or VAE)
        build_text, tokenizer = _text_encoder(size, _local_config(text_source, "text_encoder"))
        modules = {
            "dit": empty_module(lambda: Flux2Transformer2DModel(**dit_cfg), dtype),
            "text_encoder": empty_module(build_text, dtype),
            "vae": empty_module(lambda: AutoencoderKLFlux2(**vae_cfg), dtype),
        }
        tokenizer.model_max_length = MAX_LENGTH
        return Flux2Modules(
            modules=modules, schedule=SCHEDULE, denoiser="dit", tokenizer=tokenizer,
            text_encoder_kind=MISTRAL3 if size == "dev" else QWEN3,
            guidance=float(getattr(context.options, "guidance", DEFAULT_GUIDANCE)),
        )  # fmt: skip
