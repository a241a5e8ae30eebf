"""Timestep experts trained in one run (`--train_experts`), for any family that declares them.

A family with several denoisers that split the noise schedule (`FamilySpec.experts`, noisiest
first) loads each expert as its own component, and its `load_pipeline` says which sigmas each one
owns (`FamilyPipeline.experts`), as the model's inference pipeline switches between them. A run
with `--train_experts` then puts the same LoRA on every expert and routes **per sample**: each
sample's sigma is drawn as in a single-denoiser run (`--timestep_sampling`, within
`--min/max_timestep_boundary`), and the sample trains the expert that owns that sigma. A batch
with samples of several experts runs each expert once on its own samples (its sub-batch,
collated as a batch is), and the loss is the mean over all of them, so one optimizer step moves
every expert that saw a sample and leaves the others bit-identical (their gradients stay None).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from diffsynth.config import TrainConfig
from diffsynth.errors import PluginError, UserError
from diffsynth.spec import ExpertSpec, FamilySpec
from diffsynth.training import flow_matching as fm
from diffsynth.types import FamilyPipeline, ModelFiles, RunContext, TrainingInputs

FLAG = "--train_experts"


@dataclass(frozen=True)
class TrainedExpert:
    """An expert of this run and the sigmas it owns: lowest <= sigma < highest (the noisiest
    expert also owns sigma = highest)."""

    spec: ExpertSpec
    lowest: float
    highest: float


def check_train_experts(config: TrainConfig, family: FamilySpec) -> None:
    """What the flags alone decide (before any model loads): names, and the options that do not
    combine with several experts yet."""
    names = config.train_expert_names()
    if config.train_experts is None:
        return
    if not family.experts:
        raise UserError(f"{FLAG}: {family.name} has one denoiser, no timestep experts")
    known = [e.name for e in family.experts]
    if not names:
        raise UserError(f"{FLAG}: name the experts to train; {family.name}'s: {','.join(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"{FLAG}: {family.name} has no expert {unknown[0]!r}; its experts: {','.join(known)}")
    if sorted(set(names), key=known.index) != known:
        raise UserError(
            f"{FLAG} {config.train_experts}: name every expert ({','.join(known)}); to train one expert alone, "
            "load only its checkpoint and set --min/max_timestep_boundary"
        )
    if config.lora_base_model != family.denoiser:
        raise UserError(f"{FLAG} trains a LoRA on each expert: give --lora_base_model {family.denoiser}")
    refused = {
        "--trainable_models": bool(config.trainable_model_names()),
        "--lora_checkpoint": bool(config.lora_checkpoint),
        f"--lora_type {config.lora_type}": config.lora_type != "lora",
        "--cache_dir/--cache": bool(config.cache_dir or config.cache),
        f"--task {config.task}": config.task != "sft",
        "--blocks_to_swap": bool(config.blocks_to_swap),
        "--validation_metadata_path/--validation_split": bool(config.validation_metadata_path or config.validation_split),
    }
    for flag, given in refused.items():
        if given:
            raise UserError(f"{FLAG}: not supported with {flag} yet")


def plan_experts(
    config: TrainConfig, family: FamilySpec, pipeline: FamilyPipeline, models: ModelFiles | None = None
) -> tuple[TrainedExpert, ...] | None:
    """The experts this run trains (None: a single-denoiser run), once the modules are loaded."""
    loaded = [e for e in family.experts if e.component in pipeline.modules]
    names = ",".join(e.name for e in family.experts)
    if config.train_experts is None:
        if len(loaded) > 1:
            raise UserError(
                f"{family.name}: {len(loaded)} {family.denoiser} checkpoints given (timestep experts {names}): "
                f"pass {FLAG} {names} to train them in one run, or give one"
            )
        return None
    if len(loaded) < len(family.experts):
        raise UserError(
            f"{FLAG}: the loaded {family.name} model has a single {family.denoiser}; give one checkpoint per expert "
            f"({names}), noisiest first (diffsynth models info {family.name})"
        )
    experts = []
    for spec in family.experts:
        if spec.name not in pipeline.experts:
            raise PluginError(f"{family.name}: load_pipeline loaded expert {spec.name!r} but gave no sigma range for it")
        lowest, highest = pipeline.experts[spec.name]
        experts.append(TrainedExpert(spec, float(lowest), float(highest)))
    return tuple(sorted(experts, key=lambda e: -e.lowest))


def describe(experts: tuple[TrainedExpert, ...], models: ModelFiles | None) -> str:
    """One line for the log: which checkpoint became which expert, and its sigmas."""
    parts = []
    for e in experts:
        group = models.components.get(e.spec.component) if models else None
        source = f" from {group.source}" if group is not None else ""
        parts.append(f"{e.spec.name} ({e.spec.component}{source}): sigma {e.lowest:g}..{e.highest:g}")
    return "timestep experts: " + "; ".join(parts)


def owner(experts: tuple[TrainedExpert, ...], sigma: float) -> TrainedExpert:
    """The expert that denoises `sigma` (experts sorted noisiest first)."""
    for expert in experts:
        if sigma >= expert.lowest:
            return expert
    return experts[-1]


def expert_view(pipeline: FamilyPipeline, expert: TrainedExpert) -> FamilyPipeline:
    """The pipeline as the family's `predict_flow` sees it for `expert`: its module as the denoiser."""
    modules = {**pipeline.modules, pipeline.denoiser: pipeline.modules[expert.spec.component]}
    return replace(pipeline, modules=modules)


def routed_loss(
    hooks, pipeline: FamilyPipeline, batch: list[TrainingInputs], context: RunContext, experts: tuple[TrainedExpert, ...]
) -> torch.Tensor:
    """The core's flow-matching loss over `batch` (one TrainingInputs per sample), each sample
    predicted by the expert owning its sigma. Draws sigma then noise sample by sample, as the
    single-denoiser loss does; the mean over every sample's (masked) elements."""
    from diffsynth.training.timesteps import sample_sigmas

    draws = [(sample_sigmas(pipeline.schedule, one.latents, context), torch.randn_like(one.latents, memory_format=torch.contiguous_format))
             for one in batch]  # as flow_matching_loss draws
    owners = [owner(experts, float(sigma[0])) for sigma, _ in draws]
    total: torch.Tensor | None = None
    count = 0.0
    for expert in experts:
        mine = [i for i, o in enumerate(owners) if o is expert]
        if not mine:
            continue
        group = [batch[i] for i in mine]
        inputs = group[0] if len(group) == 1 else hooks.collate(group)
        sigmas = torch.cat([draws[i][0] for i in mine]).to(inputs.latents.device)
        noise = torch.cat([draws[i][1] for i in mine])
        prediction = hooks.predict(expert_view(pipeline, expert), inputs, fm.add_noise(inputs.latents, noise, sigmas), sigmas)
        err = (prediction.float() - fm.flow_target(inputs.latents, noise).float()) ** 2
        if inputs.loss_mask is None:
            part, n = err.sum(), float(err.numel())
        else:
            mask = inputs.loss_mask.to(err.dtype).expand_as(err)
            part, n = (err * mask).sum(), float(mask.sum())
        total = part if total is None else total + part
        count += n
    assert total is not None  # every sample has an owner
    return total / max(count, 1.0)
