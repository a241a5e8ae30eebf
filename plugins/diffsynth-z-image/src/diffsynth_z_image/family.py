"""The Z-Image family class, composed of the methods its modules define (imported on the first
hook call: they load torch)."""

from diffsynth.plugin import Family

from .pipeline import Loading, Training
from .real_configs import Planning
from .sampling import Sampling
from .spec import FAMILY
from .tiny import Presets


class ZImage(Loading, Training, Planning, Sampling, Presets, Family):
    spec = FAMILY
