"""The FLUX modules and both tokenizers from identified files, either layout (`Loading`: the
family's `load_pipeline`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffsynth.plugin import CheckpointGroup, DownloadSettings, FamilyPipeline, FlowMatchSchedule, ModelFiles
from diffsynth.plugin import RunContext, build_module, load_state_dict, resolve_folder

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


class Loading:
    """The family's `load_pipeline`: the modules and both tokenizers from identified files."""

    def load_pipeline(self, models: ModelFiles, context: RunContext) -> FluxModules:
        found = models.components
        modules = {name: load(found[name], context.torch_dtype) for name, load in _LOADERS.items() if name in found}
        pipe = FluxModules(modules=modules, schedule=SCHEDULE, denoiser="dit")
        if "text_encoder" in modules:  # absent when training from the encoder cache
            pipe.tokenizer, pipe.tokenizer_2 = load_tokenizers(models.tokenizer_path, context)
        return pipe


def load_tokenizers(tokenizer_path: Path, context: RunContext):
    """CLIP's tokenizer from `tokenizer_path` (the core checked there is one) and T5's."""
    from transformers import CLIPTokenizer, T5TokenizerFast

    clip = CLIPTokenizer.from_pretrained(str(tokenizer_path))
    return clip, T5TokenizerFast.from_pretrained(str(tokenizer_2_folder(tokenizer_path, context)))


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


#: Each component's loader (the names of spec.py's components), in the pipeline's module order.
_LOADERS = {"dit": load_dit, "text_encoder": load_clip, "text_encoder_2": load_t5, "vae": load_vae}
