"""The Qwen-Image modules, tokenizer and (Edit) processor from identified files (`Loading`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from diffsynth.plugin import FamilyPipeline, FlowMatchSchedule, ModelFiles, RunContext, UserError, build_module, load_state_dict

from . import configs

# DiffSynth-Studio's training schedule for Qwen-Image: exponential shift mu=0.8, terminal 0.02.
SCHEDULE = FlowMatchSchedule(exponential_mu=0.8, shift_terminal=0.02)


@dataclass
class QwenImageModules(FamilyPipeline):
    """The loaded family: `modules` holds dit, text_encoder, vae; plus the text front-ends."""

    tokenizer: Any = None
    #: Edit only: turns (template, edit image) into text-encoder inputs.
    processor: Any = None
    #: Edit Plus (2509/2511): references shown as "Picture N:" at the pipeline's condition size.
    edit_plus: bool = False


class Loading:
    """The family's `load_pipeline`: the modules, tokenizer and (Edit) processor from identified files."""

    def load_pipeline(self, models: ModelFiles, context: RunContext) -> QwenImageModules:
        encodes_text = "text_encoder" in models.components  # absent when training from the encoder cache
        edit = "edit_image" in context.extra_inputs and encodes_text
        if edit and models.processor_path is None:
            raise UserError(
                "qwen-image with edit_image needs the Qwen2-VL processor: pass --processor_path "
                "(e.g. Qwen/Qwen-Image-Edit:processor/)"
            )
        dtype = context.torch_dtype
        zero_cond_t = bool(getattr(context.options, "zero_cond_t", False))
        encoders = (("text_encoder", load_text_encoder), ("vae", load_vae))
        modules = {name: load(models, dtype) for name, load in encoders if name in models.components}
        if "dit" in models.components:
            modules = {"dit": load_dit(models, dtype, zero_cond_t), **modules}
            zero_cond_t = bool(modules["dit"].config.zero_cond_t)
        from transformers import Qwen2Tokenizer

        tokenizer = Qwen2Tokenizer.from_pretrained(str(models.tokenizer_path)) if encodes_text else None
        processor = None
        if edit:
            from .processor import ImageTextProcessor

            processor = ImageTextProcessor.load(models.processor_path)
        return QwenImageModules(
            modules=modules, schedule=SCHEDULE, denoiser="dit", tokenizer=tokenizer, processor=processor,
            edit_plus=edit and configs.is_edit_plus(models, zero_cond_t),
        )


def load_dit(models: ModelFiles, dtype: torch.dtype, zero_cond_t: bool = False) -> torch.nn.Module:
    """The DiT; `zero_cond_t` (--zero_cond_t) turns on diffusers' `zero_cond_t` (timestep 0 for
    the reference tokens) where the config does not already (a bare Edit-2511 file)."""
    from diffusers import QwenImageTransformer2DModel

    group = models.components["dit"]
    cfg = configs.dit_config(group)
    if zero_cond_t:
        cfg["zero_cond_t"] = True
    return build_module(lambda: QwenImageTransformer2DModel(**cfg), load_state_dict(group), group, dtype)


def load_vae(models: ModelFiles, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import AutoencoderKLQwenImage

    group = models.components["vae"]
    cfg = configs.vae_config(group)
    return build_module(lambda: AutoencoderKLQwenImage(**cfg), load_state_dict(group), group, dtype)


def load_text_encoder(models: ModelFiles, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import Qwen2_5_VLForConditionalGeneration

    group = models.components["text_encoder"]
    cfg = configs.text_encoder_config(group)
    state = configs.text_encoder_keys(load_state_dict(group))
    return build_module(lambda: Qwen2_5_VLForConditionalGeneration(cfg), state, group, dtype)
