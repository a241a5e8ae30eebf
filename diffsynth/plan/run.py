"""`diffsynth plan`: the prediction for the flags given, the alternatives table and `--vram`."""

from __future__ import annotations

import copy
from typing import Any

from diffsynth.config import TrainConfig
from diffsynth.plan import GIB, choices
from diffsynth.plan.report import as_dict, gib
from diffsynth.plan.simulate import Prediction, predict, resolve_plan_dtype
from diffsynth.plugins import FamilyRegistry


def plan(
    registry: FamilyRegistry, config: TrainConfig, vram: int | None = None, compare: bool = True, device: str = "cuda"
) -> dict[str, Any]:
    """One JSON-able object: the prediction (`peak_gib`, `breakdown`, ...), `alternatives` (when
    `compare`) and `choice` (when `vram`), for a run on `device` (cuda, or cpu)."""
    from diffsynth.training.trainer import validate

    family = registry.get(config.family)
    resolve_plan_dtype(config, device)  # before validate, which would resolve auto for this machine
    validate(config, family)
    base = predict(registry, copy.deepcopy(config), device)
    denoiser = family.denoiser
    encoders = choices.frozen_encoders(config, base.components, denoiser)
    can_fp8_denoiser = denoiser not in config.trainable_model_names()
    floor = choices.given_options(config, denoiser, encoders)
    known: dict[choices.Options, Prediction] = {floor: base}

    def predicted(options: choices.Options) -> Prediction:
        if options not in known:
            known[options] = predict(registry, choices.with_options(config, options, denoiser, encoders), device)
        return known[options]

    def row(options: choices.Options) -> dict[str, Any]:
        return {"options": options.label(), "flags": choices.flags(options, denoiser, encoders), "peak_gib": gib(predicted(options).peak)}

    out = as_dict(base)
    if compare:
        out["alternatives"] = [row(o) for o in choices.standard(floor, can_fp8_denoiser, bool(encoders))]
    if vram is not None:
        order = choices.candidates(floor, can_fp8_denoiser, bool(encoders))
        options, prediction = choices.fastest_fitting(order, vram, predicted)
        out["choice"] = {**row(options), "vram_gib": round(vram / GIB, 1)}
    return out
