"""`--optimizer`, `--optimizer_args`, `--lr_scheduler`: building them, and the recipe flags' checks.

Every optimizer but AdamW lives in an optional package (`pip install diffsynth[prodigy]`, ...);
a missing one, or one that needs a GPU on a machine without one, is one line naming the flag.
"""

from __future__ import annotations

import ast
import math
import shlex
from typing import Any

import torch

from diffsynth.config import LORA_TYPES, LR_SCHEDULERS, OPTIMIZERS, TIMESTEP_SAMPLING_ALIASES, TIMESTEP_SAMPLINGS, TrainConfig
from diffsynth.errors import UserError

#: optimizer -> (module to import, pip extra that installs it)
PACKAGES = {
    "adamw8bit": ("bitsandbytes", "bitsandbytes"),
    "prodigy": ("prodigyopt", "prodigy"),
    "adafactor": ("transformers", "transformers"),
    "came": ("came_pytorch", "came"),
}


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"--{flag}: expected one of {', '.join(choices)}, got {value!r}")


def validate_recipe(config: TrainConfig) -> None:
    """Checks of the recipe flags (timesteps, optimizer, schedule, EMA, adapter type) that need no
    model; called by the trainer's `validate`."""
    _choice("timestep_sampling", config.timestep_sampling, (*TIMESTEP_SAMPLINGS, *TIMESTEP_SAMPLING_ALIASES))
    _choice("lr_scheduler", config.lr_scheduler, LR_SCHEDULERS)
    _choice("optimizer", config.optimizer, OPTIMIZERS)
    _choice("lora_type", config.lora_type, LORA_TYPES)
    for flag in ("discrete_flow_shift", "sigmoid_scale", "logit_std"):
        value = getattr(config, flag)
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"--{flag}: expected a positive finite number, got {value:g}")
    if not math.isfinite(config.logit_mean):
        raise UserError(f"--logit_mean: expected a finite number, got {config.logit_mean:g}")
    if not 0.0 <= config.caption_dropout_rate <= 1.0:
        raise UserError(f"--caption_dropout_rate: expected a probability 0 <= p <= 1, got {config.caption_dropout_rate:g}")
    if not math.isfinite(config.max_grad_norm) or config.max_grad_norm < 0:
        raise UserError(f"--max_grad_norm: expected 0 (off) or a positive number, got {config.max_grad_norm:g}")
    if config.ema_decay is not None and not 0.0 < config.ema_decay < 1.0:
        raise UserError(f"--ema_decay: expected 0 < decay < 1 (e.g. 0.999), got {config.ema_decay:g}")
    if config.lr_warmup_steps < 0:
        raise UserError(f"--lr_warmup_steps: expected 0 or more, got {config.lr_warmup_steps}")
    if config.lr_warmup_steps and config.lr_scheduler == "constant":
        raise UserError("--lr_warmup_steps: the constant schedule has no warm-up; use --lr_scheduler constant_with_warmup")
    if config.lr_num_cycles < 1:
        raise UserError(f"--lr_num_cycles: expected a positive integer, got {config.lr_num_cycles}")
    if config.lokr_factor == 0 or config.lokr_factor < -1:
        raise UserError(f"--lokr_factor: expected -1 (automatic) or a positive integer, got {config.lokr_factor}")
    if config.lora_type != "lora" and not config.lora_base_model:
        raise UserError(f"--lora_type {config.lora_type} needs --lora_base_model (the component that gets the adapter)")
    if config.lora_type != "lora" and config.lora_checkpoint:
        raise UserError(
            f"--lora_checkpoint: continuing a LoRA file works for --lora_type lora only, not {config.lora_type}; "
            "continue a run with --resume_from_checkpoint instead"
        )
    parse_optimizer_args(config.optimizer_args)


def parse_optimizer_args(text: str | None) -> dict[str, Any]:
    """`"betas=0.9,0.99 d_coef=2 decouple=True"` -> {"betas": (0.9, 0.99), "d_coef": 2, "decouple": True}."""
    if not text:
        return {}
    try:
        items = shlex.split(text)
    except ValueError as exc:
        raise UserError(f"--optimizer_args: cannot split {text!r} ({exc})") from None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise UserError(f"--optimizer_args: expected key=value pairs separated by spaces, got {item!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out[key] = value
    return out


def _import(name: str):
    module, extra = PACKAGES[name]
    try:
        return __import__(module)
    except ImportError:
        raise UserError(
            f"--optimizer {name}: needs the {module} package, which is not installed "
            f"(pip install 'diffsynth[{extra}]')"
        ) from None


def build_optimizer(config: TrainConfig, params: list[torch.nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    """The optimizer `--optimizer` names over `params`, with `--learning_rate`, `--weight_decay`
    and `--optimizer_args` (which win over the defaults here)."""
    name = config.optimizer
    kwargs: dict[str, Any] = {"lr": config.learning_rate, "weight_decay": config.weight_decay}
    if name == "adamw":
        cls = torch.optim.AdamW
    elif name == "adamw8bit":
        _import(name)
        if device.type != "cuda":
            raise UserError(f"--optimizer adamw8bit: bitsandbytes' 8-bit AdamW needs a CUDA GPU; this run is on {device.type}")
        import bitsandbytes

        cls = bitsandbytes.optim.AdamW8bit
    elif name == "prodigy":
        cls = _import(name).Prodigy
    elif name == "adafactor":
        _import(name)
        from transformers.optimization import Adafactor

        cls = Adafactor
        # an explicit learning rate: no relative step, no parameter scaling (musubi/sd-scripts' advice)
        kwargs.update(relative_step=False, scale_parameter=False, warmup_init=False)
    else:  # came
        cls = _import(name).CAME
    kwargs.update(parse_optimizer_args(config.optimizer_args))
    try:
        return cls(params, **kwargs)
    except TypeError as exc:
        raise UserError(f"--optimizer_args: {name} ({cls.__module__}.{cls.__name__}) refused them: {exc}") from None
    except ValueError as exc:
        raise UserError(f"--optimizer {name}: {exc}") from None


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int, num_processes: int = 1):
    """diffusers' `get_scheduler` for `--lr_scheduler`. accelerate steps a prepared scheduler once
    per process per optimizer step, so both lengths are counted in those steps (as diffusers'
    training examples do)."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        config.lr_scheduler,
        optimizer,
        num_warmup_steps=config.lr_warmup_steps * num_processes,
        num_training_steps=max(1, total_steps) * num_processes,
        num_cycles=config.lr_num_cycles,
    )
