"""FLUX.1-dev (+ Kontext) family for diffsynth.

The entry-point module (`flux = "diffsynth_flux:plugin"`): it holds only the family's spec and where each
hook's implementation lives, so importing it (`diffsynth models list`) loads no torch.
"""

from diffsynth.family_plugin import FamilyPlugin

from .spec import FAMILY, NAME

plugin = FamilyPlugin(
    FAMILY,
    {
        "init_model": "diffsynth_flux.tiny:write_preset",
        "load_pipeline": "diffsynth_flux.pipeline:load",
        "preprocess_inputs": "diffsynth_flux.inputs:preprocess",
        "predict_flow": "diffsynth_flux.inputs:predict",
        "split_state_dict": "diffsynth_flux.lora_format:split",
        "normalize_lora_state_dict": "diffsynth_flux.lora_format:normalize",
    },
)

__all__ = ["FAMILY", "NAME", "plugin"]
