"""Images a tiny preset's random VAE is calibrated on, so its latents have the statistics the
family's normalisation expects (a tiny model can then learn; see each family's tiny.py)."""

from __future__ import annotations

import torch


def calibration_images(size: int = 32) -> torch.Tensor:
    """Solid primaries/secondaries, black, white, and a horizontal and a vertical ramp, in [-1, 1],
    as (10, 3, size, size)."""
    colours = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1], [0, 0, 0], [1, 1, 1]])
    solid = colours.float().view(-1, 3, 1, 1).expand(-1, 3, size, size)
    ramp = torch.linspace(0, 1, size)
    ramps = torch.stack([ramp.view(1, size).expand(size, size), ramp.view(size, 1).expand(size, size)])
    return torch.cat([solid, ramps.view(2, 1, size, size).expand(2, 3, size, size)]) * 2 - 1
