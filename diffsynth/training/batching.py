"""Several samples' TrainingInputs as one batch (`--batch_size`), the core's default for
`collate_inputs`.

Tensors are joined along their batch dimension; a sequence that differs in length from sample to
sample (a prompt's tokens) is right-padded with zeros, which a mask padded the same way marks as
"no token" (families pass such masks to their network). A tensor without a batch dimension (its
first dimension is not 1, e.g. position ids shared by the batch) and every other value must be
the same for every sample; anything else is a `UserError`, since batching it would be guesswork.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

from diffsynth.errors import UserError
from diffsynth.types import TrainingInputs


def stack_inputs(batch: list[TrainingInputs]) -> TrainingInputs:
    latents = join([b.latents for b in batch], "latents", pad=False)
    masks = [b.loss_mask for b in batch]
    mask = None
    if any(m is not None for m in masks):
        mask = join([m if m is not None else torch.ones_like(b.latents) for m, b in zip(masks, batch)], "loss_mask", pad=False)
    return TrainingInputs(latents=latents, conditioning=join_values([b.conditioning for b in batch], "conditioning"), loss_mask=mask)


def join_values(values: list[Any], name: str) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        return join(values, name, pad=True)
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        fields = {f.name: join_values([getattr(v, f.name) for v in values], f"{name}.{f.name}") for f in dataclasses.fields(first)}
        return dataclasses.replace(first, **fields)
    if any(not _same(first, v) for v in values[1:]):
        raise UserError(f"--batch_size: samples differ in {name} ({first!r} vs others); train these rows with --batch_size 1")
    return first


def join(tensors: list[torch.Tensor], name: str, pad: bool) -> torch.Tensor:
    """Along dim 0 when each is one sample's (dim 0 of size 1); else they must be equal."""
    first = tensors[0]
    if first.dim() == 0 or first.shape[0] != 1:
        if any(not torch.equal(first, t) for t in tensors[1:]):
            raise UserError(f"--batch_size: samples differ in {name}, which has no batch dimension; use --batch_size 1")
        return first
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        differing = [d for d in range(first.dim()) if len({t.shape[d] for t in tensors}) > 1]
        if not pad or differing != [1]:
            raise UserError(f"--batch_size: samples differ in the shape of {name} ({sorted(shapes)}); use --batch_size 1")
        longest = max(t.shape[1] for t in tensors)
        tensors = [_pad_dim1(t, longest) for t in tensors]
    return torch.cat(tensors, dim=0)


def _pad_dim1(t: torch.Tensor, length: int) -> torch.Tensor:
    missing = length - t.shape[1]
    if missing == 0:
        return t
    # F.pad counts from the last dimension: (last_lo, last_hi, ..., dim1_lo, dim1_hi)
    return F.pad(t, [0, 0] * (t.dim() - 2) + [0, missing])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b
