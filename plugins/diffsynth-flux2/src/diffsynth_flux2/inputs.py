"""Training inputs as diffusers' Flux2KleinPipeline (klein) and Flux2Pipeline (dev) build them,
and the transformer call they make: klein's Qwen3 chat-template prompt -> hidden states of layers
9/18/27 side by side, dev's Mistral 3 (system message + prompt) -> layers 10/20/30; VAE latents
patchified 2x2, normalised by the autoencoder's batch-norm statistics and packed to tokens with
4-D (t, h, w, l) ids; reference images as extra clean tokens at t = 10, 20, ...; timestep =
sigma; dev's embedded guidance as Flux2Pipeline passes it (float32, one per sample)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from diffsynth.plugin import RunContext, Sample, TrainingInputs, UserError

from .pipeline import MISTRAL3, Flux2Modules
from .spec import EDIT

#: the pipelines' max_sequence_length; Flux2KleinPipeline's and Flux2Pipeline's text_encoder_out_layers
MAX_LENGTH = 512
TEXT_LAYERS = (9, 18, 27)
MISTRAL_TEXT_LAYERS = (10, 20, 30)
#: the pipelines cap a reference image at this many pixels
REFERENCE_AREA = 1024 * 1024


@dataclass
class Flux2Conditioning:
    """What the DiT needs besides the noisy latents."""

    prompt_embeds: torch.Tensor  # (1, L, 3 * text width)
    text_ids: torch.Tensor  # (L, 4): (0, 0, 0, l)
    image_ids: torch.Tensor  # (N [+ N_ref], 4): (t, h, w, 0); t = 0 target, 10, 20, ... references
    #: clean reference tokens appended after the noisy ones, (1, N_ref, C)
    reference_latents: torch.Tensor | None = None


class Training:
    """The family's training inputs and DiT call, as the FLUX.2 pipelines make them."""

    def preprocess_inputs(self, pipeline: Flux2Modules, sample: Sample, context: RunContext) -> TrainingInputs:
        latents = encode(pipeline, pixels(_images(sample, "image")[0]))
        ids = [latent_ids(*latents.shape[-2:])]
        references = None
        if EDIT in context.extra_inputs:
            encoded = [encode(pipeline, reference_pixels(img)) for img in _images(sample, EDIT)]
            references = torch.cat([pack(r) for r in encoded], dim=1)
            ids += [latent_ids(*r.shape[-2:], t=10 * (i + 1)) for i, r in enumerate(encoded)]
        embeds = encode_prompt(pipeline, sample.prompt)
        conditioning = Flux2Conditioning(
            prompt_embeds=embeds,
            text_ids=text_ids(embeds.shape[1]),
            image_ids=torch.cat(ids),
            reference_latents=references,
        )
        return TrainingInputs(latents=pack(latents), conditioning=conditioning)

    def predict_flow(self, pipeline: Flux2Modules, inputs: TrainingInputs, noisy_latents: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        """The DiT's flow prediction for the target tokens, (B, N, C): the DiT sees the noisy target
        tokens followed by the clean reference tokens, whose outputs are dropped."""
        cond: Flux2Conditioning = inputs.conditioning
        batch, targets = noisy_latents.shape[:2]
        tokens = [noisy_latents.to(pipeline.device, pipeline.dtype)]
        if cond.reference_latents is not None:
            tokens.append(cond.reference_latents.to(tokens[0]).expand(batch, -1, -1))
        hidden = torch.cat(tokens, dim=1)
        out = pipeline.dit(
            hidden_states=hidden,
            encoder_hidden_states=cond.prompt_embeds.to(hidden).expand(batch, -1, -1),
            timestep=sigmas.to(hidden),  # the pipeline passes t / 1000 = sigma; the DiT scales it back
            img_ids=cond.image_ids.to(pipeline.device),
            txt_ids=cond.text_ids.to(pipeline.device),
            guidance=embedded_guidance(pipeline, batch),
            return_dict=False,
        )[0]
        return out[:, :targets]


def embedded_guidance(pipe: Flux2Modules, batch: int) -> torch.Tensor | None:
    """None for klein (no guidance embedding); dev: the training guidance as Flux2Pipeline passes
    its guidance_scale, `torch.full([1], g, dtype=float32).expand(B)`."""
    if not pipe.dit.config.guidance_embeds:
        return None
    return torch.full([1], pipe.guidance, device=pipe.device, dtype=torch.float32).expand(batch)


def pixels(image: Image.Image) -> torch.Tensor:
    """PIL -> (1, 3, H, W) in [-1, 1]."""
    array = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
    return array.permute(2, 0, 1)[None]


def encode(pipe: Flux2Modules, image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) pixels -> (1, 4C, H/16, W/16): the posterior mode, patchified 2x2 and
    normalised with the VAE's batch-norm statistics (Flux2KleinPipeline._encode_vae_image)."""
    vae = pipe.vae
    latents = vae.encode(image.to(pipe.device, pipe.dtype)).latent_dist.mode()
    b, c, h, w = latents.shape
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
    mean = vae.bn.running_mean.view(1, -1, 1, 1).to(patches)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1).to(patches) + vae.config.batch_norm_eps)
    return (patches - mean) / std


