"""Training inputs as diffusers' QwenImagePipeline / QwenImageEditPipeline /
QwenImageEditPlusPipeline build them, and the DiT call they make: prompt embeddings, packed VAE
latents (the references' after the noisy ones), img_shapes, timestep = sigma. zero_cond_t
(Edit-2511) lives in the DiT's config: diffusers' transformer applies it from img_shapes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from diffsynth.plugin import RunContext, Sample, TrainingInputs, UserError

from .pipeline import QwenImageModules
from .prompts import (
    CONDITION_IMAGE_SIZE,
    EDIT_DROP,
    EDIT_PLUS_DROP,
    EDIT_PLUS_TEMPLATE,
    EDIT_TEMPLATE,
    PICTURE_TEMPLATE,
    T2I_DROP,
    T2I_TEMPLATE,
    TOKENIZER_MAX_LENGTH,
)

VAE_FACTOR = 8  # 2 ** len(vae.temperal_downsample)
PATCH = 2  # latents are packed in 2x2 patches


@dataclass
class QwenImageConditioning:
    """What the DiT needs besides the noisy latents."""

    prompt_embeds: torch.Tensor  # (B, L, D) last hidden state, template prefix dropped
    prompt_mask: torch.Tensor  # (B, L) 1 = token
    #: (frames, rows, cols) of the packed image grid: one entry per image in the sequence
    image_shape: tuple[int, int, int]
    edit_latents: torch.Tensor | None = None  # (B, N_edit, C*4) packed, clean: every reference, in order
    edit_shapes: tuple[tuple[int, int, int], ...] = ()  # one grid per reference image

    def img_shapes(self, batch: int) -> list[list[tuple[int, int, int]]]:
        return [[self.image_shape, *self.edit_shapes]] * batch


class Training:
    """The family's training inputs and DiT call, as diffusers' Qwen-Image pipelines make them."""

    def preprocess_inputs(self, pipeline: QwenImageModules, sample: Sample, context: RunContext) -> TrainingInputs:
        image = _field_image(sample, "image")
        latents = encode_image(pipeline, image)
        image_shape = (1, latents.shape[-2] // PATCH, latents.shape[-1] // PATCH)
        if "edit_image" not in context.extra_inputs:
            embeds, mask = encode_prompt(pipeline, sample.prompt)
            return TrainingInputs(latents=pack(latents), conditioning=QwenImageConditioning(embeds, mask, image_shape))
        references = _field_images(sample, "edit_image")
        plus = pipeline.edit_plus or isinstance(sample.fields["edit_image"], list)
        vae_images = [resize_edit_image(r, image.width * image.height) for r in references]
        if plus:  # QwenImageEditPlusPipeline: each reference at 384^2 for the text encoder
            conditions = [resize_edit_image(r, CONDITION_IMAGE_SIZE) for r in references]
            embeds, mask = encode_prompt_edit_plus(pipeline, sample.prompt, conditions)
        else:
            embeds, mask = encode_prompt_edit(pipeline, sample.prompt, vae_images[0])
        encoded = [encode_image(pipeline, v) for v in vae_images]
        conditioning = QwenImageConditioning(
            embeds, mask, image_shape,
            edit_latents=torch.cat([pack(e) for e in encoded], dim=1),
            edit_shapes=tuple((1, e.shape[-2] // PATCH, e.shape[-1] // PATCH) for e in encoded),
        )  # fmt: skip
        return TrainingInputs(latents=pack(latents), conditioning=conditioning)

    def predict_flow(
        self, pipeline: QwenImageModules, inputs: TrainingInputs, noisy_latents: torch.Tensor, sigmas: torch.Tensor
    ) -> torch.Tensor:
        """The DiT's flow prediction for the image tokens, in the packed (B, N, C*4) layout."""
        cond: QwenImageConditioning = inputs.conditioning
        dit = pipeline.dit
        hidden = noisy_latents.to(pipeline.device, pipeline.dtype)
        if cond.edit_latents is not None:  # Edit: clean edit-image tokens follow the noisy ones
            hidden = torch.cat([hidden, cond.edit_latents.to(hidden)], dim=1)
        mask = cond.prompt_mask.to(pipeline.device)
        out = dit(
            hidden_states=hidden,
            timestep=sigmas.to(hidden),  # the pipeline passes t / 1000 = sigma
            encoder_hidden_states=cond.prompt_embeds.to(hidden),
            encoder_hidden_states_mask=None if bool(mask.all()) else mask,  # the pipeline drops an all-ones mask
            img_shapes=cond.img_shapes(noisy_latents.shape[0]),
            return_dict=False,
        )[0]
        return out[:, : noisy_latents.shape[1]]


