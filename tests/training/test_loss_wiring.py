"""The core's default loss is wired exactly: the sigma the network sees is the sigma the latents
were noised with, the noisy input is (1 - s) x + s n, and the target is n - x. A recording
predictor stands in for the network, so a wrong timestep scale (e.g. `predict(noisy, s * 0.5)`),
a swapped target or a wrong noising formula fails here even when a learns test still passes."""

import torch

from diffsynth.training.family_hooks import flow_matching_loss
from diffsynth.training.flow_matching import FlowMatchSchedule
from diffsynth.types import FamilyPipeline, RunContext, TrainingInputs


class RecordingPredictor:
    def __init__(self, output: torch.Tensor) -> None:
        self.output, self.calls = output, []

    def __call__(self, noisy: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        self.calls.append((noisy.clone(), sigmas.clone()))
        return self.output


def test_the_network_sees_the_noising_sigma_and_regresses_noise_minus_latents():
    schedule = FlowMatchSchedule(shift=3.0)
    pipeline = FamilyPipeline(modules={}, schedule=schedule)
    latents = torch.randn(4, 6, 5)
    output = torch.randn(4, 6, 5)
    context = RunContext(timestep_boundaries=(0.2, 0.9))
    predict = RecordingPredictor(output)

    torch.manual_seed(7)
    loss = flow_matching_loss(pipeline, TrainingInputs(latents, None), context, predict)

    torch.manual_seed(7)  # the same draws, made here by hand: sigma then noise, sample by sample
    draws = [(schedule.sample_training_sigmas(1, min_boundary=0.2, max_boundary=0.9), torch.randn(1, 6, 5)) for _ in range(4)]
    sigmas = torch.cat([s for s, _ in draws])
    noise = torch.cat([n for _, n in draws])
    (noisy, seen), = predict.calls
    assert torch.equal(seen, sigmas)  # not a rescaled sigma
    s = sigmas.view(-1, 1, 1)
    torch.testing.assert_close(noisy, (1 - s) * latents + s * noise)
    torch.testing.assert_close(loss, ((output - (noise - latents)) ** 2).mean())
    grid = schedule.training_sigmas()
    assert grid[int(0.9 * len(grid)) - 1] <= sigmas.min() and sigmas.max() <= grid[int(0.2 * len(grid))]


def test_the_loss_mask_averages_over_counted_positions_only():
    pipeline = FamilyPipeline(modules={}, schedule=FlowMatchSchedule())
    latents = torch.zeros(1, 2, 3)
    mask = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])
    predict = RecordingPredictor(torch.zeros(1, 2, 3))
    torch.manual_seed(0)
    loss = flow_matching_loss(pipeline, TrainingInputs(latents, None, loss_mask=mask), RunContext(), predict)
    torch.manual_seed(0)
    FlowMatchSchedule().sample_training_sigmas(1)
    noise = torch.randn_like(latents)
    torch.testing.assert_close(loss, (noise[0, 0] ** 2).mean())
