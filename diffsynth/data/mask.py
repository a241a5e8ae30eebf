"""Masked loss: an optional `mask` column names an image whose white pixels count.

The mask is loaded and fitted to the sample's size like the image, then brought to the latents'
layout by area-averaging (grey pixels give fractional weights), generically from the latents'
shape:

- `(B, C, h, w)` and `(B, C, T, h, w)` (FLUX-style grids, Wan videos): the mask is averaged onto
  the `h x w` grid (the same mask for every frame);
- `(B, tokens, D)`, tokens packed row by row from a patch grid (FLUX and Qwen-Image 2x2 packing,
  the toy family): onto the grid of `tokens` patches with the image's aspect ratio.

A family whose latents are laid out otherwise (tokens not a row-major grid of the image) sets
`TrainingInputs.loss_mask` itself or writes `compute_loss`; a mask that cannot be placed is an
error naming the row. A family's own `loss_mask` (e.g. Wan TI2V's given first frame) is
multiplied in. Families with their own `compute_loss` decide whether they honour `loss_mask`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from diffsynth.errors import UserError

MASK_COLUMN = "mask"


def mask_grid(image, latents: torch.Tensor) -> torch.Tensor:
    """The mask image (PIL) as weights broadcastable to `latents`."""
    pixels = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255.0)[None, None]
    height, width = pixels.shape[-2:]
    if latents.dim() in (4, 5):
        grid = torch.nn.functional.interpolate(pixels, size=tuple(latents.shape[-2:]), mode="area")
        return grid if latents.dim() == 4 else grid[:, :, None]
    if latents.dim() == 3:
        tokens = latents.shape[1]
        factor = math.sqrt(height * width / tokens)
        rows, cols = round(height / factor), round(width / factor)
        if rows * cols != tokens:
            raise UserError(
                f"mask column: {tokens} latent tokens are not a grid of a {width}x{height} image; "
                "this family's latents cannot take a mask"
            )
        grid = torch.nn.functional.interpolate(pixels, size=(rows, cols), mode="area")
        return grid.flatten(2).transpose(1, 2)  # (1, tokens, 1)
    raise UserError(f"mask column: latents of shape {tuple(latents.shape)} have no image grid; this family cannot take a mask")


def apply_mask(inputs, sample) -> None:
    """Fold the sample's mask (if its row has one) into `inputs.loss_mask`, in place."""
    image = sample.fields.get(MASK_COLUMN)
    if image is None or isinstance(image, str):
        return
    try:
        weights = mask_grid(image, inputs.latents).to(inputs.latents.device, torch.float32)
    except UserError as exc:
        raise UserError(f"dataset row {sample.index + 1}: {exc}") from None
    weights = weights.expand_as(inputs.latents)
    inputs.loss_mask = weights if inputs.loss_mask is None else inputs.loss_mask.to(weights) * weights
