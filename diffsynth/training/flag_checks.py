"""The checks `train` runs before it reads any data or loads any model: flag ranges and
combinations, component names, files that must exist. Each failure is one `UserError` line."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from diffsynth.cache.stage import validate_cache
from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.spec import FamilySpec
from diffsynth.training.optim import validate_recipe


def resolve_dtype(name: str) -> str:
    if name == "auto":
        return "bf16" if torch.cuda.is_available() else "fp32"
    if name not in ("fp32", "bf16", "fp16"):
        raise UserError(f"--dtype: expected auto, fp32, bf16 or fp16, got {name!r}")
    return name


def use_one_cpu_thread() -> None:
    """On a CPU, compute with one intra-op thread unless OMP_NUM_THREADS says otherwise: the tiny
    and small models trained on CPUs run 13x faster so when other jobs share the cores (72 vs
    955 ms per step of a tiny preset at load 4; docs/benchmarks.md)."""
    import os

    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def validate(config: TrainConfig, family: FamilySpec) -> None:
    """Flag checks that need no model and no data."""
    validate_cache(config, family)  # --task sft | sft:data_process | sft:train, --cache_dir, --cache
    if config.report_to not in ("none", "tensorboard"):
        raise UserError(f"--report_to: expected none or tensorboard, got {config.report_to!r}")
    known = {e.name for e in family.extra_inputs}
    for name in config.extra_input_names():
        if name not in known:
            raise UserError(
                f"--extra_inputs: {family.name} does not use {name!r}; it accepts: {', '.join(sorted(known)) or 'none'}"
            )
    if config.blocks_to_swap < 0:
        raise UserError(f"--blocks_to_swap: expected 0 or more blocks, got {config.blocks_to_swap}")
    if config.blocks_to_swap and not (config.use_gradient_checkpointing or config.use_gradient_checkpointing_offload):
        raise UserError("--blocks_to_swap needs --use_gradient_checkpointing: without it every block's weights stay "
                        "on the device until backward, so swapping would save nothing")  # fmt: skip
    for flag in ("num_epochs", "gradient_accumulation_steps", "dataset_repeat", "batch_size"):
        if getattr(config, flag) < 1:
            raise UserError(f"--{flag}: expected a positive integer, got {getattr(config, flag)}")
    if not 0.0 <= config.min_timestep_boundary < config.max_timestep_boundary <= 1.0:
        raise UserError("--min_timestep_boundary/--max_timestep_boundary: expected 0 <= min < max <= 1")
    if config.validation_steps is not None and config.validation_steps < 1:
        raise UserError(f"--validation_steps: expected a positive integer, got {config.validation_steps}")
    held_out = config.validation_metadata_path or config.validation_split is not None
    if config.validation_split is not None and not 0 < config.validation_split < 1:
        raise UserError(f"--validation_split: expected a fraction between 0 and 1, got {config.validation_split:g}")
    if config.validation_split is not None and config.validation_metadata_path:
        raise UserError("--validation_split and --validation_metadata_path: give one source of validation rows")
    if config.keep_best and not held_out:
        raise UserError("--keep_best needs --validation_metadata_path or --validation_split (the rows val_loss is computed on)")
    if config.validation_steps and not (held_out or config.validation_prompts):
        raise UserError("--validation_steps needs --validation_metadata_path, --validation_split or --validation_prompts")
    _validate_ranges(config)
    validate_recipe(config)
    _validate_components(config, family)
    _validate_files(config)
    config.dtype = resolve_dtype(config.dtype)


def _validate_ranges(config: TrainConfig) -> None:
    """Numbers a run would accept and then train nothing with (or crash on) are refused here."""
    for flag in ("max_steps", "save_steps", "checkpointing_steps", "checkpoints_total_limit", "lora_rank"):
        value = getattr(config, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag}: expected a positive integer, got {value}")
    for flag in ("skip_nonfinite", "dataset_num_workers"):
        if getattr(config, flag) < 0:
            raise UserError(f"--{flag}: expected 0 or more, got {getattr(config, flag)}")
    if not 0 <= config.seed < 2**32:
        raise UserError(f"--seed: expected 0 <= seed < 2**32, got {config.seed}")
    for flag, minimum in (("learning_rate", "positive"), ("lora_alpha", "positive"), ("weight_decay", "non-negative")):
        value = getattr(config, flag)
        if value is None:
            continue
        if not math.isfinite(value) or value < 0 or (minimum == "positive" and value == 0):
            raise UserError(f"--{flag}: expected a {minimum} finite number, got {value:g}")


def _validate_components(config: TrainConfig, family: FamilySpec) -> None:
    """Component names are known from the family's declaration, before any model is loaded."""
    names = [c.name for c in family.components]
    named = [("--lora_base_model", config.lora_base_model), ("--preset_lora_model", config.preset_lora_model)]
    named += [("--trainable_models", n) for n in config.trainable_model_names()]
    for flag, name in named:
        if name and name not in names:
            raise UserError(f"{flag}: {family.name} has no component {name!r}; components: {', '.join(names)}")


def _validate_files(config: TrainConfig) -> None:
    """Files named by flags exist (a dangling symlink counts as missing)."""
    for flag in ("lora_checkpoint", "preset_lora_path"):
        value = getattr(config, flag)
        if value and not Path(value).is_file():
            raise UserError(f"--{flag}: file not found: {value}")
    resume = config.resume_from_checkpoint
    if resume and resume != "latest" and not Path(resume).is_dir():
        raise UserError(f"--resume_from_checkpoint: {resume} is not a folder (give 'latest' or a checkpoints/step-N folder)")
