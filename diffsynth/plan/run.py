"""`diffsynth plan`: the prediction for the flags given, the alternatives table and `--vram`;
`diffsynth train --vram`: the same choice, applied to the run's options."""

from __future__ import annotations

import copy
from typing import Any

from diffsynth.config import TrainConfig
from diffsynth.plan import GIB, choices
from diffsynth.plan.report import as_dict, gib
from diffsynth.plan.simulate import Prediction, predict, resolve_plan_dtype
from diffsynth.plugins import FamilyRegistry


class Planner:
    """Predictions of one run's option sets (each simulated once)."""

    def __init__(self, registry: FamilyRegistry, config: TrainConfig, device: str = "cuda") -> None:
        from diffsynth.training.flag_checks import validate

        self.registry, self.device = registry, device
        self.config = config = copy.deepcopy(config)
        family = registry.get(config.family)
        resolve_plan_dtype(config, device)  # before validate, which would resolve auto for this machine
        validate(config, family)
        self.base = predict(registry, copy.deepcopy(config), device)
        self.denoiser = family.denoiser
        self.encoders = choices.frozen_encoders(config, self.base.components, self.denoiser)
        self.can_fp8_denoiser = self.denoiser not in config.trainable_model_names()
        self.can_offload = choices.can_offload_encoders(config, self.encoders)
        self.floor = choices.given_options(config, self.denoiser, self.encoders)
        self.known: dict[choices.Options, Prediction] = {self.floor: self.base}

    def config_for(self, options: choices.Options) -> TrainConfig:
        return choices.with_options(self.config, options, self.denoiser, self.encoders)

    def predicted(self, options: choices.Options) -> Prediction:
        if options not in self.known:
            self.known[options] = predict(self.registry, self.config_for(options), self.device)
        return self.known[options]

    def row(self, options: choices.Options) -> dict[str, Any]:
        flags = choices.flags(options, self.denoiser, self.encoders)
        return {"options": options.label(), "flags": flags, "peak_gib": gib(self.predicted(options).peak)}

    def alternatives(self) -> list[dict[str, Any]]:
        return [self.row(o) for o in choices.standard(self.floor, self.can_fp8_denoiser, bool(self.encoders), self.can_offload)]

    def choose(self, vram: int) -> tuple[choices.Options, dict[str, Any]]:
        """The fastest option set that fits `vram` and its row; none: a one-line `UserError`."""
        order = choices.candidates(self.floor, self.can_fp8_denoiser, bool(self.encoders), self.can_offload)
        options, _ = choices.fastest_fitting(order, vram, self.predicted, self.base.repeated_blocks)
        return options, {**self.row(options), "vram_gib": round(vram / GIB, 1)}


def plan(
    registry: FamilyRegistry, config: TrainConfig, vram: int | None = None, compare: bool = True, device: str = "cuda"
) -> dict[str, Any]:
    """One JSON-able object: the prediction (`peak_gib`, `breakdown`, ...), `alternatives` (when
    `compare`) and `choice` (when `vram`), for a run on `device` (cuda, or cpu)."""
    planner = Planner(registry, config, device)
    out = as_dict(planner.base)
    if compare:
        out["alternatives"] = planner.alternatives()
    if vram is not None:
        out["choice"] = planner.choose(vram)[1]
    return out


def fit_to_vram(registry: FamilyRegistry, config: TrainConfig, vram_text: str) -> tuple[TrainConfig, str]:
    """`train --vram`: `config` with the fastest memory options whose predicted peak fits (the
    run's own flags stay on), and the line that says so. Planned for this machine's device
    (a CPU plans host memory). Nothing fits: the one-line `UserError` of `fastest_fitting`."""
    import torch

    vram = choices.parse_vram(vram_text)
    planner = Planner(registry, config, "cuda" if torch.cuda.is_available() else "cpu")
    options, row = planner.choose(vram)
    chosen = planner.config_for(options)
    out = copy.deepcopy(config)
    out.use_gradient_checkpointing = chosen.use_gradient_checkpointing
    out.use_gradient_checkpointing_offload = chosen.use_gradient_checkpointing_offload
    out.fp8_models = chosen.fp8_models
    out.blocks_to_swap = chosen.blocks_to_swap
    line = (
        f"--vram {row['vram_gib']} GiB: {row['options']} fits (predicted peak {row['peak_gib']:.2f} GiB); "
        f"applying {row['flags'] or 'no extra flags'}"
    )
    return out, line
