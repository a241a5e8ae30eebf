"""The training loop, on accelerate, identical for every family.

Order matters for the user's time: validate flags and the dataset (seconds) before resolving
and loading models (minutes), and write `training_args.json` before the first step.
"""

from __future__ import annotations

import contextlib

import json
import os
import math
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from diffsynth.cache.stage import (
    DATA_PROCESS,
    TRAIN_FROM_CACHE,
    CachedRun,
    cached_inputs,
    prepare_cached_run,
    run_data_process,
)
from diffsynth.config import TrainConfig
from diffsynth.data.dataset import (
    DatasetOptions,
    TrainingDataset,
    check_dataset_quickly,
    held_out_split,
)
from diffsynth.data.buckets import BucketBatchSampler
from diffsynth.data.sampler import RepeatShuffleSampler
from diffsynth.errors import TrainingStopped, UserError
from diffsynth.models.resolve import model_sources, resolve_model_files
from diffsynth.plugins import FamilyRegistry
from diffsynth.training.block_swap import swap_for_run, to_device_except
from diffsynth.training.offload import OffloadedEncoders, offload, offloaded_components
from diffsynth.training.checkpointing import (
    CheckpointStore,
    LoadedCheckpoint,
    TrainingPosition,
    check_fingerprint,
    gather_rng,
    load_checkpoint,
    restore_rng,
)
from diffsynth.training.distributed import (
    check_engine,
    expose_module_attributes,
    is_fsdp,
    load_training_state,
    optimizer_state,
    trainable_names,
    trainable_parameters,
    trainable_state,
)
from diffsynth.training.experts import TrainedExpert, check_train_experts, describe, plan_experts, routed_loss
from diffsynth.training.family_hooks import FamilyHooks
from diffsynth.training.flag_checks import use_one_cpu_thread, validate
from diffsynth.training.loader import LoadFailure, make_loader, run_sampler
from diffsynth.training.lora_io import LoraLayers, adapter_output_files
from diffsynth.training.model_card import model_card
from diffsynth.training.recipes import RunRecipe, card_note
from diffsynth.training.outputs import RunOutputs, prepare_output_dir
from diffsynth.training.precision import activations_offloaded
from diffsynth.training.progress import TrainingProgress
from diffsynth.training.stop_signals import StopRequest
from diffsynth.training.loss_plot import write_loss_plot
from diffsynth.training.validation import (
    BEST_STEM,
    BestRecord,
    ValidationSet,
    encode_validation_set,
    read_validation_prompts,
    validation_dataset,
    validation_card_note,
    validation_loss,
    write_samples,
)
from diffsynth.training.trainable import (
    TrainablePlan,
    adopt_lora_checkpoint,
    apply_plan,
    plan_training,
    trained_weights,
    with_fp8_storage,
)
from diffsynth.types import FamilyPipeline, RunContext


@dataclass
class TrainResult:
    """What a finished run produced."""

    steps: int
    files: list[Path] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed_loss: float | None = None
    #: --keep_best: the files of the lowest val_loss (written again whenever it improves).
    best_files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    output: Path | None = None
    loss_plot: Path | None = None


@dataclass
class PreparedRun:
    """Everything `Trainer._prepare` sets up for the loop."""

    accelerator: Any
    pipeline: FamilyPipeline
    plan: TrainablePlan
    params: list[torch.nn.Parameter]
    optimizer: Any
    scheduler: Any
    sampler: RepeatShuffleSampler | BucketBatchSampler
    loader: torch.utils.data.DataLoader
    outputs: RunOutputs
    checkpoints: CheckpointStore
    fingerprint: dict[str, Any]
    total_steps: int
    start: TrainingPosition
    stop: StopRequest
    dataset: TrainingDataset
    started: float = field(default_factory=time.perf_counter)
    nonfinite_skipped: int = 0
    last_checkpoint: Path | None = None
    #: What set-up did that the user should read (a merged preset LoRA, a continued LoRA).
    notes: list[str] = field(default_factory=list)
    validation: ValidationSet | None = None
    best: BestRecord | None = None
    validation_prompts: tuple[str, ...] = ()
    recipe: RunRecipe | None = None  # EMA, grad clipping, caption dropout (diffsynth.training.recipes)
    #: --train_experts: the timestep experts, noisiest first (diffsynth.training.experts); None: one denoiser.
    experts: tuple[TrainedExpert, ...] | None = None
    #: --offload_models: frozen encoders kept in host memory, on the device only while encoding
    offloaded: OffloadedEncoders | None = None

    def encoding(self) -> contextlib.AbstractContextManager:
        return self.offloaded.on_device() if self.offloaded is not None else contextlib.nullcontext()


