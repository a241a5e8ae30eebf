"""The training loop, on accelerate, identical for every family.

Order matters for the user's time: validate flags and the dataset (seconds) before resolving
and loading models (minutes), and write `training_args.json` before the first step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from diffsynth.config import TrainConfig
from diffsynth.data.dataset import DatasetOptions, TrainingDataset, check_dataset_quickly, first_item
from diffsynth.data.sampler import RepeatShuffleSampler
from diffsynth.errors import UserError
from diffsynth.models.resolve import model_sources, resolve_model_files
from diffsynth.plugins import FamilyRegistry
from diffsynth.spec import FamilySpec
from diffsynth.training.family_hooks import FamilyHooks
from diffsynth.training.model_card import model_card
from diffsynth.training.outputs import RunOutputs, prepare_output_dir
from diffsynth.training.progress import TrainingProgress
from diffsynth.training.trainable import TrainablePlan, apply_plan, plan_training, trained_weights
from diffsynth.types import FamilyPipeline


@dataclass
class TrainResult:
    """What a finished run produced."""

    steps: int
    files: list[Path] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def resolve_dtype(name: str) -> str:
    if name == "auto":
        return "bf16" if torch.cuda.is_available() else "fp32"
    if name not in ("fp32", "bf16", "fp16"):
        raise UserError(f"--dtype: expected auto, fp32, bf16 or fp16, got {name!r}")
    return name


def validate(config: TrainConfig, family: FamilySpec) -> None:
    """Flag checks that need no model and no data."""
    if config.task != "sft":
        raise UserError(f"--task: only 'sft' is supported, got {config.task!r}")
    if config.report_to not in ("none", "tensorboard"):
        raise UserError(f"--report_to: expected none or tensorboard, got {config.report_to!r}")
    known = {e.name for e in family.extra_inputs}
    for name in config.extra_input_names():
        if name not in known:
            raise UserError(
                f"--extra_inputs: {family.name} does not use {name!r}; it accepts: {', '.join(sorted(known)) or 'none'}"
            )
    for flag in ("num_epochs", "gradient_accumulation_steps", "dataset_repeat"):
        if getattr(config, flag) < 1:
            raise UserError(f"--{flag}: expected a positive integer, got {getattr(config, flag)}")
    if not 0.0 <= config.min_timestep_boundary < config.max_timestep_boundary <= 1.0:
        raise UserError("--min_timestep_boundary/--max_timestep_boundary: expected 0 <= min < max <= 1")
    config.dtype = resolve_dtype(config.dtype)


class Trainer:
    """One training run of one family."""

    def __init__(self, registry: FamilyRegistry, config: TrainConfig) -> None:
        self.family = registry.get(config.family)
        self.hooks = FamilyHooks(registry, self.family)
        self.config = config

    # -- set-up -------------------------------------------------------------------------------

    def _dataset(self) -> TrainingDataset:
        options = DatasetOptions.from_config(
            self.config,
            multiple=self.family.resolution_multiple,
            required_columns=("prompt", *self.config.extra_input_names()),
        )
        return TrainingDataset(options, check_dataset_quickly(options))

    def _load_pipeline(self) -> FamilyPipeline:
        files = resolve_model_files(self.family, self.config)
        return self.hooks.load_pipeline(files, self.config)

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        config = self.config
        validate(config, self.family)
        dataset = self._dataset()  # fails in seconds on a bad dataset, before any model load
        accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            log_with="tensorboard" if config.report_to == "tensorboard" else None,
            project_dir=config.output_path,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)],
        )
        main = accelerator.is_main_process
        outputs = RunOutputs(prepare_output_dir(Path(config.output_path)))
        if main:
            outputs.write_training_args(config.to_dict())
            outputs.start_loss_log()

        set_seed(config.seed)  # same LoRA init on every rank
        self.pipeline = pipeline = self._load_pipeline()
        plan = plan_training(self.family, config, pipeline)
        params = apply_plan(plan, pipeline, config)
        for module in pipeline.modules.values():
            module.to(accelerator.device)
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        # constant LR, explicitly: no hidden warm-up/down (DiffSynth's ConstantLR runs 5 steps at lr/3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        wrapped = accelerator.prepare(*[pipeline.modules[n] for n in plan.components], optimizer, scheduler)
        for name, module in zip(plan.components, wrapped[: len(plan.components)]):
            pipeline.modules[name] = module
        optimizer, scheduler = wrapped[len(plan.components) :]

        sampler = RepeatShuffleSampler(
            dataset.num_rows, config.dataset_repeat, seed=config.seed,
            rank=accelerator.process_index, world_size=accelerator.num_processes,
        )
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=1, sampler=sampler, collate_fn=first_item, num_workers=config.dataset_num_workers
        )
        steps_per_epoch = math.ceil(len(sampler) / config.gradient_accumulation_steps)
        total = steps_per_epoch * config.num_epochs
        if config.max_steps is not None:
            total = min(total, config.max_steps)
        if config.report_to == "tensorboard":
            accelerator.init_trackers("diffsynth", config={k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))})

        set_seed(config.seed, device_specific=True)  # different noise per rank
        result = TrainResult(steps=0)
        train_preprocess = any(n != pipeline.denoiser for n in plan.components)
        modules = [pipeline.modules[n] for n in plan.components]
        started = time.perf_counter()
        with TrainingProgress(total, enabled=main) as progress:
            progress.log(
                f"{self.family.name}: training {', '.join(plan.components)} "
                f"({sum(p.numel() for p in params):,} parameters) on {accelerator.device}, "
                f"{accelerator.num_processes} process(es), {total} steps"
            )
            for epoch in range(config.num_epochs):
                sampler.set_epoch(epoch)
                for sample in loader:
                    with accelerator.accumulate(*modules):
                        inputs = self.hooks.preprocess(pipeline, sample, config, with_grad=train_preprocess)
                        loss = self.hooks.loss(pipeline, inputs, config)
                        accelerator.backward(loss)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                    if not accelerator.sync_gradients:
                        continue
                    result.steps += 1
                    value = float(loss.detach().float().item())
                    result.losses.append(value)
                    lr = scheduler.get_last_lr()[0]
                    smooth = progress.advance(value, lr)
                    if main:
                        outputs.append_loss(
                            {"step": result.steps, "epoch": epoch, "loss": value, "smoothed_loss": smooth,
                             "lr": lr, "row": sample.index, "elapsed_s": round(time.perf_counter() - started, 3)}
                        )
                    if config.report_to == "tensorboard":
                        accelerator.log({"loss": value, "lr": lr}, step=result.steps)
                    if config.save_steps and result.steps % config.save_steps == 0:
                        result.files += self._save(accelerator, plan, pipeline, outputs, f"step-{result.steps}")
                    if result.steps >= total:
                        break
                if not config.save_steps:
                    result.files += self._save(accelerator, plan, pipeline, outputs, f"epoch-{epoch}")
                if result.steps >= total:
                    break
        if config.save_steps and result.steps % config.save_steps != 0:
            result.files += self._save(accelerator, plan, pipeline, outputs, f"step-{result.steps}")
        if main:
            sources = [s.spec for s in model_sources(self.family, config)]
            outputs.write_model_card(model_card(self.family, config, result.files, result.steps, sources, plan.lora_targets))
        accelerator.end_training()
        return result

    def _save(self, accelerator, plan: TrainablePlan, pipeline: FamilyPipeline, outputs: RunOutputs, stem: str) -> list[Path]:
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return []
        modules = {n: accelerator.unwrap_model(pipeline.modules[n]) for n in plan.components}
        weights = trained_weights(plan, modules, self.config)
        return outputs.write_weights(stem, self.hooks.split(weights, self.config))
