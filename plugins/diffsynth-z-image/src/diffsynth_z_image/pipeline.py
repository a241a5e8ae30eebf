"""The Z-Image modules and tokenizer from identified files (`Loading`), and the training inputs
and DiT call as diffusers' ZImagePipeline makes them (`Training`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from diffsynth.plugin import (
    CheckpointGroup,
    FamilyPipeline,
    FlowMatchSchedule,
    ModelFiles,
    RunContext,
    Sample,
    TrainingInputs,
    UserError,
    build_module,
    init_args,
    load_state_dict,
)

# DiffSynth-Studio trains Z-Image (base and Turbo alike) on its "Z-Image" schedule: static shift 3.
SCHEDULE = FlowMatchSchedule(shift=3.0)
#: ZImagePipeline's max_sequence_length: the prompt is truncated to this many tokens.
MAX_SEQUENCE_LENGTH = 512
#: Z-Image-Turbo's scheduler/scheduler_config.json, for a transformer without a scheduler/ folder.
DEFAULT_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "use_dynamic_shifting": False, "shift": 3.0}


@dataclass
class ZImageModules(FamilyPipeline):
    """The loaded family: `modules` holds dit, text_encoder, vae; plus the tokenizer and the
    repo's scheduler config (the one setting in which Z-Image and Z-Image-Turbo differ)."""

    tokenizer: Any = None
    scheduler_config: dict = field(default_factory=lambda: dict(DEFAULT_SCHEDULER))


@dataclass
class ZImageConditioning:
    """Per sample: the prompt's hidden states (B, L, D) and which of the L positions are tokens
    (batches of prompts of different lengths are right-padded)."""

    prompt_embeds: torch.Tensor
    prompt_mask: torch.Tensor  # (B, L) bool


class Loading:
    """The family's `load_pipeline`: the modules and tokenizer from identified files."""

    def load_pipeline(self, models: ModelFiles, context: RunContext) -> ZImageModules:
        encodes_text = "text_encoder" in models.components  # absent when training from the encoder cache
        dtype = context.torch_dtype
        loaders = {"dit": _load_dit, "text_encoder": _load_text_encoder, "vae": _load_vae}
        modules = {name: loader(models.components[name], dtype) for name, loader in loaders.items() if name in models.components}
        tokenizer = None
        if encodes_text:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(models.tokenizer_path))
        scheduler = dict(DEFAULT_SCHEDULER)
        if "dit" in models.components:
            found = models.components["dit"].files[0].parent.parent / "scheduler" / "scheduler_config.json"
            if found.is_file():
                scheduler = json.loads(found.read_text())
        return ZImageModules(modules=modules, schedule=SCHEDULE, denoiser="dit", tokenizer=tokenizer, scheduler_config=scheduler)


def _config(group: CheckpointGroup, cls: type, name: str) -> dict[str, Any]:
    return init_args(cls, group.required_config(name))


def _load_dit(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import ZImageTransformer2DModel

    cfg = _config(group, ZImageTransformer2DModel, "Z-Image transformer")
    return build_module(lambda: ZImageTransformer2DModel(**cfg), load_state_dict(group), group, dtype)


def _load_vae(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    cfg = _config(group, AutoencoderKL, "autoencoder")
    return build_module(lambda: AutoencoderKL(**cfg), load_state_dict(group), group, dtype)


def _load_text_encoder(group: CheckpointGroup, dtype: torch.dtype) -> torch.nn.Module:
    """Qwen3Model (what model_index.json names) from the saved Qwen3ForCausalLM keys (`model.*`;
    a stored `lm_head` is not part of the encoder)."""
    from transformers import Qwen3Config, Qwen3Model

    config = Qwen3Config.from_dict(group.required_config("Qwen3 text encoder", "text_encoder/"))
    state = {k.removeprefix("model."): v for k, v in load_state_dict(group).items() if not k.startswith("lm_head.")}
    return build_module(lambda: Qwen3Model(config), state, group, dtype)


# -- training inputs ----------------------------------------------------------------------------


class Training:
    """The family's training inputs and DiT call, as diffusers' ZImagePipeline makes them."""

    def preprocess_inputs(self, pipeline: ZImageModules, sample: Sample, context: RunContext) -> TrainingInputs:
        image = sample.fields.get("image")
        if not isinstance(image, Image.Image):
            raise UserError(f"sample {sample.index}: column 'image' must be an image file (add it to --data_file_keys)")
        embeds = encode_prompt(pipeline, sample.prompt)
        mask = torch.ones(embeds.shape[:1], dtype=torch.bool, device=embeds.device)
        return TrainingInputs(latents=encode_image(pipeline, image), conditioning=ZImageConditioning(embeds[None], mask[None]))

    def predict_flow(self, pipeline: ZImageModules, inputs: TrainingInputs, noisy_latents: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        """The flow `noise - x0` for latents (B, C, h, w): the DiT takes a list of (C, 1, h, w)
        images, each prompt's real tokens, and t = 1 - sigma; the pipeline steps with the negated
        output, so the flow is `-output`."""
        cond: ZImageConditioning = inputs.conditioning
        hidden = noisy_latents.to(pipeline.device, pipeline.dtype)
        batch = hidden.shape[0]
        embeds = cond.prompt_embeds.to(pipeline.device, pipeline.dtype).expand(batch, -1, -1)
        mask = cond.prompt_mask.to(pipeline.device).expand(batch, -1)
        out = pipeline.modules["dit"](
            list(hidden.unsqueeze(2).unbind(0)),
            (1.0 - sigmas).to(pipeline.device, pipeline.dtype),
            [e[m] for e, m in zip(embeds, mask)],
            return_dict=False,
        )[0]
        return -torch.stack(out).squeeze(2)


def encode_image(pipe: ZImageModules, image: Image.Image) -> torch.Tensor:
    """PIL -> (1, 16, H/8, W/8) latents, `(z - shift_factor) * scaling_factor` as the Z-Image
    img2img pipeline encodes (the posterior's mode: deterministic)."""
    vae = pipe.modules["vae"]
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
    pixels = pixels.permute(2, 0, 1)[None].to(pipe.device, pipe.dtype)
    latents = vae.encode(pixels).latent_dist.mode()
    return (latents - vae.config.shift_factor) * vae.config.scaling_factor


def encode_prompt(pipe: ZImageModules, prompt: str) -> torch.Tensor:
    """ZImagePipeline._encode_prompt for one prompt: the chat template, the text encoder's
    second-to-last hidden states of the real tokens -> (L, D)."""
    text = pipe.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    tokens = pipe.tokenizer([text], max_length=MAX_SEQUENCE_LENGTH, truncation=True, return_tensors="pt")
    ids, mask = tokens.input_ids.to(pipe.device), tokens.attention_mask.to(pipe.device).bool()
    hidden = pipe.modules["text_encoder"](input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2]
    return hidden[0][mask[0]]
