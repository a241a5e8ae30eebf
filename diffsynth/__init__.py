"""diffsynth: one trainer for every diffusion model family.

The package root stays import-light (no torch) so `diffsynth models list` starts fast.
"""

__version__ = "0.1.0"
