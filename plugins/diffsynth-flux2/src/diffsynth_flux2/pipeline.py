"""The FLUX.2 modules and the tokenizer (klein: Qwen's; dev: the Mistral tokenizer of its
processor folder) from identified files (diffusers folders or BFL's single transformer file):
`Loading`, the family's `load_pipeline`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from diffsynth.plugin import CheckpointGroup, FamilyPipeline, FlowMatchSchedule, ModelFiles, RunContext, UserError
from diffsynth.plugin import build_module, init_args, load_state_dict

from . import original_format
from .spec import DEFAULT_GUIDANCE

# DiffSynth-Studio's FLUX.2 training schedule (FlowMatchScheduler("FLUX.2") in training mode):
# exponential time shift with mu = 0.8 (inference uses the resolution-dependent empirical mu).
SCHEDULE = FlowMatchSchedule(exponential_mu=0.8)
QWEN3, MISTRAL3 = "qwen3", "mistral3"


@dataclass
class Flux2Modules(FamilyPipeline):
    """The loaded family: `modules` holds dit, text_encoder (klein: Qwen3Model; dev: MistralModel), vae."""

    tokenizer: Any = None
    #: the repo's model_index.json says the transformer is step-distilled (no CFG at inference)
    is_distilled: bool = False
    #: which text encoder is loaded (QWEN3: klein, MISTRAL3: dev); None without one (encoder cache)
    text_encoder_kind: str | None = None
    #: the embedded guidance a guidance-distilled DiT (dev) is called with in training
    guidance: float = DEFAULT_GUIDANCE


class Loading:
    """The family's `load_pipeline`: the modules and the tokenizer from identified files."""

    def load_pipeline(self, models: ModelFiles, context: RunContext) -> Flux2Modules:
        # no text encoder when training from the encoder cache (the core checks a loaded one has a tokenizer)
        kind = text_encoder_kind(models.components["text_encoder"]) if "text_encoder" in models.components else None
        dtype = context.torch_dtype
        loaders = {"dit": load_dit, "text_encoder": load_text_encoder, "vae": load_vae}
        modules = {name: fn(models.components[name], dtype) for name, fn in loaders.items() if name in models.components}
        tokenizer = load_tokenizer(str(models.tokenizer_path), kind) if kind is not None else None
        distilled = _is_distilled(models.components["dit"]) if "dit" in models.components else False
        return Flux2Modules(
            modules=modules, schedule=SCHEDULE, denoiser="dit", tokenizer=tokenizer, is_distilled=distilled,
            text_encoder_kind=kind, guidance=float(getattr(context.options, "guidance", DEFAULT_GUIDANCE)),
        )  # fmt: skip


def text_encoder_kind(group: CheckpointGroup) -> str:
    """QWEN3 or MISTRAL3, by the config.json beside the weights."""
    found = group.required_config("text encoder weights", "text_encoder/")
    return MISTRAL3 if found.get("model_type") == "mistral3" else QWEN3


def load_tokenizer(path: str, kind: str):
    """klein: Qwen2TokenizerFast. dev: the tokenizer of the PixtralProcessor folder (Flux2Pipeline
    only applies its chat template to text; see tiny_dev.py), its chat template read from the
    processor's legacy chat_template.json where the folder has no chat_template.jinja."""
    if kind == QWEN3:
        from transformers import Qwen2TokenizerFast

        tokenizer, marker, variant = Qwen2TokenizerFast.from_pretrained(path), "<|im_start|>", "klein-4b"
    else:
        from transformers import AutoTokenizer

        tokenizer, marker, variant = AutoTokenizer.from_pretrained(path), "[INST]", "dev"
        legacy = Path(path) / "chat_template.json"
        if tokenizer.chat_template is None and legacy.is_file():
            tokenizer.chat_template = json.loads(legacy.read_text())["chat_template"]
    if marker not in tokenizer.get_vocab():
        encoder = "Mistral 3 (FLUX.2-dev)" if kind == MISTRAL3 else "Qwen3 (FLUX.2 klein)"
        raise UserError(
            f"--tokenizer_path {path}: not the tokenizer of the {encoder} text encoder (no {marker} token); "
            f"pass --variant {variant} or that repo's tokenizer/ folder"
        )
    return tokenizer


