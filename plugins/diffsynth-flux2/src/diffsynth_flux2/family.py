"""The FLUX.2 family class, composed of the methods its modules define (imported on the first
hook call: they load torch)."""

from diffsynth.plugin import Family

from .inputs import Training
from .lora_format import LoraFiles
from .pipeline import Loading
from .real_configs import Planning
from .sampling import Sampling
from .spec import FAMILY
from .tiny import Presets


class Flux2(Loading, Training, Planning, Sampling, Presets, LoraFiles, Family):
    spec = FAMILY
