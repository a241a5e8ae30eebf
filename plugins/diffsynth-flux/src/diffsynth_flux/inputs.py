"""Training inputs as diffusers' FluxPipeline / FluxKontextPipeline build them, and the DiT call
they make: CLIP pooled + T5 sequence embeddings, packed 2x2 latents, position ids, embedded
guidance, timestep = sigma; Kontext reference latents joined to the image tokens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from diffsynth.plugin import RunContext, Sample, TrainingInputs, UserError

from .pipeline import FluxModules

KONTEXT = "kontext_images"
# FluxPipeline's max_sequence_length and DiffSynth-Studio's t5_sequence_length; a tokenizer
# saved with a shorter model_max_length (the tiny presets) caps it.
T5_MAX_LENGTH = 512
DEFAULT_GUIDANCE = 1.0


@dataclass
class FluxConditioning:
    """What the DiT needs besides the noisy latents."""

    prompt_embeds: torch.Tensor  # (B, L, D) T5 last hidden state
    pooled_embeds: torch.Tensor  # (B, D) CLIP pooled output
    text_ids: torch.Tensor  # (L, 3) all zero, as the pipeline makes them
    image_ids: torch.Tensor  # (N [+ N_ref], 3): (0 | 1 for references, row, col)
    guidance: float
    #: Kontext: clean reference tokens appended after the noisy ones, (B, N_ref, C*4)
    reference_latents: torch.Tensor | None = None

    def dit_arguments(self, dit: torch.nn.Module, like: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """The DiT's conditioning keywords, batched, on the device and in the dtype of `like` (B, N, C);
        embedded guidance only for a guidance-distilled DiT."""
        batch = like.shape[0]
        return {
            "guidance": torch.full((batch,), self.guidance).to(like) if dit.config.guidance_embeds else None,
            "pooled_projections": self.pooled_embeds.to(like).expand(batch, -1),
            "encoder_hidden_states": self.prompt_embeds.to(like).expand(batch, -1, -1),
            "txt_ids": self.text_ids.to(like),
            "img_ids": self.image_ids.to(like),
        }


class Training:
    """The family's `preprocess_inputs` and `predict_flow`."""

    def preprocess_inputs(self, pipeline: FluxModules, sample: Sample, context: RunContext) -> TrainingInputs:
        latents = encode_image(pipeline, _image(sample, "image"))
        ids = [latent_ids(latents.shape[-2] // 2, latents.shape[-1] // 2)]
        references = []
        if KONTEXT in context.extra_inputs:
            for image in _images(sample, KONTEXT):
                ref = encode_image(pipeline, image)
                ref_ids = latent_ids(ref.shape[-2] // 2, ref.shape[-1] // 2)
                ref_ids[:, 0] = 1  # FluxKontextPipeline: reference ids differ from the target's in dim 0
                references.append(pack(ref))
                ids.append(ref_ids)
        prompt_embeds, pooled = encode_prompt(pipeline, sample.prompt)
        conditioning = FluxConditioning(
            prompt_embeds=prompt_embeds,
            pooled_embeds=pooled,
            text_ids=torch.zeros(prompt_embeds.shape[1], 3),
            image_ids=torch.cat(ids),
            guidance=float(getattr(context.options, "guidance", DEFAULT_GUIDANCE)),
            reference_latents=torch.cat(references, dim=1) if references else None,
        )
        return TrainingInputs(latents=pack(latents), conditioning=conditioning)

    def predict_flow(
        self, pipeline: FluxModules, inputs: TrainingInputs, noisy_latents: torch.Tensor, sigmas: torch.Tensor
    ) -> torch.Tensor:
        """The DiT's flow prediction for the image tokens, in the packed (B, N, C*4) layout; Kontext's
        clean reference tokens follow them in the DiT's input, and their outputs are dropped."""
        cond: FluxConditioning = inputs.conditioning
        noisy = noisy_latents.to(pipeline.device, pipeline.dtype)
        tokens = [noisy] if cond.reference_latents is None else [noisy, cond.reference_latents.to(noisy)]
        hidden = torch.cat([t.expand(noisy.shape[0], -1, -1) for t in tokens], dim=1)
        # the pipeline passes t / 1000 = sigma as the timestep; the DiT scales it back
        out = pipeline.dit(hidden_states=hidden, timestep=sigmas.to(noisy), return_dict=False, **cond.dit_arguments(pipeline.dit, noisy))
        return out[0][:, : noisy.shape[1]]


def encode_image(pipe: FluxModules, image: Image.Image) -> torch.Tensor:
    """PIL -> normalised VAE latents (1, C, h, w), deterministic (the posterior mode, as
    FluxKontextPipeline encodes its reference image)."""
    vae = pipe.vae
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
    latents = vae.encode(pixels.permute(2, 0, 1)[None].to(pipe.device, pipe.dtype)).latent_dist.mode()
    return (latents - vae.config.shift_factor) * vae.config.scaling_factor


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h/2 * w/2, C*4), FluxPipeline._pack_latents."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of `pack` for a latent grid of `height` x `width`."""
    b, _, c4 = latents.shape
    x = latents.view(b, height // 2, width // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c4 // 4, height, width)


def latent_ids(rows: int, cols: int) -> torch.Tensor:
    """(rows*cols, 3) position ids (0, row, col), FluxPipeline._prepare_latent_image_ids."""
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3)


def encode_prompt(pipe: FluxModules, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(T5 sequence (1, L, D), CLIP pooled (1, D)), padded to max length as the pipeline does."""
    clip, t5 = pipe.modules["text_encoder"], pipe.modules["text_encoder_2"]
    clip_ids = pipe.tokenizer(
        [prompt], padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    pooled = clip(clip_ids.to(pipe.device), output_hidden_states=False).pooler_output
    t5_ids = pipe.tokenizer_2(
        [prompt], padding="max_length", max_length=t5_length(pipe), truncation=True, return_tensors="pt"
    ).input_ids
    embeds = t5(t5_ids.to(pipe.device), output_hidden_states=False)[0]
    return embeds, pooled


def t5_length(pipe: FluxModules) -> int:
    return min(T5_MAX_LENGTH, int(pipe.tokenizer_2.model_max_length))


def _images(sample: Sample, name: str) -> list[Image.Image]:
    value = sample.fields.get(name)
    images = value if isinstance(value, (list, tuple)) else [value]
    if not images or not all(isinstance(i, Image.Image) for i in images):
        raise UserError(f"sample {sample.index}: column {name!r} must be an image file (add it to --data_file_keys)")
    return list(images)


def _image(sample: Sample, name: str) -> Image.Image:
    return _images(sample, name)[0]
