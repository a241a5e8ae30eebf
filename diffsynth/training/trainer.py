"""The training loop, on accelerate, identical for every family.

Order matters for the user's time: validate flags and the dataset (seconds) before resolving
and loading models (minutes), and write `training_args.json` before the first step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class PreparedRun:
    """Everything `Trainer._prepare` sets up for the loop."""

    accelerator: Any
    pipeline: FamilyPipeline
    plan: TrainablePlan
    params: list[torch.nn.Parameter]
    optimizer: Any
    scheduler: Any
    sampler: RepeatShuffleSampler
    loader: torch.utils.data.DataLoader
    outputs: RunOutputs
    total_steps: int
    started: float = field(default_factory=time.perf_counter)


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
        config = self.config
        validate(config, self.family)
        dataset = self._dataset()  # fails in seconds on a bad dataset, before any model load
        run = self._prepare(dataset)
        result = TrainResult(steps=0)
        with TrainingProgress(run.total_steps, enabled=run.accelerator.is_main_process) as progress:
            progress.log(
                f"{self.family.name}: training {', '.join(run.plan.components)} "
                f"({sum(p.numel() for p in run.params):,} parameters) on {run.accelerator.device}, "
                f"{run.accelerator.num_processes} process(es), {run.total_steps} steps"
            )
            for epoch in range(config.num_epochs):
                run.sampler.set_epoch(epoch)
                self._train_epoch(run, epoch, result, progress)
                if not config.save_steps:
                    result.files += self._save(run, f"epoch-{epoch}")
                if result.steps >= run.total_steps:
                    break
        if config.save_steps and result.steps % config.save_steps != 0:
            result.files += self._save(run, f"step-{result.steps}")
        if run.accelerator.is_main_process:
            sources = [s.spec for s in model_sources(self.family, config)]
            run.outputs.write_model_card(
                model_card(self.family, config, result.files, result.steps, sources, run.plan.lora_targets)
            )
        run.accelerator.end_training()
        return result

    def _prepare(self, dataset: TrainingDataset) -> PreparedRun:
        """Accelerator, output folder, pipeline with LoRA/freezing, optimizer and data order."""
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        config = self.config
        accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            log_with="tensorboard" if config.report_to == "tensorboard" else None,
            project_dir=config.output_path,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)],
        )
        outputs = RunOutputs(prepare_output_dir(Path(config.output_path)))
        if accelerator.is_main_process:
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
        *modules, optimizer, scheduler = accelerator.prepare(
            *[pipeline.modules[n] for n in plan.components], optimizer, scheduler
        )
        pipeline.modules.update(zip(plan.components, modules))

        sampler = RepeatShuffleSampler(
            dataset.num_rows, config.dataset_repeat, seed=config.seed,
            rank=accelerator.process_index, world_size=accelerator.num_processes,
        )
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=1, sampler=sampler, collate_fn=first_item, num_workers=config.dataset_num_workers
        )
        total = math.ceil(len(sampler) / config.gradient_accumulation_steps) * config.num_epochs
        if config.max_steps is not None:
            total = min(total, config.max_steps)
        if config.report_to == "tensorboard":
            scalars = {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers("diffsynth", config=scalars)
        set_seed(config.seed, device_specific=True)  # different noise per rank
        return PreparedRun(accelerator, pipeline, plan, params, optimizer, scheduler, sampler, loader, outputs, total)

    def _train_epoch(self, run: PreparedRun, epoch: int, result: TrainResult, progress: TrainingProgress) -> None:
        config, pipeline, accelerator = self.config, run.pipeline, run.accelerator
        train_preprocess = any(n != pipeline.denoiser for n in run.plan.components)
        modules = [pipeline.modules[n] for n in run.plan.components]
        micro_losses: list[float] = []
        rows: list[int] = []
        for sample in run.loader:
            with accelerator.accumulate(*modules):
                inputs = self.hooks.preprocess(pipeline, sample, config, with_grad=train_preprocess)
                loss = self.hooks.loss(pipeline, inputs, config)
                accelerator.backward(loss)
                run.optimizer.step()
                run.scheduler.step()
                run.optimizer.zero_grad(set_to_none=True)
            micro_losses.append(float(loss.detach().float().item()))
            rows.append(sample.index)
            if not accelerator.sync_gradients:
                continue
            result.steps += 1
            value = sum(micro_losses) / len(micro_losses)  # the optimizer step's mean loss
            result.losses.append(value)
            lr = run.scheduler.get_last_lr()[0]
            smooth = progress.advance(value, lr)
            if accelerator.is_main_process:
                run.outputs.append_loss(
                    {"step": result.steps, "epoch": epoch, "loss": value, "smoothed_loss": smooth, "lr": lr,
                     "rows": rows, "elapsed_s": round(time.perf_counter() - run.started, 3)}
                )
            if config.report_to == "tensorboard":
                accelerator.log({"loss": value, "lr": lr}, step=result.steps)
            micro_losses, rows = [], []
            if config.save_steps and result.steps % config.save_steps == 0:
                result.files += self._save(run, f"step-{result.steps}")
            if result.steps >= run.total_steps:
                return

    def _save(self, run: PreparedRun, stem: str) -> list[Path]:
        """Write the trained weights as `<stem>*.safetensors` (main process only)."""
        run.accelerator.wait_for_everyone()
        if not run.accelerator.is_main_process:
            return []
        modules = {n: run.accelerator.unwrap_model(run.pipeline.modules[n]) for n in run.plan.components}
        weights = trained_weights(run.plan, modules, self.config)
        return run.outputs.write_weights(stem, self.hooks.split(weights, self.config))
