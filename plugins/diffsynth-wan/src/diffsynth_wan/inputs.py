"""`Inputs` (the family's `preprocess_inputs` and `predict_flow`): training inputs as diffusers'
WanPipeline / WanImageToVideoPipeline build them, and the DiT call they make: umT5 context,
normalised VAE latents, I2V's CLIP feature + mask/first-frame condition, TI2V's first latent
frame (with a per-token timestep of 0 there), timestep = sigma * 1000."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from diffsynth.plugin import RunContext, Sample, TrainingInputs, UserError, resize_and_crop

from .pipeline import WanModules

TEMPORAL = 4  # the VAE packs 4 frames into one latent frame after the first
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class WanConditioning:
    """What the DiT needs besides the noisy latents."""

    prompt_embeds: torch.Tensor  # (B, text_len, D), zero past the prompt's tokens
    image_embeds: torch.Tensor | None = None  # (B, N, D_clip) CLIP penultimate layer (Wan2.1 I2V)
    condition: torch.Tensor | None = None  # (B, 4 + C, T, h, w) mask + first-frame latents (I2V)
    first_latent: torch.Tensor | None = None  # (B, C, 1, h, w) the given first frame (TI2V)

    def dit_arguments(self, dit: torch.nn.Module, hidden: torch.Tensor, timestep: torch.Tensor) -> dict[str, Any]:
        """The DiT's keyword arguments for noisy latents `hidden` (B, C, T, h, w) at `timestep` (B,):
        TI2V's given first frame written in (at timestep 0: per-token timesteps), I2V's mask +
        first-frame condition appended to the channels, the CLIP features when there are some."""
        batch = hidden.shape[0]

        def expand(t: torch.Tensor) -> torch.Tensor:
            return t.to(hidden).expand(batch, *t.shape[1:])

        if self.first_latent is not None:
            hidden = torch.cat([expand(self.first_latent), hidden[:, :, 1:]], dim=2)
            timestep = token_timesteps(hidden.shape, dit.config.patch_size, timestep)
        if self.condition is not None:
            hidden = torch.cat([hidden, expand(self.condition)], dim=1)
        return dict(
            hidden_states=hidden, timestep=timestep, encoder_hidden_states=expand(self.prompt_embeds),
            encoder_hidden_states_image=None if self.image_embeds is None else expand(self.image_embeds),
        )  # fmt: skip


class Inputs:
    """The family's training inputs and DiT call, as diffusers' Wan pipelines make them."""

    def preprocess_inputs(self, pipeline: WanModules, sample: Sample, context: RunContext) -> TrainingInputs:
        # no DiT: the encoder cache; every Wan patches 2x2
        patch = pipeline.dit.config.patch_size[1] if "dit" in pipeline.modules else 2
        frames = _frames(sample, multiple=pipeline.vae.config.scale_factor_spatial * patch)
        latents = encode_video(pipeline, frames)
        cond = WanConditioning(prompt_embeds=encode_prompt(pipeline, sample.prompt))
        mask = None
        # a 1-frame clip (a still image) given its own first frame would leave nothing to learn: train it as T2V
        if pipeline.mode == "i2v" or (pipeline.mode == "ti2v" and len(frames) > 1):
            image = _input_image(sample, frames)
            if pipeline.mode == "i2v":
                cond.condition = i2v_condition(pipeline, image, len(frames))
                if "image_encoder" in pipeline.modules:
                    cond.image_embeds = encode_clip_image(pipeline, image)
            else:  # ti2v: the first latent frame is given, so it is not denoised and not in the loss
                cond.first_latent = encode_video(pipeline, [image])
                mask = torch.ones_like(latents)
                mask[:, :, 0] = 0
        return TrainingInputs(latents=latents, conditioning=cond, loss_mask=mask)

    def predict_flow(
        self, pipeline: WanModules, inputs: TrainingInputs, noisy_latents: torch.Tensor, sigmas: torch.Tensor
    ) -> torch.Tensor:
        """The DiT's flow prediction in the latents' (B, C, T, h, w) layout."""
        hidden = noisy_latents.to(pipeline.device, pipeline.dtype)
        cond: WanConditioning = inputs.conditioning
        arguments = cond.dit_arguments(pipeline.dit, hidden, sigmas.to(hidden) * pipeline.schedule.num_train_timesteps)
        return pipeline.dit(**arguments, return_dict=False)[0].to(noisy_latents.dtype)


def token_timesteps(shape: torch.Size, patch: tuple[int, int, int], timestep: torch.Tensor) -> torch.Tensor:
    """Per-token timesteps (B, tokens), 0 for the first latent frame (the pipeline's expand_timesteps)."""
    b, _, t, h, w = shape
    mask = torch.ones(t // patch[0], h // patch[1], w // patch[2], device=timestep.device, dtype=timestep.dtype)
    mask[0] = 0
    return mask.flatten()[None] * timestep.view(b, 1)


def encode_video(pipe: WanModules, frames: list[Image.Image]) -> torch.Tensor:
    """Frames -> normalised latents (1, C, 1 + (F-1)/4, h, w), deterministic (the posterior mode)."""
    vae = pipe.vae
    pixels = torch.from_numpy(np.stack([np.asarray(f.convert("RGB"), dtype=np.float32) for f in frames]) / 127.5 - 1.0)
    pixels = pixels.permute(3, 0, 1, 2)[None].to(pipe.device, pipe.dtype)  # (1, 3, F, H, W)
    return normalize(vae, vae.encode(pixels).latent_dist.mode())


def normalize(vae, latents: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
    return (latents - mean) / std


def encode_prompt(pipe: WanModules, prompt: str) -> torch.Tensor:
    """umT5 last hidden state of the prompt, zeroed past its tokens, padded to `text_len`."""
    tokens = pipe.tokenizer(
        [prompt], padding="max_length", max_length=pipe.text_len, truncation=True,
        add_special_tokens=True, return_attention_mask=True, return_tensors="pt",
    )  # fmt: skip
    encoder = pipe.modules["text_encoder"]
    ids, mask = tokens.input_ids.to(pipe.device), tokens.attention_mask.to(pipe.device)
    hidden = encoder(ids, mask).last_hidden_state
    return hidden * mask[..., None].to(hidden.dtype)  # the pipeline trims at seq_len and pads with zeros


def i2v_condition(pipe: WanModules, image: Image.Image, num_frames: int) -> torch.Tensor:
    """WanImageToVideoPipeline.prepare_latents: VAE latents of [image, black frames...] behind a
    4-channel mask that marks the first (given) frame."""
    vae = pipe.vae
    # frames after the first are exact zeros in [-1, 1], as the pipeline's
    pixels = torch.zeros(1, 3, num_frames, image.height, image.width, device=pipe.device, dtype=pipe.dtype)
    pixels[:, :, 0] = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1).to(pixels)
    video = normalize(vae, vae.encode(pixels).latent_dist.mode())
    t, h, w = video.shape[2:]
    mask = torch.zeros(1, 1, num_frames, h, w, device=video.device, dtype=video.dtype)
    mask[:, :, 0] = 1
    mask = torch.cat([mask[:, :, :1].repeat_interleave(TEMPORAL, dim=2), mask[:, :, 1:]], dim=2)
    mask = mask.view(1, t, TEMPORAL, h, w).transpose(1, 2)  # (1, 4, t, h, w)
    return torch.cat([mask, video], dim=1)


def encode_clip_image(pipe: WanModules, image: Image.Image) -> torch.Tensor:
    """Wan's CLIP preprocessing (bicubic resize to the tower's size, CLIP mean/std) and the
    penultimate layer's hidden states, as `use_31_block=True` / diffusers' hidden_states[-2]."""
    encoder = pipe.modules["image_encoder"]
    size = encoder.config.image_size
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    pixels = F.interpolate(pixels, size=(size, size), mode="bicubic", align_corners=False)
    pixels = (pixels - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return encoder(pixel_values=pixels.to(pipe.device, pipe.dtype), output_hidden_states=True).hidden_states[-2]


def _frames(sample: Sample, multiple: int) -> list[Image.Image]:
    """The clip (`video` column, or an `image` as one frame), 1 + 4k frames, sides cropped to `multiple`."""
    value = sample.fields.get("video", sample.fields.get("image"))
    if isinstance(value, Image.Image):
        value = [value]
    if not isinstance(value, list) or not value or not isinstance(value[0], Image.Image):
        raise UserError(f"sample {sample.index}: needs a `video` (or `image`) file column; add it to --data_file_keys")
    frames = value[: 1 + (len(value) - 1) // TEMPORAL * TEMPORAL]
    w, h = frames[0].size
    if w % multiple or h % multiple:  # e.g. the Wan2.2 VAE (16x) with its 2x2 patches needs 32
        size = (max(multiple, w // multiple * multiple), max(multiple, h // multiple * multiple))
        frames = [resize_and_crop(f, *size) for f in frames]
    return frames


def _input_image(sample: Sample, frames: list[Image.Image]) -> Image.Image:
    """`input_image` when loaded as a file column, else the clip's first frame (DiffSynth's rule)."""
    value = sample.fields.get("input_image")
    if isinstance(value, list):
        value = value[0]
    if not isinstance(value, Image.Image):
        return frames[0]
    return resize_and_crop(value.convert("RGB"), *frames[0].size)
