"""Wan modules from original-format (or diffusers-format) checkpoints (`Loading`, the family's
`load_pipeline`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from diffsynth.plugin import CheckpointGroup, FamilyPipeline, FlowMatchSchedule, ModelFiles, RunContext, UserError
from diffsynth.plugin import build_module, load_state_dict

from . import configs, convert

# DiffSynth-Studio trains every Wan model on the static shift-5 schedule (FlowMatchScheduler(shift=5)).
SCHEDULE = FlowMatchSchedule(shift=5.0)
A14B_BOUNDARY_RATIO = {"t2v": 0.875, "i2v": 0.9}


@dataclass
class WanModules(FamilyPipeline):
    """dit, text_encoder, vae (and image_encoder for Wan2.1 I2V), plus the umT5 tokenizer.

    `mode` is what the checkpoints are, read from their shapes: "t2v" (DiT input = latent
    channels), "i2v" (input = 2 x latent + 4 mask channels) or "ti2v" (a Wan2.2-VAE T2V DiT
    given a first frame, which is written into the latents).
    """

    tokenizer: Any = None
    mode: str = "t2v"
    text_len: int = 512


class Loading:
    """The family's `load_pipeline`: the modules and tokenizer from identified files."""

    def load_pipeline(self, models: ModelFiles, context: RunContext) -> WanModules:
        encodes_text = "text_encoder" in models.components  # absent when training from the encoder cache
        dtype = context.torch_dtype
        check_expert_order(models)
        loaders = {
            "dit": load_dit, "dit_2": load_dit, "text_encoder": load_text_encoder, "vae": load_vae,
            "image_encoder": load_image_encoder,
        }  # fmt: skip
        modules = {name: loaders[name](models.components[name], dtype) for name in loaders if name in models.components}
        input_image = "input_image" in context.extra_inputs
        if "dit" in modules and "vae" in modules:
            mode = detect_mode(modules, input_image)
            if mode == "i2v" and modules["dit"].config.image_dim is not None and "image_encoder" not in modules:
                raise UserError(
                    f"this Wan I2V DiT takes CLIP image features: add {convert_hint()} to the model sources"
                )
        elif "vae" in modules:  # the encoder cache, without the DiT: the VAE tells I2V (Wan2.1) from TI2V (Wan2.2)
            mode = ("ti2v" if modules["vae"].config.is_residual else "i2v") if input_image else "t2v"
        else:  # training from the encoder cache: the mode only shaped the cached inputs
            mode = "t2v"
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(models.tokenizer_path)) if encodes_text else None
        dit_group = models.components.get("dit")
        text_len = ((dit_group.sibling_config() if dit_group else None) or {}).get("text_len", 512)
        experts = expert_ranges(mode) if "dit_2" in modules else {}
        return WanModules(
            modules=modules, schedule=SCHEDULE, denoiser="dit", tokenizer=tokenizer, mode=mode, text_len=text_len,
            experts=experts,
        )  # fmt: skip


def boundary_ratio(mode: str) -> float:
    """Where Wan2.2 A14B hands over from the high-noise to the low-noise expert, as a fraction of
    the 1000 training timesteps: diffusers' `boundary_ratio` (0.875 T2V, 0.9 I2V; Wan's
    `wan/configs/wan_{t2v,i2v}_A14B.py`)."""
    return A14B_BOUNDARY_RATIO["i2v" if mode == "i2v" else "t2v"]


def expert_ranges(mode: str) -> dict[str, tuple[float, float]]:
    """The sigmas each A14B expert denoises in diffusers' WanPipeline: `transformer` (high) for
    timestep t >= boundary_ratio x 1000, `transformer_2` (low) below; t = sigma x 1000."""
    boundary = boundary_ratio(mode)
    return {"high": (boundary, 1.0), "low": (0.0, boundary)}


def check_expert_order(models: ModelFiles) -> None:
    """The first DiT given is the high-noise expert (DiffSynth-Studio's order); refuse the two
    Wan-AI expert folders given the other way round."""
    from .spec import A14B_EXPERTS

    first, second = models.components.get("dit"), models.components.get("dit_2")
    if first is None or second is None:
        return
    if first.files[0].parent.name == A14B_EXPERTS[1] and second.files[0].parent.name == A14B_EXPERTS[0]:
        raise UserError(
            f"{first.source} is the low-noise expert and {second.source} the high-noise one: give the "
            f"{A14B_EXPERTS[0]}/ DiT first (the first DiT is the high-noise expert)"
        )


def convert_hint() -> str:
    from .spec import CLIP_FILE

    return CLIP_FILE


def detect_mode(modules: dict[str, torch.nn.Module], input_image: bool) -> str:
    dit_in, z = modules["dit"].config.in_channels, modules["vae"].config.z_dim
    if dit_in == 2 * z + 4:
        if not input_image:
            raise UserError("this is an image-to-video Wan DiT: pass --extra_inputs input_image")
        return "i2v"
    if dit_in != z:
        raise UserError(f"the DiT takes {dit_in} input channels but the VAE gives {z}: mismatched checkpoints")
    if input_image:
        if not modules["vae"].config.is_residual:
            raise UserError("--extra_inputs input_image needs an I2V DiT (36 input channels) or Wan2.2 TI2V-5B")
        return "ti2v"
    return "t2v"


def load_dit(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import WanTransformer3DModel

    cfg = configs.dit_config(group)
    state = convert.dit_to_module(load_state_dict(group))
    return build_module(lambda: WanTransformer3DModel(**cfg), state, group, dtype)


def load_vae(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import AutoencoderKLWan

    cfg = configs.vae_config(group.header)
    state = convert.vae_to_module(load_state_dict(group))
    return build_module(lambda: AutoencoderKLWan(**cfg), state, group, dtype)


def load_text_encoder(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import UMT5EncoderModel

    cfg = configs.t5_config(group.header)
    state = convert.t5_to_module(load_state_dict(group))
    return build_module(lambda: UMT5EncoderModel(cfg), _match_prefix(UMT5EncoderModel, cfg, state), group, dtype)


def load_image_encoder(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import CLIPVisionModel

    cfg = configs.clip_config(group.header)
    state = convert.clip_to_module(load_state_dict(group))
    return build_module(lambda: CLIPVisionModel(cfg), _match_prefix(CLIPVisionModel, cfg, state), group, dtype)


def _match_prefix(cls, cfg, state: dict) -> dict:
    """Drop or add `vision_model.`-style prefixes so keys match the module's own state_dict names
    (transformers versions differ)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        expected = set(cls(cfg).state_dict())
    if set(state) <= expected:
        return state
    out = {}
    for key, value in state.items():
        short = key.split(".", 1)[1] if "." in key else key
        if key not in expected and short not in expected and any(v is value for v in out.values()):
            continue  # a tied copy (umT5's embed_tokens is `shared`) the module does not list
        out[short if short in expected and key not in expected else key] = value
    return out
