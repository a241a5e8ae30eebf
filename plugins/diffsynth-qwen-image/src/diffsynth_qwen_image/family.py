"""The Qwen-Image family class, composed of the methods its modules define (imported on the first
hook call: they load torch)."""

from diffsynth.plugin import Family

from .inputs import Training
from .pipeline import Loading
from .real_configs import Planning
from .sampling import Sampling
from .spec import FAMILY
from .tiny import Presets


class QwenImage(Loading, Training, Planning, Sampling, Presets, Family):
    spec = FAMILY
