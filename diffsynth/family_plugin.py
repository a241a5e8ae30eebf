"""`FamilyPlugin`: the hook implementations of one family, with its heavy code imported lazily.

A family package's entry-point module stays light (no torch) by holding its spec and a table of
where each hook's implementation lives, as "module:function" strings:

    plugin = FamilyPlugin(FAMILY, {
        "init_model": "my_family.tiny:write_preset",          # (preset, directory, seed)
        "load_pipeline": "my_family.pipeline:load",           # (models, config)
        "preprocess_inputs": "my_family.inputs:preprocess",   # (pipeline, sample, config)
        "predict_flow": "my_family.inputs:predict",           # (pipeline, inputs, noisy_latents, sigmas)
        "split_state_dict": "my_family.lora_format:split",    # (weights, config)
    })

with the entry point naming it (`my-family = "my_family:plugin"`). Each function takes the hook's
arguments after `family`, positionally; leave out hooks the core's defaults cover
(`compute_loss`, `split_state_dict`, `normalize_lora_state_dict`). `init_model`'s function
writes the files; its return value is ignored.

Import-light: nothing here imports torch, and a module of the table is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from diffsynth.hookspecs import hookimpl
from diffsynth.spec import FamilySpec

PER_FAMILY_HOOKS = (
    "init_model",
    "load_pipeline",
    "preprocess_inputs",
    "predict_flow",
    "compute_loss",
    "split_state_dict",
    "normalize_lora_state_dict",
)


class FamilyPlugin:
    """Answers every per-family hook for `spec.name` by calling the function its table names
    (None for other families and for hooks not in the table)."""

    def __init__(self, spec: FamilySpec, hooks: dict[str, str]) -> None:
        unknown = sorted(set(hooks) - set(PER_FAMILY_HOOKS))
        if unknown:
            raise ValueError(f"{spec.name}: no such per-family hook(s): {', '.join(unknown)}")
        self.spec = spec
        self.hooks = dict(hooks)
        self._functions: dict[str, Callable[..., Any]] = {}

    def __repr__(self) -> str:
        return f"FamilyPlugin({self.spec.name!r})"

    def _call(self, family: str, hook: str, *args: Any) -> Any:
        if family != self.spec.name or hook not in self.hooks:
            return None
        if hook not in self._functions:
            module, _, name = self.hooks[hook].partition(":")
            self._functions[hook] = getattr(importlib.import_module(module), name)
        result = self._functions[hook](*args)
        return True if hook == "init_model" else result

    @hookimpl
    def register_families(self, register: Callable[[FamilySpec], None]) -> None:
        register(self.spec)

    @hookimpl
    def init_model(self, family, preset, directory, seed):
        return self._call(family, "init_model", preset, directory, seed)

    @hookimpl
    def load_pipeline(self, family, models, config):
        return self._call(family, "load_pipeline", models, config)

    @hookimpl
    def preprocess_inputs(self, family, pipeline, sample, config):
        return self._call(family, "preprocess_inputs", pipeline, sample, config)

    @hookimpl
    def predict_flow(self, family, pipeline, inputs, noisy_latents, sigmas):
        return self._call(family, "predict_flow", pipeline, inputs, noisy_latents, sigmas)

    @hookimpl
    def compute_loss(self, family, pipeline, inputs, config, predict):
        return self._call(family, "compute_loss", pipeline, inputs, config, predict)

    @hookimpl
    def split_state_dict(self, family, weights, config):
        return self._call(family, "split_state_dict", weights, config)

    @hookimpl
    def normalize_lora_state_dict(self, family, state_dict, metadata):
        return self._call(family, "normalize_lora_state_dict", state_dict, metadata)