class Trainer:
    """One training run of one family."""

    def __init__(self, registry: FamilyRegistry, config: TrainConfig) -> None:
        self.family = registry.get(config.family)
        self.hooks = FamilyHooks(registry, self.family)
        self.registry = registry
        self.config = config
        #: Set by `run` when it trains from the encoder cache (diffsynth.cache).
        self.cached: CachedRun | None = None

    @cached_property
    def context(self) -> RunContext:
        """What the family's hooks see of this run (first used after `validate` resolved the dtype)."""
        return RunContext.for_run(self.config, self.family.options_value(self.config.family_options))

    # -- set-up -------------------------------------------------------------------------------

    def _dataset(self) -> TrainingDataset:
        options = DatasetOptions.from_config(
            self.config,
            multiple=self.family.resolution_multiple,
            required_columns=("prompt",),
            derivable_inputs=tuple(e.name for e in self.family.extra_inputs if not e.column_required),
            default_file_keys=self.family.default_data_file_keys,
        )
        return TrainingDataset(options, check_dataset_quickly(options))

    def _resume_from(self, store: CheckpointStore) -> LoadedCheckpoint | None:
        wanted = self.config.resume_from_checkpoint
        if not wanted:
            return None
        # `latest` with no checkpoints at all is a fresh start (so one command serves both); a
        # `latest` naming a missing folder is an error, never a fresh start over the checkpoints
        path = store.resume_point() if wanted == "latest" else Path(wanted)
        if path is None:
            return None
        loaded = load_checkpoint(path)
        c = self.config  # what the flags alone say must match: refused before any model loads
        check_fingerprint(loaded, {
            "family": self.family.name, "lora_base_model": c.lora_base_model, "seed": c.seed,
            "gradient_accumulation_steps": c.gradient_accumulation_steps, "dataset_repeat": c.dataset_repeat,
        })
        return loaded

    def _read_lora(self, path: str | None, flag: str, pipeline: FamilyPipeline, component: str | None) -> LoraLayers | None:
        if not path:
            return None
        if component is None:
            raise UserError(f"{flag} needs --lora_base_model (the component the LoRA belongs to)")
        return self.hooks.read_lora(path, flag, pipeline.modules[component])

    def _preset_lora(self, pipeline: FamilyPipeline, plan: TrainablePlan) -> tuple[str, LoraLayers] | None:
        """`--preset_lora_path` and the component it merges into."""
        c = self.config
        if not c.preset_lora_path:
            return None
        component = c.preset_lora_model or plan.lora_component or pipeline.denoiser
        if component not in pipeline.modules:
            raise UserError(f"--preset_lora_model: no component {component!r}; components: {', '.join(pipeline.modules)}")
        return component, self.hooks.read_lora(c.preset_lora_path, "--preset_lora_path", pipeline.modules[component])

    def _fingerprint(self, plan: TrainablePlan, dataset: TrainingDataset, world_size: int) -> dict[str, Any]:
        """What must not change between a checkpoint and the run resuming from it."""
        c = self.config
        fp = {
            "family": self.family.name,
            "lora_base_model": c.lora_base_model,
            "lora_targets": plan.lora_targets if plan.lora_component else [],
            "lora_rank": c.effective_lora_rank() if plan.lora_component else None,
            "lora_alpha": c.effective_lora_alpha() if plan.lora_component else None,
            "trainable_models": plan.full_components,
            "gradient_accumulation_steps": c.gradient_accumulation_steps,
            "dataset_rows": dataset.num_rows,
            "dataset_repeat": c.dataset_repeat,
            "seed": c.seed,
            "world_size": world_size,
        }
        if plan.lora_component and c.lora_type != "lora":  # absent for plain LoRA: older checkpoints match
            fp["lora_type"] = c.lora_type
        if c.ema_decay is not None:
            fp["ema_decay"] = c.ema_decay
        if c.batch_size != 1:  # (absent for 1: checkpoints from before --batch_size still resume)
            fp["batch_size"] = c.batch_size
        if c.train_experts is not None:
            fp["train_experts"] = c.train_expert_names()
        return json.loads(json.dumps(fp))  # the form it has after a round trip through state.json

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        config = self.config
        validate(config, self.family)
        check_train_experts(config, self.family)
        if config.train_experts is not None and self.registry.implements(self.family.name, "compute_loss"):
            raise UserError(f"--train_experts: {self.family.name} computes its own loss (compute_loss); experts need the core's")
        if config.fp8_models and not (config.use_gradient_checkpointing or config.use_gradient_checkpointing_offload):
            if os.environ.get("RANK", "0") == "0":
                sys.stderr.write(
                    "warning: --fp8_models without --use_gradient_checkpointing keeps each layer's upcast weight "
                    "until backward (about 1.5x the bf16 weights at the peak, docs/memory-and-scale.md); "
                    "add --use_gradient_checkpointing to save memory\n"
                )
        # fails in seconds on a bad dataset, before any model load (stage 2 of split training has no source dataset)
        dataset: Any = None if config.task == TRAIN_FROM_CACHE else self._dataset()  # or the cache's
        if config.task == DATA_PROCESS:  # stage 1 of split training: fill the encoder cache, train nothing
            run_data_process(self, dataset)
            return TrainResult(steps=0)
        self.cached = prepare_cached_run(self, dataset)  # --cache_dir/--cache/sft:train: encoders done, freed
        if self.cached is not None:
            dataset, self.context = self.cached.dataset, self.cached.context
        held_out = validation_dataset(self.config, self.family)  # before any model load, like the dataset
        if config.validation_split is not None and dataset is not None:
            dataset, held_out = held_out_split(dataset, config.validation_split)
        prompts = read_validation_prompts(self.config.validation_prompts)
        if prompts and not self.registry.implements(self.family.name, "sample_images"):
            raise UserError(f"--validation_prompts: {self.family.name} cannot be sampled (its plugin has no sample_images)")
        run = self._prepare(dataset)
        if held_out is not None:
            with run.encoding():
                run.validation = encode_validation_set(self.hooks, run.pipeline, self.context, held_out, config.seed)
            run.best = BestRecord.read(run.outputs.root) if run.start.step else None
        run.validation_prompts = prompts
        result = TrainResult(steps=run.start.step)
        main = run.accelerator.is_main_process
        with run.stop, TrainingProgress(run.total_steps, enabled=main, completed=run.start.step) as progress:
            progress.log(
                f"{self.family.name}: training {', '.join(run.plan.components)} "
                f"({sum(p.numel() for p in run.params):,} parameters) on {run.accelerator.device}, "
                f"{run.accelerator.num_processes} process(es), {run.total_steps} steps"
                + (f", resumed at step {run.start.step}" if run.start.step else "")
            )
            for note in run.notes:
                progress.log(note)
            for epoch in range(run.start.epoch, config.num_epochs):
                skip = run.start.micro_batches_in_epoch if epoch == run.start.epoch else 0
                run.sampler.set_epoch(epoch, skip=skip)
                self._train_epoch(run, epoch, skip, result, progress)
                if not config.save_steps:
                    result.files += self._save(run, f"epoch-{epoch}")
                if result.steps >= run.total_steps:
                    break
        if config.save_steps and result.steps % config.save_steps != 0:
            result.files += self._save(run, f"step-{result.steps}")
        if main:
            result.loss_plot = write_loss_plot(run.outputs.root)
            sources = [s.spec for s in model_sources(self.family, config)]
            run.outputs.write_model_card(
                model_card(self.family, config, result.files, result.steps, sources, run.plan.lora_targets)
                + card_note(config)
                + validation_card_note(run.outputs.root, run.best)
            )
        run.accelerator.end_training()
        result.seconds = time.perf_counter() - run.started
        result.output = run.outputs.root
        return result

    def _prepare(self, dataset: TrainingDataset) -> PreparedRun:
        """Accelerator, output folder, pipeline with LoRA/freezing, optimizer, data order, and
        the state of the checkpoint being resumed."""
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        config = self.config
        # cheap (headers only); before any write. From the encoder cache: the denoiser alone
        model_files = self.cached.model_files if self.cached else resolve_model_files(self.family, config)
        use_one_cpu_thread()
        accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            log_with="tensorboard" if config.report_to == "tensorboard" else None,
            project_dir=config.output_path,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)],
        )
        check_engine(accelerator, config)  # FSDP/DeepSpeed: refuse what they cannot do, in one line
        outputs = RunOutputs(prepare_output_dir(Path(config.output_path)))
        store = CheckpointStore(outputs.root)
        resume = self._resume_from(store)

        set_seed(config.seed)  # same LoRA init on every rank
        merged_into = {config.preset_lora_model or config.lora_base_model or self.family.denoiser} if config.preset_lora_path else set()
        model_files = with_fp8_storage(config, model_files, keep=merged_into)
        self.pipeline = pipeline = self.hooks.load_pipeline(model_files, self.context)
        plan = plan_training(self.family, config, pipeline, model_files)
        experts = plan_experts(config, self.family, pipeline, model_files)
        notes: list[str] = []
        if experts is not None:
            if accelerator.num_processes > 1:
                raise UserError("--train_experts: one process only for now (each rank would run other experts)")
            plan.expert_suffixes = {e.spec.component: e.spec.file_suffix for e in experts}
            notes.append(describe(experts, model_files))
        resume_lora = self._read_lora(config.lora_checkpoint, "--lora_checkpoint", pipeline, plan.lora_component)
        if resume_lora is not None:
            adopt_lora_checkpoint(plan, config, resume_lora, pipeline.modules[plan.lora_component])
        preset = self._preset_lora(pipeline, plan)
        params = apply_plan(plan, pipeline, config, preset=preset, resume_lora=resume_lora, notes=notes)
        swap = swap_for_run(config.blocks_to_swap, self.family, pipeline.denoiser_module, accelerator)
        offloaded = None
        if config.offload_models and self.cached is None and config.task == "sft":  # split training: see cache/stage.py
            names = offloaded_components(config, pipeline, model_files, plan.components)
            offloaded = offload(pipeline, names, accelerator.device)
        for name, module in pipeline.modules.items():
            if swap is not None and name == pipeline.denoiser:
                to_device_except(module, accelerator.device, swap.host_parameters)  # never whole on the device
            elif offloaded is None or name not in offloaded.names:
                module.to(accelerator.device)
        pipeline.device = accelerator.device
        # --optimizer (AdamW by default) and --lr_scheduler (constant by default, explicitly: no hidden
        # warm-up/down; DiffSynth's ConstantLR runs 5 steps at lr/3), see diffsynth.training.optim
        sampler = run_sampler(config, dataset, accelerator.process_index, accelerator.num_processes)
        recipe = RunRecipe.for_run(config, self.family, len(sampler), accelerator, params)
        optimizer, scheduler = recipe.optimizer, recipe.scheduler
        *modules, optimizer, scheduler = accelerator.prepare(
            *[pipeline.modules[n] for n in plan.components], optimizer, scheduler
        )
        for name, wrapped in zip(plan.components, modules):
            pipeline.modules[name] = expose_module_attributes(wrapped, pipeline.modules[name])
        if is_fsdp(accelerator):  # prepare sharded them into new parameters: clip those
            params = trainable_parameters({n: pipeline.modules[n] for n in plan.components})

        loader = make_loader(dataset, sampler, config.dataset_num_workers, config.seed)
        total = len(sampler) * config.num_epochs // config.gradient_accumulation_steps
        if config.max_steps is not None:
            total = min(total, config.max_steps)
        fingerprint = self._fingerprint(plan, dataset, accelerator.num_processes)
        set_seed(config.seed, device_specific=True)  # different noise per rank
        start = TrainingPosition(0, 0, 0)
        if resume is not None:
            check_fingerprint(resume, fingerprint)
            self._restore(resume, pipeline, plan, optimizer, scheduler, accelerator)
            recipe.restore(resume)
            start = resume.state.position
        if accelerator.is_main_process:
            store.clean_incomplete()
            if config.overwrite:  # asked for; done only now that everything before the first write passed
                outputs.remove_earlier_results()
            outputs.write_training_args(config.to_dict())
            outputs.start_loss_log(keep_through_step=start.step)
        if config.report_to == "tensorboard":
            scalars = {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers("diffsynth", config=scalars)
        return PreparedRun(
            accelerator, pipeline, plan, params, optimizer, scheduler, sampler, loader, outputs, store,
            fingerprint, total, start, StopRequest(), dataset, last_checkpoint=resume.path if resume else None,
            recipe=recipe.track(pipeline, plan, accelerator), notes=notes, experts=experts, offloaded=offloaded,
        )

    def _state_dicts(self, run: PreparedRun) -> dict[str, dict[str, torch.Tensor]]:
        """Full state dicts of the trained components; under ZeRO-3/FSDP this gathers the shards,
        so every process must call it."""
        return {n: run.accelerator.get_state_dict(run.pipeline.modules[n]) for n in run.plan.components}

    def _trainable_tensors(self, run: PreparedRun) -> dict[str, torch.Tensor]:
        """Full trainable tensors by `component.name`; every process calls it (under FSDP only the
        main one gets them)."""
        return trainable_state(run.accelerator, {n: run.pipeline.modules[n] for n in run.plan.components})

    def _restore(self, resume: LoadedCheckpoint, pipeline, plan, optimizer, scheduler, accelerator) -> None:
        modules = {n: pipeline.modules[n] for n in plan.components}
        if trainable_names(accelerator, modules) != set(resume.trainable):
            raise UserError(f"--resume_from_checkpoint: {resume.path} holds other trainable parameters than this run")
        load_training_state(accelerator, modules, resume.trainable, optimizer, resume.optimizer)  # scatters under FSDP
        scheduler.load_state_dict(resume.scheduler)
        restore_rng(resume.state.rng, resume.torch_rng)

    # -- the loop -----------------------------------------------------------------------------

    def _train_epoch(
        self, run: PreparedRun, epoch: int, skip: int, result: TrainResult, progress: TrainingProgress
    ) -> None:
        config, pipeline, accelerator = self.config, run.pipeline, run.accelerator
        train_preprocess = any(n != pipeline.denoiser for n in run.plan.components)
        modules = [pipeline.modules[n] for n in run.plan.components]
        micro_losses: list[float] = []
        rows: list[int] = []
        consumed = skip
        for item in run.loader:
            consumed += 1
            samples = item if isinstance(item, list) else [item]  # a bucket's batch with --batch_size
            for sample in samples:
                if isinstance(sample, LoadFailure):
                    raise UserError(sample.message)
            with accelerator.accumulate(*modules), activations_offloaded(config.use_gradient_checkpointing_offload):
                batch = []
                with run.encoding():  # --offload_models: the encoders on the device for this
                    for i, sample in enumerate(samples):
                        place = (consumed - 1) * config.batch_size + i + 1  # = consumed for batch size 1
                        run.recipe.drop_caption(sample, epoch, accelerator.process_index, place)
                        inputs = cached_inputs(sample, pipeline.device) or self.hooks.preprocess(
                            pipeline, sample, self.context, with_grad=train_preprocess
                        )
                        run.recipe.mask(inputs, sample)
                        batch.append(inputs)
                if run.experts is not None:  # each sample to the expert owning its sigma
                    loss = routed_loss(self.hooks, pipeline, batch, self.context, run.experts)
                else:
                    inputs = batch[0] if len(batch) == 1 else self.hooks.collate(batch)
                    loss = self.hooks.loss(pipeline, inputs, self.context)
                value = float(loss.detach().float().item())
                if math.isfinite(value):
                    accelerator.backward(loss)
                    micro_losses.append(value)
                else:
                    self._nonfinite(run, value, result.steps + 1, samples[0])
                rows.extend(sample.index for sample in samples)
                run.recipe.clip_gradients(run.params)
                lr = run.scheduler.get_last_lr()[0]  # the rate this step uses
                run.optimizer.step()
                run.scheduler.step()
                run.optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            run.recipe.after_step()
            result.steps += 1
            value = sum(micro_losses) / len(micro_losses) if micro_losses else float("nan")
            result.losses.append(value)
            smooth = progress.advance(value, lr)
            result.smoothed_loss = smooth
            val_loss = self._validation_due(run, result.steps)
            if accelerator.is_main_process:
                row = {"step": result.steps, "epoch": epoch, "loss": value, "smoothed_loss": smooth, "lr": lr,
                       "rows": rows, "elapsed_s": round(time.perf_counter() - run.started, 3)}
                run.outputs.append_loss(row if val_loss is None else {**row, "val_loss": val_loss})
            if config.report_to == "tensorboard":
                accelerator.log({"loss": value, "lr": lr, **({} if val_loss is None else {"val_loss": val_loss})},
                                step=result.steps)  # fmt: skip
            if val_loss is not None:
                self._keep_if_best(run, result, val_loss)
            micro_losses, rows = [], []
            position = TrainingPosition(result.steps, epoch, consumed)
            if config.save_steps and result.steps % config.save_steps == 0:
                result.files += self._save(run, f"step-{result.steps}")
            if config.checkpointing_steps and result.steps % config.checkpointing_steps == 0:
                self._checkpoint(run, position)
            if run.stop.signal is not None:
                self._stop_on_signal(run, position)
            if result.steps >= run.total_steps:
                return

    def _validation_due(self, run: PreparedRun, step: int) -> float | None:
        """Every --validation_steps optimizer steps and at the last step: the samples of
        --validation_prompts (main process) and val_loss (returned; None when not due)."""
        if run.validation is None and not run.validation_prompts:
            return None
        every = self.config.validation_steps
        if step != run.total_steps and not (every and step % every == 0):
            return None
        if run.validation_prompts and run.accelerator.is_main_process:
            modules = {name: run.accelerator.unwrap_model(m) for name, m in run.pipeline.modules.items()}
            with run.encoding():
                write_samples(self.hooks, replace(run.pipeline, modules=modules), self.context, self.config, self.family,
                              run.validation_prompts, run.outputs.root / "samples" / f"step-{step}",
                              run.accelerator if self.config.report_to == "tensorboard" else None, step)  # fmt: skip
        return validation_loss(self.hooks, run.pipeline, run.validation) if run.validation is not None else None

    def _keep_if_best(self, run: PreparedRun, result: TrainResult, val_loss: float) -> None:
        """--keep_best: the weights with the lowest val_loss so far as best*.safetensors."""
        if not self.config.keep_best or (run.best is not None and val_loss >= run.best.val_loss):
            return
        run.best = BestRecord(result.steps, val_loss)
        result.best_files = self._save(run, BEST_STEM)  # every process: the save gathers shards
        if run.accelerator.is_main_process:
            run.best.write(run.outputs.root)

    def _nonfinite(self, run: PreparedRun, value: float, step: int, sample) -> None:
        """Skip a NaN/inf micro-batch while --skip_nonfinite allows, else stop naming it."""
        files = [str(run.dataset.table.row(sample.index).get(k)) for k in run.dataset.options.file_keys]
        where = f"step {step}, dataset row {sample.index + 1} ({', '.join(files)})"  # rows count from 1, as everywhere
        if run.nonfinite_skipped < self.config.skip_nonfinite:
            run.nonfinite_skipped += 1
            if run.accelerator.is_main_process:
                sys.stderr.write(
                    f"warning: non-finite loss ({value}) at {where}: skipped "
                    f"({run.nonfinite_skipped} of --skip_nonfinite {self.config.skip_nonfinite})\n"
                )
            return
        kept = f"last checkpoint: {run.last_checkpoint}" if run.last_checkpoint else "no checkpoint was written"
        raise TrainingStopped(
            f"error: non-finite loss ({value}) at {where}; stopped without updating the weights; {kept}; "
            "--skip_nonfinite N skips up to N such micro-batches",
            exit_code=1,
        )

    def _checkpoint(self, run: PreparedRun, position: TrainingPosition) -> Path | None:
        run.accelerator.wait_for_everyone()
        trainable = self._trainable_tensors(run)  # every process: under FSDP these gather the shards
        optimizer = optimizer_state(run.accelerator, {n: run.pipeline.modules[n] for n in run.plan.components}, run.optimizer)
        rng = gather_rng()  # each process's own random states
        if run.accelerator.is_main_process:
            run.last_checkpoint = run.checkpoints.save(
                position,
                run.fingerprint,
                trainable,
                optimizer,
                run.scheduler.state_dict(),
                limit=self.config.checkpoints_total_limit,
                ema=run.recipe.ema_state(),
                rng=rng,
            )
        return run.last_checkpoint

    def _stop_on_signal(self, run: PreparedRun, position: TrainingPosition) -> None:
        if run.last_checkpoint is None or run.last_checkpoint.name != f"step-{position.step}":
            self._checkpoint(run, position)
        name = signal.Signals(run.stop.signal).name
        raise TrainingStopped(
            f"interrupted by {name} after step {position.step}: checkpoint {run.last_checkpoint}; "
            "continue with --resume_from_checkpoint latest",
            exit_code=128 + run.stop.signal,
        )

    def _save(self, run: PreparedRun, stem: str) -> list[Path]:
        """Write the trained weights as `<stem>*.safetensors` (main process only)."""
        run.accelerator.wait_for_everyone()
        states = self._state_dicts(run)
        if not run.accelerator.is_main_process:
            return []
        weights = trained_weights(run.plan, states, self.config)
        split = lambda w: self.hooks.split(w, self.context)  # noqa: E731
        written = run.outputs.write_weights(stem, adapter_output_files(split, weights, self.config.lora_type))
        if run.recipe.ema is not None:  # the average, through the same split: it loads where the raw file does
            averaged = trained_weights(run.plan, run.recipe.ema.component_states(states), self.config)
            written += run.outputs.write_weights(f"{stem}-ema", adapter_output_files(split, averaged, self.config.lora_type))
        return written
