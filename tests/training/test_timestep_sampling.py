"""`--timestep_sampling`: the sigmas the core's loss draws follow the named distribution
(musubi-tuner's definitions), inside the timestep boundaries, and reach the family's predictor."""

from __future__ import annotations

import math

import pytest
import torch

from diffsynth.training import timesteps as ts
from diffsynth.training.family_hooks import flow_matching_loss
from diffsynth.training.flow_matching import FlowMatchSchedule
from diffsynth.types import FamilyPipeline, RunContext, TrainingInputs

N = 40_000
KS_LIMIT = 1.63 / math.sqrt(N)  # Kolmogorov-Smirnov critical value at alpha = 0.01


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x.double() / math.sqrt(2)))


def ks_distance(samples: torch.Tensor, cdf) -> float:
    """max |empirical CDF - cdf| over the samples."""
    x, _ = torch.sort(samples.double())
    empirical = torch.arange(1, len(x) + 1, dtype=torch.float64) / len(x)
    return float((empirical - cdf(x)).abs().max())


def draw(method: str, latents=None, schedule=FlowMatchSchedule(), boundaries=(0.0, 1.0), **params) -> torch.Tensor:
    context = RunContext(timestep_sampling=method, timestep_boundaries=boundaries, **params)
    latents = latents if latents is not None else lat(N, 4, 3)
    torch.manual_seed(0)
    return ts.sample_sigmas(schedule, latents, context)


def lat(*shape: int) -> torch.Tensor:
    """Latents of `shape` without the memory (the samplers read only the shape)."""
    return torch.zeros(1).expand(*shape)


