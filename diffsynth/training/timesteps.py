"""How training draws its noise levels (`--timestep_sampling`), shared by every family.

`uniform` is the seed's (DiffSynth-Studio's) behaviour and stays the default: a uniform index into
the family's own shifted schedule grid. The others are musubi-tuner's, with its names and meanings,
drawing a continuous sigma in (0, 1):

- `logit_normal`: sigmoid(N(logit_mean, logit_std)) (SD3's "lognorm"; musubi's
  `--weighting_scheme logit_normal`);
- `sigmoid`: sigmoid(sigmoid_scale * N(0, 1));
- `shift`: the sigmoid sample, then shifted by `discrete_flow_shift`: s*t / (1 + (s-1)*t);
- `resolution_shift`: the sigmoid sample, then shifted by exp(mu) with mu linear in the image's
  token count (0.5 at 256 tokens, 1.15 at 4096): diffusers' `calculate_shift` defaults; musubi
  calls it `flux_shift`, which `--timestep_sampling` accepts too (a family whose pipeline uses
  other constants should say so in its recipe).

`--min/max_timestep_boundary` still apply: the continuous sample is scaled into the sigma range
the boundaries select on the family's grid (musubi scales into [min_timestep, max_timestep] the
same way), so a pair of timestep experts still splits at the same sigma.
"""

from __future__ import annotations

import math

import torch

from diffsynth.training.flow_matching import FlowMatchSchedule

#: The dynamic shift: mu goes linearly from BASE_SHIFT at BASE_SEQ_LEN image tokens to MAX_SHIFT at
#: MAX_SEQ_LEN (diffusers' `calculate_shift` defaults).
BASE_SEQ_LEN, MAX_SEQ_LEN, BASE_SHIFT, MAX_SHIFT = 256, 4096, 0.5, 1.15


def image_seq_len(latents: torch.Tensor) -> int:
    """Image tokens of one sample, from the latents' layout: packed (B, tokens, D) sequences as
    they are; (B, C, h, w) and (B, C, T, h, w) grids counted as 2x2 patches."""
    if latents.dim() == 3:
        return int(latents.shape[1])
    h, w = latents.shape[-2], latents.shape[-1]
    frames = latents.shape[2] if latents.dim() == 5 else 1
    return int(frames * (h // 2) * (w // 2))


def resolution_mu(seq_len: int) -> float:
    m = (MAX_SHIFT - BASE_SHIFT) / (MAX_SEQ_LEN - BASE_SEQ_LEN)
    return m * seq_len + (BASE_SHIFT - m * BASE_SEQ_LEN)


def shift(t: torch.Tensor, s: float) -> torch.Tensor:
    """The static time shift s*t / (1 + (s-1)*t)."""
    return t * s / (1 + (s - 1) * t)


def sigma_range(schedule: FlowMatchSchedule, min_boundary: float, max_boundary: float) -> tuple[float, float]:
    """(lowest, highest) sigma the boundaries allow on the family's training grid; (0, 1) for the
    defaults. The grid indices follow `FlowMatchSchedule.sample_training_sigmas`."""
    n = schedule.num_train_timesteps
    lo, hi = int(min_boundary * n), max(int(max_boundary * n), int(min_boundary * n) + 1)
    grid = schedule.training_sigmas()
    highest = 1.0 if lo == 0 else float(grid[lo])
    lowest = 0.0 if hi >= n else float(grid[hi])
    return lowest, highest


def draw_unit(method: str, batch: int, *, latents: torch.Tensor | None = None, discrete_flow_shift: float = 1.0,
              sigmoid_scale: float = 1.0, logit_mean: float = 0.0, logit_std: float = 1.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """`batch` samples in (0, 1) of a continuous method (float32, CPU)."""
    normal = torch.randn(batch, generator=generator, dtype=torch.float32)
    if method == "logit_normal":
        return torch.sigmoid(normal * logit_std + logit_mean)
    t = torch.sigmoid(normal * sigmoid_scale)
    if method == "sigmoid":
        return t
    if method == "shift":
        return shift(t, discrete_flow_shift)
    if method == "resolution_shift":
        if latents is None:
            raise ValueError("resolution_shift needs the latents (their token count sets the shift)")
        return shift(t, math.exp(resolution_mu(image_seq_len(latents))))
    raise ValueError(f"unknown timestep sampling {method!r}")


def sample_sigmas(schedule: FlowMatchSchedule, latents: torch.Tensor, context, generator: torch.Generator | None = None) -> torch.Tensor:
    """The sigmas (B,) one training step uses, as `context` (a RunContext) asks."""
    method = getattr(context, "timestep_sampling", "uniform")
    low, high = context.timestep_boundaries
    batch = latents.shape[0]
    if method == "uniform":
        return schedule.sample_training_sigmas(batch, generator, min_boundary=low, max_boundary=high)
    t = draw_unit(
        method, batch, latents=latents, discrete_flow_shift=context.discrete_flow_shift,
        sigmoid_scale=context.sigmoid_scale, logit_mean=context.logit_mean, logit_std=context.logit_std,
        generator=generator,
    )
    s_low, s_high = sigma_range(schedule, low, high)
    return s_low + (s_high - s_low) * t