def _is_distilled(group: CheckpointGroup) -> bool:
    """`is_distilled` of the model_index.json beside (BFL file) or above (transformer/) the files."""
    for folder in (group.files[0].parent, group.files[0].parent.parent):
        index = folder / "model_index.json"
        if index.is_file():
            return bool(json.loads(index.read_text()).get("is_distilled", False))
    return False


def dit_state(group: CheckpointGroup) -> dict[str, torch.Tensor]:
    """The transformer's weights in diffusers keys, from BFL's single file or diffusers shards."""
    state = load_state_dict(group)
    return original_format.transformer_to_diffusers(state) if original_format.is_original(state) else state


#: Flux2Transformer2DModel arguments that are one dimension of a weight: name -> (diffusers key, dim)
DIMENSIONS = {
    "in_channels": ("x_embedder.weight", 1),
    "attention_head_dim": ("transformer_blocks.0.attn.norm_q.weight", 0),
    "joint_attention_dim": ("context_embedder.weight", 1),
    "timestep_guidance_channels": ("time_guidance_embed.timestep_embedder.linear_1.weight", 1),
}


def dit_config(group: CheckpointGroup, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Flux2Transformer2DModel arguments: transformer/config.json, else read off the weights (a BFL
    file has no config; RoPE splits a head in 4 equal axes and theta is 2000 in every FLUX.2)."""
    from diffusers import Flux2Transformer2DModel

    found = group.sibling_config()
    if found and found.get("_class_name") == "Flux2Transformer2DModel":
        return init_args(Flux2Transformer2DModel, found)
    cfg: dict[str, Any] = {name: state[key].shape[dim] for name, (key, dim) in DIMENSIONS.items()}
    inner, head_dim = state["x_embedder.weight"].shape[0], cfg["attention_head_dim"]
    out_channels = state["proj_out.weight"].shape[0]
    blocks = {name: original_format.count_blocks(state, prefix) for name, prefix in
              (("num_layers", "transformer_blocks"), ("num_single_layers", "single_transformer_blocks"))}  # fmt: skip
    return dict(
        cfg,
        **blocks,
        patch_size=1,
        out_channels=None if out_channels == cfg["in_channels"] else out_channels,
        num_attention_heads=inner // head_dim,
        mlp_ratio=state["transformer_blocks.0.ff.linear_in.weight"].shape[0] / 2 / inner,
        axes_dims_rope=[head_dim // 4] * 4,
        guidance_embeds="time_guidance_embed.guidance_embedder.linear_1.weight" in state,
    )


def load_dit(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import Flux2Transformer2DModel

    state = dit_state(group)
    cfg = dit_config(group, state)
    return build_module(lambda: Flux2Transformer2DModel(**cfg), state, group, dtype)


def load_vae(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import AutoencoderKLFlux2

    found = group.sibling_config()
    if not found or found.get("_class_name") != "AutoencoderKLFlux2":
        raise UserError(f"{group.source}: no AutoencoderKLFlux2 config.json next to the VAE weights; use the repo's vae/ folder")
    cfg = init_args(AutoencoderKLFlux2, found)
    return build_module(lambda: AutoencoderKLFlux2(**cfg), load_state_dict(group), group, dtype)


def load_text_encoder(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    """The decoder without its LM head (the pipelines only read hidden states). klein: Qwen3Model
    from the files' `model.*` keys (`lm_head.weight`, untied in Qwen3-8B, dropped). dev: the text
    model of Mistral3ForConditionalGeneration as MistralModel, from `language_model.model.*` (or
    `model.language_model.*`); its vision tower, projector and LM head are not loaded (the
    pipeline encodes text only, through the same embedding and layers)."""
    found = group.sibling_config() or {}
    if text_encoder_kind(group) == MISTRAL3:
        from transformers import Mistral3Config, MistralModel

        text_cfg = Mistral3Config.from_dict(found).text_config
        prefixes = ("language_model.model.", "model.language_model.")
        state = {k.removeprefix(p): v for k, v in load_state_dict(group).items() for p in prefixes if k.startswith(p)}
        return build_module(lambda: MistralModel(text_cfg), state, group, dtype)
    from transformers import Qwen3Config, Qwen3Model

    cfg = Qwen3Config.from_dict(found)
    state = {k.removeprefix("model."): v for k, v in load_state_dict(group).items() if k != "lm_head.weight"}
    return build_module(lambda: Qwen3Model(cfg), state, group, dtype)
