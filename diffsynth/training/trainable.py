"""Decide what trains: freeze every module, then add a LoRA and/or unfreeze whole components."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.models.checkpoints import torch_dtype
from diffsynth.spec import FamilySpec
from diffsynth.training.lora import add_lora, lora_targetable_names, lora_tensors
from diffsynth.training.lora_io import LoraLayers, load_into_lora, merge_lora
from diffsynth.training.precision import store_in_fp8
from diffsynth.types import FamilyPipeline, ModelFiles, TrainedWeights


@dataclass
class TrainablePlan:
    """Which components carry a LoRA, which are trained in full, which are stored in FP8."""

    lora_component: str | None
    lora_targets: list[str]
    full_components: list[str]
    fp8_components: list[str] = field(default_factory=list)
    #: `--train_experts`: every trained expert's component (the LoRA component first) -> the suffix
    #: of its file; each gets the same LoRA (diffsynth.training.experts).
    expert_suffixes: dict[str, str] = field(default_factory=dict)

    @property
    def lora_components(self) -> list[str]:
        if not self.lora_component:
            return []
        return list(dict.fromkeys([self.lora_component, *self.expert_suffixes]))

    @property
    def components(self) -> list[str]:
        names = list(self.full_components)
        names += [n for n in self.lora_components if n not in names]
        return names


def fp8_components(config: TrainConfig, pipeline: FamilyPipeline, models: ModelFiles | None) -> list[str]:
    """`--fp8_models` entries -> component names; an entry may be a component name or the
    source string the user gave for its checkpoint."""
    by_source = {g.source: name for name, g in (models.components.items() if models else ())}
    names = []
    for entry in config.fp8_model_names():
        name = entry if entry in pipeline.modules else by_source.get(entry)
        if name is None:
            raise UserError(
                f"--fp8_models: {entry!r} is neither a component ({', '.join(pipeline.modules)}) "
                f"nor one of the model sources ({', '.join(by_source) or 'none'})"
            )
        names.append(name)
    return list(dict.fromkeys(names))


def with_fp8_storage(config: TrainConfig, models: ModelFiles, keep: frozenset[str] | set[str] = frozenset()) -> ModelFiles:
    """`models` with the checkpoints `--fp8_models` names (by component or by source) marked for
    FP8 storage while loading (`build_module`), except the components in `keep` (e.g. the one
    `--preset_lora_path` merges into: merging must happen before FP8). Unknown entries are left
    for `plan_training` to report, once the modules are known."""
    from dataclasses import replace

    wanted = set(config.fp8_model_names())
    marked = {
        name: replace(group, storage="fp8") if (name in wanted or group.source in wanted) and name not in keep else group
        for name, group in models.components.items()
    }
    return replace(models, components=marked)


def plan_training(
    family: FamilySpec, config: TrainConfig, pipeline: FamilyPipeline, models: ModelFiles | None = None
) -> TrainablePlan:
    """Validate `--lora_base_model` / `--trainable_models` / `--fp8_models` against the modules."""
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
    if lora is not None:
        check_each_target_matches(family, config.lora_targets(), pipeline.modules[lora], lora)
    fp8 = fp8_components(config, pipeline, models)
    for name in fp8:
        if name in full:
            raise UserError(
                f"--fp8_models: {name} is also in --trainable_models; FP8 weights cannot be trained "
                "(train a LoRA on it with --lora_base_model instead)"
            )
    return TrainablePlan(lora, targets, full, fp8)


def check_each_target_matches(family: FamilySpec, typed: list[str], module: torch.nn.Module, component: str) -> None:
    """Every `--lora_target_modules` entry the user typed (an alias counts through what it stands
    for) must match some module: `to_q,to_kk` would otherwise train `to_q` alone, silently."""
    from diffsynth.training.lora import lora_targetable_names, matching_module_names

    unmatched = [name for name in typed if not matching_module_names(module, family.expand_lora_targets([name]))]
    if unmatched:
        raise UserError(
            f"--lora_target_modules: {','.join(unmatched)} matches no module of {component}; "
            f"Linear layers it has: {', '.join(lora_targetable_names(module))}"
        )


def adopt_lora_checkpoint(plan: TrainablePlan, config: TrainConfig, lora: LoraLayers, module: torch.nn.Module) -> None:
    """`--lora_checkpoint`: rank and alpha come from the file; its layers are the targets unless
    `--lora_target_modules` names them."""
    names = {name for name, _ in module.named_modules()}
    if not any(layer in names for layer in lora.layers):
        raise UserError(
            f"{lora.source}: none of its {len(lora.layers)} layers is a module of {plan.lora_component} "
            f"(e.g. {', '.join(sorted(lora.layers)[:2])}); its Linear layers: {', '.join(lora_targetable_names(module))}"
        )
    if config.lora_rank is not None and config.lora_rank != lora.rank:
        raise UserError(f"--lora_rank {config.lora_rank} clashes with --lora_checkpoint {lora.source}, which has rank {lora.rank}")
    if config.lora_alpha is not None and config.lora_alpha != lora.alpha:
        raise UserError(f"--lora_alpha {config.lora_alpha:g} clashes with --lora_checkpoint {lora.source}, which has alpha {lora.alpha:g}")
    config.lora_rank, config.lora_alpha = lora.rank, lora.alpha
    if not config.lora_targets():
        plan.lora_targets = sorted(lora.layers)


def apply_plan(
    plan: TrainablePlan,
    pipeline: FamilyPipeline,
    config: TrainConfig,
    preset: tuple[str, LoraLayers] | None = None,
    resume_lora: LoraLayers | None = None,
    notes: list[str] | None = None,
) -> list[torch.nn.Parameter]:
    """Freeze everything, merge the preset LoRA, store FP8 components, add the LoRA (and load
    `resume_lora` into it), unfreeze full components; returns the trainable params.
    The merge comes before FP8 (one layer at a time, in the loaded dtype) and FP8 before the LoRA
    (see `precision`)."""
    for module in pipeline.modules.values():
        module.requires_grad_(False)
        module.eval()
    if preset is not None:
        component, layers = preset
        count = merge_lora(pipeline.modules[component], layers, component)
        _note(notes, f"merged {layers.source} into {component}: {count} layers, scale {layers.scale:g}")
    for name in plan.fp8_components:
        store_in_fp8(pipeline.modules[name], torch_dtype(config.dtype))
    for component in plan.lora_components:
        add_lora(
            pipeline.modules[component],
            component,
            plan.lora_targets,
            config.effective_lora_rank(),
            config.effective_lora_alpha(),
            lora_type=config.lora_type,
            lokr_factor=config.lokr_factor,
        )
    if plan.lora_component and resume_lora is not None:
        count = load_into_lora(pipeline.modules[plan.lora_component], resume_lora, plan.lora_component)
        _note(notes, f"continuing LoRA {resume_lora.source}: {count} of {len(resume_lora.layers)} layers matched, "
              f"rank {resume_lora.rank}, alpha {resume_lora.alpha:g}")
    for name in plan.full_components:
        pipeline.modules[name].requires_grad_(True)
    for name in plan.components:
        pipeline.modules[name].train()
        if config.use_gradient_checkpointing or config.use_gradient_checkpointing_offload:
            enable_gradient_checkpointing(pipeline.modules[name])
    return [p for name in plan.components for p in pipeline.modules[name].parameters() if p.requires_grad]


def _note(notes: list[str] | None, message: str) -> None:
    """What apply_plan did, for the caller to report (the trainer logs it once, on the main process)."""
    if notes is not None:
        notes.append(message)


def enable_gradient_checkpointing(module: torch.nn.Module) -> None:
    """diffusers (`enable_gradient_checkpointing`) or transformers (`gradient_checkpointing_enable`)."""
    if hasattr(module, "enable_gradient_checkpointing"):
        module.enable_gradient_checkpointing()
    elif hasattr(module, "gradient_checkpointing_enable"):
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        raise UserError(f"--use_gradient_checkpointing: {type(module).__name__} does not support it")


def trained_weights(
    plan: TrainablePlan, state_dicts: dict[str, dict[str, torch.Tensor]], config: TrainConfig
) -> TrainedWeights:
    """The trained tensors (on CPU) for `split_state_dict`, from each trained component's full
    state dict (gathered across processes under ZeRO/FSDP by the caller)."""
    def on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}

    tensors = {name: on_cpu(state_dicts[name]) for name in plan.full_components}
    if plan.lora_component:
        tensors = {**{n: on_cpu(lora_tensors(state_dicts[n])) for n in plan.lora_components}, **tensors}
        return TrainedWeights(
            kind="lora",
            tensors=tensors,
            lora_rank=config.effective_lora_rank(),
            lora_alpha=config.effective_lora_alpha(),
            lora_target_modules=tuple(plan.lora_targets),
            expert_suffixes=dict(plan.expert_suffixes),
        )
    return TrainedWeights(kind="full", tensors=tensors)