def reference_pixels(image: Image.Image) -> torch.Tensor:
    """A reference image as the pipelines prepare it: at most 1024x1024 pixels (aspect kept),
    sides cropped down to multiples of 16, (1, 3, H, W) in [-1, 1]."""
    from diffusers.pipelines.flux2.image_processor import Flux2ImageProcessor

    processor = Flux2ImageProcessor(vae_scale_factor=16)
    if image.width * image.height > REFERENCE_AREA:
        image = processor._resize_to_target_area(image, REFERENCE_AREA)
    width, height = image.width // 16 * 16, image.height // 16 * 16
    if width == 0 or height == 0:
        raise UserError(f"--{EDIT}: a reference image of {image.width}x{image.height} pixels is smaller than 16x16")
    return processor.preprocess(image.convert("RGB"), height=height, width=width, resize_mode="crop")


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w, C), Flux2KleinPipeline._pack_latents."""
    b, c, h, w = latents.shape
    return latents.reshape(b, c, h * w).permute(0, 2, 1)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of `pack` for a `height` x `width` token grid."""
    b, _, c = tokens.shape
    return tokens.permute(0, 2, 1).reshape(b, c, height, width)


def latent_ids(height: int, width: int, t: int = 0) -> torch.Tensor:
    """(height*width, 4) ids (t, row, col, 0) in row-major order."""
    return torch.cartesian_prod(torch.tensor([t]), torch.arange(height), torch.arange(width), torch.tensor([0]))


def text_ids(length: int) -> torch.Tensor:
    """(length, 4) ids (0, 0, 0, position)."""
    return torch.cartesian_prod(torch.tensor([0]), torch.tensor([0]), torch.tensor([0]), torch.arange(length))


def max_length(pipe: Flux2Modules) -> int:
    """The pipelines' 512, capped by a tokenizer saved with a shorter model_max_length (tiny presets)."""
    return min(MAX_LENGTH, int(pipe.tokenizer.model_max_length))


def encode_prompt(pipe: Flux2Modules, prompt: str) -> torch.Tensor:
    """(1, L, 3D): the chat-templated prompt padded to max length, the text encoder's hidden states
    after three layers concatenated per token. klein (Flux2KleinPipeline._get_qwen3_prompt_embeds):
    a user turn, generation prompt, thinking off; layers 9, 18, 27. dev
    (Flux2Pipeline._get_mistral_3_small_prompt_embeds): the pipeline's system message and the
    prompt (without `[IMG]`) as text blocks, no generation prompt; layers 10, 20, 30."""
    tokenizer, encoder = pipe.tokenizer, pipe.modules["text_encoder"]
    length = max_length(pipe)
    if pipe.text_encoder_kind == MISTRAL3:
        from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE

        conversation = [
            {"role": "system", "content": [{"type": "text", "text": SYSTEM_MESSAGE}]},
            {"role": "user", "content": [{"type": "text", "text": prompt.replace("[IMG]", "")}]},
        ]
        batch = tokenizer.apply_chat_template(
            [conversation], add_generation_prompt=False, tokenize=True, return_dict=True, return_tensors="pt",
            padding="max_length", truncation=True, max_length=length,
        )  # fmt: skip
        layers = MISTRAL_TEXT_LAYERS
    else:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True, enable_thinking=False
        )
        batch = tokenizer(text, return_tensors="pt", padding="max_length", truncation=True, max_length=length)
        layers = TEXT_LAYERS
    out = encoder(
        input_ids=batch["input_ids"].to(pipe.device),
        attention_mask=batch["attention_mask"].to(pipe.device),
        output_hidden_states=True,
        use_cache=False,
    )
    return torch.cat([out.hidden_states[k] for k in layers], dim=-1)


def _images(sample: Sample, name: str) -> list[Image.Image]:
    value = sample.fields.get(name)
    images = list(value) if isinstance(value, (list, tuple)) else [value]
    if not images or not all(isinstance(i, Image.Image) for i in images):
        raise UserError(f"sample {sample.index}: column {name!r} must be an image file (add it to --data_file_keys)")
    return images
