"""`load_pipeline`: the FLUX modules and both tokenizers from identified files (either layout)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffsynth.plugin import (
    CheckpointGroup,
    DownloadSettings,
    FamilyPipeline,
    FlowMatchSchedule,
    ModelFiles,
    RunContext,
    UserError,
    build_module,
    load_state_dict,
    resolve_folder,
)

from . import configs, original_format
from .spec import DEV_REPO

# DiffSynth-Studio's FLUX training schedule: static shift 3 (diffusers' inference uses a
# resolution-dependent dynamic shift instead; training draws sigmas from this one).
SCHEDULE = FlowMatchSchedule(shift=3.0)
TOKENIZER_2 = f"{DEV_REPO}:tokenizer_2/"


@dataclass
class FluxModules(FamilyPipeline):
    """The loaded family: `modules` holds dit, text_encoder (CLIP), text_encoder_2 (T5), vae."""

    tokenizer: Any = None  # CLIP
    tokenizer_2: Any = None  # T5

    @property
    def dit(self) -> torch.nn.Module:
        return self.modules["dit"]

    @property
    def vae(self) -> torch.nn.Module:
        return self.modules["vae"]


def load(models: ModelFiles, context: RunContext) -> FluxModules:
    encodes_text = "text_encoder" in models.components  # absent when training from the encoder cache
    if models.tokenizer_path is None and encodes_text:
        raise UserError(f"flux needs the CLIP tokenizer: pass --tokenizer_path (e.g. {DEV_REPO}:tokenizer/)")
    dtype = context.torch_dtype
    loaders = {"dit": load_dit, "text_encoder": load_clip, "text_encoder_2": load_t5, "vae": load_vae}
    modules = {name: load(models.components[name], dtype) for name, load in loaders.items() if name in models.components}
    from transformers import CLIPTokenizer, T5TokenizerFast

    tokenizer = tokenizer_2 = None
    if encodes_text:
        tokenizer = CLIPTokenizer.from_pretrained(str(models.tokenizer_path))
        tokenizer_2 = T5TokenizerFast.from_pretrained(str(tokenizer_2_folder(models.tokenizer_path, context)))
    return FluxModules(modules=modules, schedule=SCHEDULE, denoiser="dit", tokenizer=tokenizer, tokenizer_2=tokenizer_2)


def tokenizer_2_folder(tokenizer_path: Path, context: RunContext) -> Path:
    """T5's tokenizer: `tokenizer_2/` beside the CLIP tokenizer folder (the repo layout), else
    FLUX.1-dev's, fetched like any source (the core names one tokenizer folder per family)."""
    sibling = Path(tokenizer_path).parent / "tokenizer_2"
    if sibling.is_dir():
        return sibling
    return resolve_folder(TOKENIZER_2, DownloadSettings.from_env(context.download_source), "--tokenizer_path")


def dit_state(group: CheckpointGroup, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """The transformer's weights in diffusers keys, from BFL's single file or diffusers shards."""
    state = load_state_dict(group)
    return original_format.transformer_to_diffusers(state) if original_format.is_original_transformer(state) else state


def vae_state(group: CheckpointGroup, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    state = load_state_dict(group)
    return original_format.vae_to_diffusers(state) if original_format.is_original_vae(state) else state


def load_dit(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    state = dit_state(group, dtype)
    cfg = configs.dit_config(group, state)
    return build_module(lambda: FluxTransformer2DModel(**cfg), state, group, dtype)


def load_vae(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    state = vae_state(group, dtype)
    cfg = configs.vae_config(group, state)
    return build_module(lambda: AutoencoderKL(**cfg), state, group, dtype)


def load_clip(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = configs.text_config(group, CLIPTextConfig)
    from accelerate import init_empty_weights

    with init_empty_weights():
        prefixed = any(k.startswith("text_model.") for k in CLIPTextModel(cfg).state_dict())
    # files keep `text_model.*` (the real repo); transformers 5's module drops the prefix
    state = {k.removeprefix("text_model."): v for k, v in load_state_dict(group).items()}
    if prefixed:
        state = {f"text_model.{k}": v for k, v in state.items()}
    return build_module(lambda: CLIPTextModel(cfg), state, group, dtype)


def load_t5(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import T5Config, T5EncoderModel

    cfg = configs.text_config(group, T5Config)
    state = load_state_dict(group)
    # the input embedding is tied: checkpoints store it once, as either name
    shared = state.get("shared.weight", state.get("encoder.embed_tokens.weight"))
    state.setdefault("shared.weight", shared)
    state.setdefault("encoder.embed_tokens.weight", shared)
    return build_module(lambda: T5EncoderModel(cfg), state, group, dtype)
