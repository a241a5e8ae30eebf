"""What the training recipes add to one run (the trainer calls these at fixed points):
optimizer and LR schedule (`optim`), gradient clipping, EMA (`ema`), caption dropout and the
masked loss (`diffsynth.data`). With the defaults every call here is a no-op, so a
DiffSynth-Studio command trains exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from diffsynth.config import TrainConfig
from diffsynth.data.caption_dropout import with_caption_dropout
from diffsynth.data.mask import apply_mask
from diffsynth.errors import UserError
from diffsynth.training.ema import EMA
from diffsynth.training.lora_io import WHERE_IT_LOADS
from diffsynth.training.optim import build_optimizer, build_scheduler


def planned_steps(config: TrainConfig, micro_batches_per_epoch: int) -> int:
    """Optimizer steps the run will make (what the trainer's loop counts), for the LR schedule."""
    total = micro_batches_per_epoch * config.num_epochs // config.gradient_accumulation_steps
    return min(total, config.max_steps) if config.max_steps is not None else total


@dataclass
class RunRecipe:
    config: TrainConfig
    optimizer: Any
    scheduler: Any
    accelerator: Any = None
    ema: EMA | None = None
    _pending_ema: dict | None = None

    @classmethod
    def for_run(cls, config: TrainConfig, family, micro_batches_per_epoch: int, accelerator, params: list[torch.nn.Parameter]) -> RunRecipe:
        optimizer = build_optimizer(config, params, accelerator.device)
        steps = planned_steps(config, micro_batches_per_epoch)
        scheduler = build_scheduler(config, optimizer, steps, accelerator.num_processes)
        return cls(config, optimizer, scheduler, accelerator)

    def track(self, pipeline, plan, accelerator) -> RunRecipe:
        """Start the EMA from the trainable weights as they are now (fresh, or just restored)."""
        if self.config.ema_decay is not None and self.ema is None:
            self.ema = EMA(_trainable(pipeline, plan, accelerator), self.config.ema_decay)
            if self._pending_ema is not None:
                try:
                    self.ema.load_state_dict(self._pending_ema)
                except ValueError as exc:
                    raise UserError(f"--resume_from_checkpoint: {exc}") from None
        return self

    def restore(self, resume) -> None:
        """Keep the checkpoint's EMA for `track` (called before it)."""
        if self.config.ema_decay is not None:
            if resume.ema is None:
                raise UserError(f"--ema_decay: {resume.path} was written without --ema_decay; it has no average to continue")
            self._pending_ema = resume.ema

    # -- the loop ----------------------------------------------------------------------------

    def drop_caption(self, sample, epoch: int, rank: int, position: int) -> None:
        if self.config.caption_dropout_rate > 0:
            with_caption_dropout(sample, self.config.caption_dropout_rate, self.config.seed, epoch, rank, position)

    def mask(self, inputs, sample) -> None:
        apply_mask(inputs, sample)

    def clip_gradients(self, params: list[torch.nn.Parameter]) -> None:
        if self.config.max_grad_norm > 0 and self.accelerator.sync_gradients:
            self.accelerator.clip_grad_norm_(params, self.config.max_grad_norm)

    def after_step(self) -> None:
        """After each optimizer step."""
        if self.ema is not None:
            self.ema.update()

    def ema_state(self) -> dict[str, torch.Tensor] | None:
        return self.ema.state_dict() if self.ema is not None else None


def _trainable(pipeline, plan, accelerator) -> dict[str, torch.nn.Parameter]:
    modules = {n: accelerator.unwrap_model(pipeline.modules[n]) for n in plan.components}
    return {f"{c}.{n}": p for c, m in modules.items() for n, p in m.named_parameters() if p.requires_grad}


def card_note(config: TrainConfig) -> str:
    """Lines the model card gets for the recipe options that change what the files are."""
    lines = []
    if config.lora_base_model and config.lora_type != "lora":
        lines += ["", f"## {config.lora_type} adapter", "",
                  f"This is a {config.lora_type} adapter, not a plain LoRA: it loads in {WHERE_IT_LOADS[config.lora_type]}."]
    if config.ema_decay is not None:
        lines += ["", "## EMA", "",
                  f"`*-ema.safetensors` hold the exponential moving average of the weights (decay {config.ema_decay:g}); "
                  "they load exactly like the raw files next to them."]
    return "\n".join(lines) + ("\n" if lines else "")
