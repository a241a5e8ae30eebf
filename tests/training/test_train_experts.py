"""The core's timestep-expert routing (`--train_experts`, diffsynth.training.experts), family-free:
a spec that declares two experts, per-sample routing in a mixed batch, and the flag's checks."""

from __future__ import annotations

import pytest
import torch

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.spec import ComponentSpec, ExpertSpec, FamilySpec, VariantSpec
from diffsynth.training import flow_matching as fm
from diffsynth.training.batching import stack_inputs
from diffsynth.training.experts import TrainedExpert, check_train_experts, owner, routed_loss
from diffsynth.training.timesteps import sample_sigmas
from diffsynth.types import FamilyPipeline, RunContext, TrainingInputs

HIGH = ExpertSpec("high", "dit", "noisy end", "_high")
LOW = ExpertSpec("low", "dit_2", "clean end", "_low")


def spec(experts=(HIGH, LOW)) -> FamilySpec:
    return FamilySpec(
        name="duo", description="two experts", components=(ComponentSpec("dit", "denoiser", lambda h: True),),
        variants=(VariantSpec("base", "", ()),), default_lora_targets=("0",), experts=experts,
    )  # fmt: skip


class Predictor:
    """A family's predict_flow and the core's collate: the pipeline's denoiser on the latents."""

    def predict(self, pipeline, inputs, noisy, sigmas):
        return pipeline.modules[pipeline.denoiser](noisy)

    def collate(self, batch):
        return stack_inputs(batch)


def test_the_nth_denoiser_checkpoint_is_the_nth_expert():
    family = spec()
    assert family.expert_component("dit", {"dit"}) == "dit_2"
    assert family.expert_component("dit", {"dit", "dit_2"}) is None  # a third one stays an error
    assert spec(()).expert_component("dit", {"dit"}) is None and family.expert_component("vae", {"vae"}) is None


def test_a_mixed_batch_routes_each_sample_to_its_expert():
    torch.manual_seed(0)
    modules = {"dit": torch.nn.Linear(3, 3), "dit_2": torch.nn.Linear(3, 3)}
    pipeline = FamilyPipeline(modules=modules, schedule=fm.FlowMatchSchedule(shift=5.0))
    experts = (TrainedExpert(HIGH, 0.875, 1.0), TrainedExpert(LOW, 0.0, 0.875))
    batch = [TrainingInputs(torch.randn(1, 4, 3), None) for _ in range(8)]
    context = RunContext()

    torch.manual_seed(1)
    loss = routed_loss(Predictor(), pipeline, batch, context, experts)
    loss.backward()
    # the same draws, sample by sample, each predicted by the module owning its sigma
    torch.manual_seed(1)
    draws = [(sample_sigmas(pipeline.schedule, b.latents, context), torch.randn_like(b.latents)) for b in batch]
    owners = [owner(experts, float(s)) for s, _ in draws]
    assert {o.spec.name for o in owners} == {"high", "low"}, "the seed should give a mixed batch"
    assert all((o.spec.name == "high") == (float(s) >= 0.875) for o, (s, _) in zip(owners, draws))
    with torch.no_grad():
        errors = [
            ((modules[o.spec.component](fm.add_noise(b.latents, n, s)) - fm.flow_target(b.latents, n)) ** 2).mean()
            for o, b, (s, n) in zip(owners, batch, draws)
        ]
    torch.testing.assert_close(loss.detach(), torch.stack(errors).mean())
    assert modules["dit"].weight.grad.abs().sum() > 0 and modules["dit_2"].weight.grad.abs().sum() > 0


def test_a_batch_of_one_expert_leaves_the_other_without_gradient():
    modules = {"dit": torch.nn.Linear(3, 3), "dit_2": torch.nn.Linear(3, 3)}
    pipeline = FamilyPipeline(modules=modules, schedule=fm.FlowMatchSchedule(shift=5.0))
    experts = (TrainedExpert(HIGH, 0.875, 1.0), TrainedExpert(LOW, 0.0, 0.875))
    context = RunContext(timestep_boundaries=(0.6, 1.0))  # grid indices >= 600: sigma < 0.68
    routed_loss(Predictor(), pipeline, [TrainingInputs(torch.randn(1, 4, 3), None)] * 3, context, experts).backward()
    assert modules["dit"].weight.grad is None and modules["dit_2"].weight.grad is not None


@pytest.mark.parametrize(
    ("family", "value", "extra", "message"),
    [
        (spec(()), "high,low", {}, "--train_experts: duo has one denoiser, no timestep experts"),
        (spec(), "high,mid", {}, "--train_experts: duo has no expert 'mid'; its experts: high,low"),
        (spec(), "", {}, "--train_experts: name the experts to train; duo's: high,low"),
        (spec(), "low", {}, "--train_experts low: name every expert (high,low)"),
        (spec(), "high,low", {"lora_base_model": None, "trainable_models": "dit"}, "--train_experts trains a LoRA on each expert"),
        (spec(), "high,low", {"blocks_to_swap": 2}, "--train_experts: not supported with --blocks_to_swap yet"),
    ],
)
def test_bad_values_are_one_line_errors(family, value, extra, message):
    config = TrainConfig(**{"family": "duo", "lora_base_model": "dit", "train_experts": value, **extra})
    with pytest.raises(UserError) as err:
        check_train_experts(config, family)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_without_the_flag_nothing_is_checked():
    check_train_experts(TrainConfig(family="duo", lora_base_model="dit", blocks_to_swap=2), spec())
