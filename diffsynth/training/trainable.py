"""Decide what trains: freeze every module, then add a LoRA and/or unfreeze whole components."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.spec import FamilySpec
from diffsynth.training.lora import add_lora, lora_state_dict
from diffsynth.types import FamilyPipeline, TrainedWeights


@dataclass
class TrainablePlan:
    """Which components carry a LoRA and which are trained in full."""

    lora_component: str | None
    lora_targets: list[str]
    full_components: list[str]

    @property
    def components(self) -> list[str]:
        names = list(self.full_components)
        if self.lora_component and self.lora_component not in names:
            names.append(self.lora_component)
        return names


def plan_training(family: FamilySpec, config: TrainConfig, pipeline: FamilyPipeline) -> TrainablePlan:
    """Validate `--lora_base_model` / `--trainable_models` against the loaded modules."""
    known = ", ".join(pipeline.modules)
    full = config.trainable_model_names()
    for name in full:
        if name not in pipeline.modules:
            raise UserError(f"--trainable_models: {family.name} has no component {name!r}; components: {known}")
    lora = config.lora_base_model
    if lora is not None and lora not in pipeline.modules:
        raise UserError(f"--lora_base_model: {family.name} has no component {lora!r}; components: {known}")
    if lora is None and not full:
        raise UserError("nothing to train: give --lora_base_model (LoRA) or --trainable_models (full training)")
    if lora is not None and lora in full:
        raise UserError(f"--lora_base_model {lora} is also in --trainable_models; choose LoRA or full training for it")
    targets = family.expand_lora_targets(config.lora_targets() or list(family.default_lora_targets))
    return TrainablePlan(lora, targets, full)


def apply_plan(plan: TrainablePlan, pipeline: FamilyPipeline, config: TrainConfig) -> list[torch.nn.Parameter]:
    """Freeze everything, add the LoRA, unfreeze full components; returns the trainable params."""
    for module in pipeline.modules.values():
        module.requires_grad_(False)
        module.eval()
    if plan.lora_component:
        add_lora(
            pipeline.modules[plan.lora_component],
            plan.lora_component,
            plan.lora_targets,
            config.lora_rank,
            config.effective_lora_alpha(),
        )
    for name in plan.full_components:
        pipeline.modules[name].requires_grad_(True)
    for name in plan.components:
        pipeline.modules[name].train()
        if config.use_gradient_checkpointing:
            enable_gradient_checkpointing(pipeline.modules[name])
    return [p for name in plan.components for p in pipeline.modules[name].parameters() if p.requires_grad]


def enable_gradient_checkpointing(module: torch.nn.Module) -> None:
    """diffusers (`enable_gradient_checkpointing`) or transformers (`gradient_checkpointing_enable`)."""
    if hasattr(module, "enable_gradient_checkpointing"):
        module.enable_gradient_checkpointing()
    elif hasattr(module, "gradient_checkpointing_enable"):
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        raise UserError(f"--use_gradient_checkpointing: {type(module).__name__} does not support it")


def trained_weights(plan: TrainablePlan, modules: dict[str, torch.nn.Module], config: TrainConfig) -> TrainedWeights:
    """Collect the trained tensors (on CPU) for `split_state_dict`."""
    if plan.lora_component:
        tensors = {plan.lora_component: lora_state_dict(modules[plan.lora_component])}
        for name in plan.full_components:
            tensors[name] = {k: v.detach().cpu() for k, v in modules[name].state_dict().items()}
        return TrainedWeights(
            kind="lora",
            tensors=tensors,
            lora_rank=config.lora_rank,
            lora_alpha=config.effective_lora_alpha(),
            lora_target_modules=tuple(plan.lora_targets),
        )
    tensors = {name: {k: v.detach().cpu() for k, v in modules[name].state_dict().items()} for name in plan.full_components}
    return TrainedWeights(kind="full", tensors=tensors)