def encode_image(pipe: QwenImageModules, image: Image.Image) -> torch.Tensor:
    """PIL -> normalised VAE latents (1, C, 1, h, w), deterministic (the posterior mode)."""
    vae = pipe.vae
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
    pixels = pixels.permute(2, 0, 1)[None, :, None].to(pipe.device, pipe.dtype)  # (1, 3, 1, H, W): the VAE is 3-D
    latents = vae.encode(pixels).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
    return (latents - mean) / std


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, 1, h, w) -> (B, h/2 * w/2, C*4), QwenImagePipeline._pack_latents."""
    b, c, _, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of `pack` for a latent grid of `height` x `width` (the VAE's latent size)."""
    b, _, c4 = latents.shape
    x = latents.view(b, height // 2, width // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c4 // 4, 1, height, width)


def encode_prompt(pipe: QwenImageModules, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = pipe.tokenizer(
        [T2I_TEMPLATE.format(prompt)],
        max_length=TOKENIZER_MAX_LENGTH + T2I_DROP,
        padding=True,
        truncation=True,
        return_tensors="pt",
    )
    return _last_hidden(pipe, T2I_DROP, tokens["input_ids"], tokens["attention_mask"])


def encode_prompt_edit(pipe: QwenImageModules, prompt: str, edit: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    return _encode_with_images(pipe, EDIT_DROP, EDIT_TEMPLATE.format(prompt), edit)


def encode_prompt_edit_plus(pipe: QwenImageModules, prompt: str, references: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    """QwenImageEditPlusPipeline._get_qwen_prompt_embeds: "Picture N: <vision>" per reference."""
    pictures = "".join(PICTURE_TEMPLATE.format(i + 1) for i in range(len(references)))
    return _encode_with_images(pipe, EDIT_PLUS_DROP, EDIT_PLUS_TEMPLATE.format(pictures + prompt), references)


def _encode_with_images(pipe: QwenImageModules, drop: int, text: str, images) -> tuple[torch.Tensor, torch.Tensor]:
    """The processor's tokens + pixels of `text` with its images, through the text encoder."""
    inputs = pipe.processor(text=[text], images=images, padding=True, return_tensors="pt")
    return _last_hidden(
        pipe,
        drop,
        inputs["input_ids"],
        inputs["attention_mask"],
        pixel_values=inputs["pixel_values"].to(pipe.device, pipe.dtype),
        image_grid_thw=inputs["image_grid_thw"].to(pipe.device),
    )


def _last_hidden(pipe: QwenImageModules, drop: int, input_ids, attention_mask, **vision) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-layer hidden states of the real tokens, the template's first `drop` tokens removed."""
    input_ids, attention_mask = input_ids.to(pipe.device), attention_mask.to(pipe.device)
    out = pipe.text_encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **vision)
    hidden = out.hidden_states[-1]
    keep = attention_mask.bool()
    rows = [h[m][drop:] for h, m in zip(hidden, keep)]
    width = max(r.shape[0] for r in rows)
    embeds = torch.stack([torch.cat([r, r.new_zeros(width - r.shape[0], r.shape[1])]) for r in rows])
    mask = torch.stack(
        [torch.cat([r.new_ones(r.shape[0], dtype=torch.long), r.new_zeros(width - r.shape[0], dtype=torch.long)]) for r in rows]
    )
    return embeds, mask


def resize_edit_image(image: Image.Image, target_area: int) -> Image.Image:
    """diffusers' `calculate_dimensions`: keep the edit image's aspect ratio at `target_area`
    pixels, sides rounded to 32, Lanczos. For the VAE the pipelines use 1024*1024; we use the
    training image's area so small-resolution training stays small (at 1024x1024 the two agree);
    for the Edit Plus text encoder, 384*384 as the pipeline does."""
    ratio = image.width / image.height
    width = math.sqrt(target_area * ratio)
    height = width / ratio
    width, height = max(32, round(width / 32) * 32), max(32, round(height / 32) * 32)
    if (width, height) == image.size:
        return image
    return image.resize((width, height), Image.LANCZOS)


def _field_images(sample: Sample, name: str) -> list[Image.Image]:
    """A column's image, or its list of images (a JSON list of paths in the metadata)."""
    value = sample.fields.get(name)
    images = value if isinstance(value, list) else [value]
    if not images or not all(isinstance(i, Image.Image) for i in images):
        raise UserError(
            f"sample {sample.index}: column {name!r} must be an image file or a list of image files (add it to --data_file_keys)"
        )
    return images


def _field_image(sample: Sample, name: str) -> Image.Image:
    value = sample.fields.get(name)
    if not isinstance(value, Image.Image):
        raise UserError(f"sample {sample.index}: column {name!r} must be an image file (add it to --data_file_keys)")
    return value