def logit(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return torch.log(x) - torch.log1p(-x)


def unshift(sigma: torch.Tensor, s: float) -> torch.Tensor:
    """Inverse of s*t / (1 + (s-1)*t)."""
    sigma = sigma.double()
    return sigma / (s - (s - 1) * sigma)


def test_uniform_is_the_seed_behaviour_bit_for_bit():
    schedule = FlowMatchSchedule(shift=3.0)
    torch.manual_seed(5)
    expected = schedule.sample_training_sigmas(64, min_boundary=0.1, max_boundary=0.9)
    context = RunContext(timestep_boundaries=(0.1, 0.9))
    torch.manual_seed(5)
    assert torch.equal(ts.sample_sigmas(schedule, torch.zeros(64, 2), context), expected)


def test_logit_normal_follows_sigmoid_of_the_normal():
    sigmas = draw("logit_normal", logit_mean=0.4, logit_std=0.7)
    assert ks_distance(sigmas, lambda x: normal_cdf((logit(x) - 0.4) / 0.7)) < KS_LIMIT
    z = logit(sigmas)
    assert abs(z.mean() - 0.4) < 0.02 and abs(z.std() - 0.7) < 0.02


def test_sigmoid_scales_the_normal():
    sigmas = draw("sigmoid", sigmoid_scale=1.5)
    assert ks_distance(sigmas, lambda x: normal_cdf(logit(x) / 1.5)) < KS_LIMIT
    assert abs(sigmas.mean() - 0.5) < 0.01  # symmetric around 1/2


def test_shift_applies_the_discrete_flow_shift():
    sigmas = draw("shift", discrete_flow_shift=3.0, sigmoid_scale=1.0)
    assert ks_distance(sigmas, lambda x: normal_cdf(logit(unshift(x, 3.0)))) < KS_LIMIT
    assert sigmas.mean() > 0.65  # shift > 1 moves mass to the noisy end


def test_resolution_shift_depends_on_the_token_count():
    # 1024 packed tokens (a 512x512 FLUX image) and the same grid as (B, C, 64, 64) latents
    packed = draw("resolution_shift", latents=lat(N, 1024, 64))
    grid = draw("resolution_shift", latents=lat(N, 16, 64, 64))
    assert torch.equal(packed, grid)
    mu = 0.5 + (1.15 - 0.5) / (4096 - 256) * (1024 - 256)
    assert ts.resolution_mu(1024) == pytest.approx(mu)
    assert ks_distance(packed, lambda x: normal_cdf(logit(unshift(x, math.exp(mu))))) < KS_LIMIT
    small, large = draw("resolution_shift", latents=lat(N, 256, 64)), draw("resolution_shift", latents=lat(N, 4096, 64))
    assert small.mean() < packed.mean() < large.mean()  # more tokens: noisier (FLUX's resolution shift)
    assert ts.image_seq_len(torch.zeros(1, 16, 3, 32, 32)) == 3 * 16 * 16  # video: frames x 2x2 patches


def test_musubis_flux_shift_is_the_resolution_shift():
    from diffsynth.config import TrainConfig
    from diffsynth.training.optim import validate_recipe

    config = TrainConfig(family="toy", timestep_sampling="flux_shift")
    validate_recipe(config)  # musubi-tuner's spelling is accepted as it is
    context = RunContext.for_run(config)
    assert context.timestep_sampling == "resolution_shift"
    latents = lat(4, 1024, 64)
    drawn = ts.sample_sigmas(FlowMatchSchedule(), latents, context, generator=torch.Generator().manual_seed(3))
    expected = ts.draw_unit("resolution_shift", 4, latents=latents, generator=torch.Generator().manual_seed(3))
    assert torch.equal(drawn, expected)


@pytest.mark.parametrize("method", ["logit_normal", "sigmoid", "shift", "resolution_shift"])
def test_boundaries_still_apply_and_split_an_expert_pair_at_one_sigma(method):
    schedule = FlowMatchSchedule(shift=5.0)  # Wan's
    split = float(schedule.training_sigmas()[417])
    high = draw(method, schedule=schedule, boundaries=(0.0, 0.417), discrete_flow_shift=2.0)
    low = draw(method, schedule=schedule, boundaries=(0.417, 1.0), discrete_flow_shift=2.0)
    assert high.min() >= split and high.max() <= 1.0
    assert low.min() >= 0.0 and low.max() <= split
    # the sample is scaled into the range, as musubi-tuner scales into [min_timestep, max_timestep]
    unit = ts.draw_unit(method, 8, latents=torch.zeros(8, 4, 3), discrete_flow_shift=2.0, generator=torch.Generator().manual_seed(1))
    scaled = ts.sample_sigmas(schedule, torch.zeros(8, 4, 3), RunContext(timestep_sampling=method, discrete_flow_shift=2.0,
                              timestep_boundaries=(0.0, 0.417)), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(scaled, split + (1.0 - split) * unit)


def test_the_core_loss_hands_the_drawn_sigmas_to_the_family():
    seen = []

    def predict(noisy, sigmas):
        seen.append(sigmas)
        return torch.zeros_like(noisy)

    pipeline = FamilyPipeline(modules={}, schedule=FlowMatchSchedule())
    context = RunContext(timestep_sampling="shift", discrete_flow_shift=3.0)
    torch.manual_seed(0)
    for _ in range(2000):
        flow_matching_loss(pipeline, TrainingInputs(latents=torch.zeros(1, 4, 3), conditioning=None), context, predict)
    sigmas = torch.cat(seen)
    assert ks_distance(sigmas, lambda x: normal_cdf(logit(unshift(x, 3.0)))) < 1.63 / math.sqrt(2000)


def test_context_for_run_carries_the_flags():
    from diffsynth.config import TrainConfig

    config = TrainConfig(timestep_sampling="logit_normal", logit_mean=-0.5, logit_std=2.0, sigmoid_scale=3.0, discrete_flow_shift=2.5)
    context = RunContext.for_run(config)
    assert (context.timestep_sampling, context.logit_mean, context.logit_std, context.sigmoid_scale, context.discrete_flow_shift) == (
        "logit_normal", -0.5, 2.0, 3.0, 2.5)
