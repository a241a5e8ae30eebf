"""FLUX.2 [klein] + dev family for diffsynth.

The entry point (`flux2 = "diffsynth_flux2:plugin"`) registers the spec alone; the family class
(family.py) is imported on the first hook call, so `diffsynth models list` loads no torch.
LoRA files use Black Forest Labs' original module names, which diffusers' FLUX.2 loader and
ComfyUI read (lora_format.py).
"""

from diffsynth.plugin import LazyFamily

from .spec import FAMILY, NAME


def _family():
    from .family import Flux2

    return Flux2


plugin = LazyFamily(FAMILY, _family)

__all__ = ["FAMILY", "NAME", "plugin"]
