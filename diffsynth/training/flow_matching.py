"""Rectified flow, shared by every family: noising, the training target, the loss, a sampler.

`x_t = (1 - sigma) * x0 + sigma * noise`; the network predicts the flow `noise - x0`;
Euler integration from sigma = 1 (pure noise) to 0 (data) samples. Families differ only in
the sigma schedule (`FlowMatchSchedule`) and in how they call their network (`predict_flow`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

#: `predict(noisy_latents, sigmas) -> flow`, sigmas of shape (B,)
FlowPredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FlowMatchSchedule:
    """A family's sigma schedule.

    shift:            static shift, sigma' = s*sigma / (1 + (s-1)*sigma)
    exponential_mu:   exponential time shift, sigma' = e^mu / (e^mu + 1/sigma - 1)
    shift_terminal:   stretch the schedule so its last training sigma equals this value
    """

    shift: float = 1.0
    exponential_mu: float | None = None
    shift_terminal: float | None = None
    num_train_timesteps: int = 1000

    def shift_sigmas(self, sigmas: torch.Tensor) -> torch.Tensor:
        if self.exponential_mu is not None:
            mu = math.exp(self.exponential_mu)
            safe = sigmas.clamp_min(1e-12)
            shifted = mu / (mu + (1.0 / safe - 1.0))
            sigmas = torch.where(sigmas > 0, shifted, torch.zeros_like(sigmas))
        if self.shift != 1.0:
            sigmas = self.shift * sigmas / (1 + (self.shift - 1) * sigmas)
        return sigmas

    def _grid(self, num_steps: int) -> torch.Tensor:
        """`num_steps` decreasing sigmas from 1 (excluding 0), shifted and stretched."""
        base = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)[:-1]
        sigmas = self.shift_sigmas(base)
        if self.shift_terminal is not None:
            one_minus = 1.0 - sigmas
            scale = one_minus[-1] / (1.0 - self.shift_terminal)
            sigmas = 1.0 - one_minus / scale
        return sigmas

    def training_sigmas(self) -> torch.Tensor:
        """The `num_train_timesteps` sigmas training draws from (float32, decreasing)."""
        return self._grid(self.num_train_timesteps).float()

    def sample_training_sigmas(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        min_boundary: float = 0.0,
        max_boundary: float = 1.0,
    ) -> torch.Tensor:
        """Uniformly draw `batch` sigmas from the training grid.

        Boundaries are the seed's `--min/max_timestep_boundary`: fractions of the decreasing grid
        counted from its noisy end (0 = sigma 1, 1 = sigma ~0); index i is allowed when
        `min_boundary*N <= i < max_boundary*N`. So `max_boundary=0.417` keeps the noisiest
        41.7% (a high-noise expert) and `min_boundary=0.417` the rest (its low-noise partner).
        """
        n = self.num_train_timesteps
        lo, hi = int(min_boundary * n), max(int(max_boundary * n), int(min_boundary * n) + 1)
        idx = torch.randint(lo, min(hi, n), (batch,), generator=generator)  # DiffSynth's randint(min, max)
        return self.training_sigmas()[idx]

    def inference_sigmas(self, num_steps: int) -> torch.Tensor:
        """`num_steps + 1` sigmas for sampling, ending at exactly 0."""
        grid = self._grid(num_steps).float()
        return torch.cat([grid, torch.zeros(1)])


def add_noise(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """`(1 - sigma) * x0 + sigma * noise`, sigma broadcast over all but the batch dim."""
    s = sigmas.reshape(-1, *([1] * (latents.dim() - 1))).to(latents.dtype)
    return (1 - s) * latents + s * noise


def flow_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """What the network should predict: the velocity from data to noise."""
    return noise - latents


def flow_matching_loss(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error in fp32; with `mask`, averaged over the positions that count."""
    err = (prediction.float() - target.float()) ** 2
    if mask is None:
        return err.mean()
    mask = mask.to(err.dtype).expand_as(err)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


@torch.no_grad()
def euler_sample(
    predict: FlowPredictor,
    schedule: FlowMatchSchedule,
    noise: torch.Tensor,
    num_steps: int = 20,
) -> torch.Tensor:
    """Integrate from pure noise (sigma=1) to data (sigma=0) with Euler steps."""
    sigmas = schedule.inference_sigmas(num_steps).to(noise.device)
    x = noise
    for i in range(num_steps):
        sigma = sigmas[i].expand(x.shape[0])
        flow = predict(x, sigma)
        x = x + (sigmas[i + 1] - sigmas[i]).to(x.dtype) * flow.to(x.dtype)
    return x
