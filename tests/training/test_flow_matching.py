"""Flow-matching math: schedules, noising, target and the Euler sampler."""

import math

import pytest
import torch

from diffsynth.training.flow_matching import (
    FlowMatchSchedule,
    add_noise,
    euler_sample,
    flow_matching_loss,
    flow_target,
)


def test_static_shift_matches_formula():
    sched = FlowMatchSchedule(shift=3.0)
    s = torch.tensor([0.25, 0.5, 0.75])
    assert torch.allclose(sched.shift_sigmas(s), 3 * s / (1 + 2 * s))


def test_exponential_shift_with_terminal_ends_at_terminal():
    sched = FlowMatchSchedule(exponential_mu=0.8, shift_terminal=0.02)
    grid = sched.training_sigmas()
    assert grid.shape == (1000,)
    assert grid[0].item() == pytest.approx(1.0)
    assert grid[-1].item() == pytest.approx(0.02, abs=1e-6)
    assert torch.all(grid[1:] < grid[:-1])
    # mid-point of the unshifted grid goes through e^mu / (e^mu + 1/s - 1) before the stretch
    raw = FlowMatchSchedule(exponential_mu=0.8).shift_sigmas(torch.tensor([0.5], dtype=torch.float64))
    assert raw.item() == pytest.approx(math.exp(0.8) / (math.exp(0.8) + 1.0))


def test_inference_sigmas_run_from_one_to_zero():
    sigmas = FlowMatchSchedule(shift=5.0).inference_sigmas(10)
    assert sigmas.shape == (11,) and sigmas[0] == 1.0 and sigmas[-1] == 0.0


def test_boundaries_restrict_sampled_sigmas():
    sched = FlowMatchSchedule()
    gen = torch.Generator().manual_seed(0)
    # the seed's semantics: fractions of the grid counted from its noisy end
    low = sched.sample_training_sigmas(2000, gen, min_boundary=0.9, max_boundary=1.0)
    high = sched.sample_training_sigmas(2000, gen, min_boundary=0.0, max_boundary=0.1)
    assert high.min() > 0.89 and low.max() < 0.11
    full = sched.sample_training_sigmas(2000, gen)
    assert full.min() < 0.05 and full.max() > 0.95


def test_noising_and_target_are_rectified_flow():
    x0, noise = torch.randn(2, 4), torch.randn(2, 4)
    sigmas = torch.tensor([0.0, 1.0])
    noisy = add_noise(x0, noise, sigmas)
    assert torch.equal(noisy[0], x0[0]) and torch.equal(noisy[1], noise[1])
    assert torch.equal(flow_target(x0, noise), noise - x0)


def test_masked_loss_ignores_masked_positions():
    pred, target = torch.zeros(1, 4), torch.tensor([[1.0, 1.0, 5.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert flow_matching_loss(pred, target, mask).item() == pytest.approx(1.0)
    assert flow_matching_loss(pred, target).item() == pytest.approx(13.0)


@pytest.mark.parametrize("schedule", [FlowMatchSchedule(), FlowMatchSchedule(shift=3.0),
                                      FlowMatchSchedule(exponential_mu=0.8, shift_terminal=0.02)])
def test_euler_with_exact_flow_lands_on_the_data_point(schedule):
    """For a point-mass data distribution the exact flow is known; Euler must reach the point."""
    target = torch.tensor([[0.3, -1.2, 2.0]])

    def exact_flow(x, sigma):
        s = sigma.reshape(-1, 1)
        noise = (x - (1 - s) * target) / s
        return noise - target

    out = euler_sample(exact_flow, schedule, torch.randn(1, 3, generator=torch.Generator().manual_seed(0)), 8)
    assert torch.allclose(out, target, atol=1e-5)
