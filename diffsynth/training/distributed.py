"""Multi-process details: wrapped modules that still look like the family's module."""

from __future__ import annotations

import torch


def _module_getattr(self: torch.nn.Module, name: str):
    try:
        return torch.nn.Module.__getattr__(self, name)
    except AttributeError:
        return getattr(self.__dict__["_modules"]["module"], name)


def expose_module_attributes(wrapped: torch.nn.Module, module: torch.nn.Module) -> torch.nn.Module:
    """Let a DDP-style wrapper answer attribute look-ups (`.config`, `.dtype`) from the module it
    wraps, so family code reading them works the same on one process and on many."""
    if wrapped is module or "module" not in getattr(wrapped, "_modules", {}):
        return wrapped
    cls = type(wrapped)
    wrapped.__class__ = type(cls.__name__, (cls,), {"__getattr__": _module_getattr})
    return wrapped
