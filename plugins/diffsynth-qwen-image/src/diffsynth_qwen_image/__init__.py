"""Qwen-Image (+ Edit) family for diffsynth.

The entry point (`qwen-image = "diffsynth_qwen_image:plugin"`) registers the spec alone; the family
class (family.py) is imported on the first hook call, so `diffsynth models list` loads no torch.
LoRA files use the core's default key format (`diffusion_model.<module>` + `.alpha`), which
diffusers' Qwen-Image loader and ComfyUI both read (see tests/test_lora_export.py).
"""

from diffsynth.plugin import LazyFamily

from .spec import FAMILY, NAME


def _family():
    from .family import QwenImage

    return QwenImage


plugin = LazyFamily(FAMILY, _family)

__all__ = ["FAMILY", "NAME", "plugin"]
