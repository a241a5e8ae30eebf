"""FLUX.1-dev (+ Kontext) family for diffsynth.

The entry point (`flux = "diffsynth_flux:plugin"`) registers the spec alone; the family class
(family.py) is imported on the first hook call, so `diffsynth models list` loads no torch.
LoRA files are written as `transformer.<diffusers module>` + `.alpha`, which diffusers' and
ComfyUI's FLUX loaders both read (lora_format.py, tests/test_lora_export.py).
"""

from diffsynth.plugin import LazyFamily

from .spec import FAMILY, NAME


def _family():
    from .family import Flux

    return Flux


plugin = LazyFamily(FAMILY, _family)

__all__ = ["FAMILY", "NAME", "plugin"]
