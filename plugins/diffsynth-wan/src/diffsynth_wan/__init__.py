"""Wan 2.1 / 2.2 video family for diffsynth.

The entry-point module (`wan = "diffsynth_wan:plugin"`): it holds only the family's spec and where each
hook's implementation lives, so importing it (`diffsynth models list`) loads no torch.
"""

from diffsynth.family_plugin import FamilyPlugin

from .spec import FAMILY, NAME

plugin = FamilyPlugin(
    FAMILY,
    {
        "init_model": "diffsynth_wan.tiny:write_preset",
        "load_pipeline": "diffsynth_wan.pipeline:load",
        "preprocess_inputs": "diffsynth_wan.inputs:preprocess",
        "predict_flow": "diffsynth_wan.inputs:predict",
        "split_state_dict": "diffsynth_wan.lora_format:split",
        "normalize_lora_state_dict": "diffsynth_wan.lora_format:normalize",
    },
)

__all__ = ["FAMILY", "NAME", "plugin"]
