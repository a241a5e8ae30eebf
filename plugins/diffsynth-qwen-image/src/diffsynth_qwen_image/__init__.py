"""Qwen-Image (+ Edit) family for diffsynth.

The entry-point module (`qwen-image = "diffsynth_qwen_image:plugin"`): it holds only the family's spec and where each
hook's implementation lives, so importing it (`diffsynth models list`) loads no torch.
"""

from diffsynth.family_plugin import FamilyPlugin

from .spec import FAMILY, NAME

plugin = FamilyPlugin(
    FAMILY,
    {
        "init_model": "diffsynth_qwen_image.tiny:write_preset",
        "load_pipeline": "diffsynth_qwen_image.pipeline:load",
        "preprocess_inputs": "diffsynth_qwen_image.inputs:preprocess",
        "predict_flow": "diffsynth_qwen_image.inputs:predict",
        "split_state_dict": "diffsynth_qwen_image.lora_format:split",
    },
)

__all__ = ["FAMILY", "NAME", "plugin"]
