"""The Wan family class, composed of the methods its modules define (imported on the first hook
call: they load torch)."""

from diffsynth.plugin import Family

from .inputs import Inputs
from .lora_format import LoraFormat
from .pipeline import Loading
from .real_configs import Planning
from .sampling import Sampling
from .spec import FAMILY
from .tiny import Presets


class Wan(Loading, Inputs, Planning, Sampling, Presets, LoraFormat, Family):
    spec = FAMILY
