"""Wan 2.1 / 2.2 family for diffsynth.

The entry point (`wan = "diffsynth_wan:plugin"`) registers the spec alone; the family class
(family.py) is imported on the first hook call, so `diffsynth models list` loads no torch.
LoRA files use the original Wan module names (lora_format.py).
"""

from diffsynth.plugin import LazyFamily

from .spec import FAMILY, NAME


def _family():
    from .family import Wan

    return Wan


plugin = LazyFamily(FAMILY, _family)

__all__ = ["FAMILY", "NAME", "plugin"]
