"""Everything a family plugin needs, from one module (see docs/plugins.md).

    from diffsynth.plugin import Family, FamilySpec, ComponentSpec, VariantSpec, ...

Import-light: the torch-free names are imported at once; the heavy ones (`build_module`,
`FlowMatchSchedule`, ...) on first use, so a plugin's entry-point module can import this
without loading torch and `diffsynth models list` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from diffsynth.errors import PluginError, UserError
from diffsynth.family import Family, LazyFamily
from diffsynth.hookspecs import hookimpl
from diffsynth.lora_format import LoraKeyFormat
from diffsynth.models.header import CheckpointHeader
from diffsynth.spec import ComponentSpec, ExpertSpec, ExtraInputSpec, FamilyOption, FamilySpec, PresetSpec, VariantSpec
from diffsynth.types import CheckpointGroup, FamilyPipeline, LoraFile, ModelFiles, OutputFile, RunContext, Sample
from diffsynth.types import SampleRequest, SampleResult, TrainedWeights, TrainingInputs

#: name -> module it lives in, imported on first access (they import torch).
_LAZY = {
    "build_module": "diffsynth.models.checkpoints",
    "init_args": "diffsynth.models.checkpoints",
    "load_state_dict": "diffsynth.models.checkpoints",
    "torch_dtype": "diffsynth.models.checkpoints",
    "FlowMatchSchedule": "diffsynth.training.flow_matching",
    "DownloadSettings": "diffsynth.models.sources",
    "resolve_folder": "diffsynth.models.sources",
    "resize_and_crop": "diffsynth.data.media",
    "calibration_images": "diffsynth.models.calibration",
    "empty_module": "diffsynth.plan.meta",
    "generator": "diffsynth.sampling",
    "loras_applied": "diffsynth.sampling",
    "pil_frames": "diffsynth.sampling",
    "generate_each_prompt": "diffsynth.sampling",
    "without_defaults": "diffsynth.sampling",
    "flow_match_scheduler_config": "diffsynth.sampling",
    "write_json": "diffsynth.models.preset_files",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CheckpointGroup", "CheckpointHeader", "ComponentSpec", "ExpertSpec", "ExtraInputSpec", "Family", "FamilyOption",
    "FamilyPipeline", "FamilySpec", "LazyFamily", "LoraFile", "LoraKeyFormat", "ModelFiles", "OutputFile", "PluginError",
    "PresetSpec", "RunContext", "Sample", "SampleRequest", "SampleResult", "TrainedWeights", "TrainingInputs",
    "UserError", "VariantSpec", "hookimpl", *_LAZY,
]  # fmt: skip
