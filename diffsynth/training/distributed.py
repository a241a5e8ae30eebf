"""Multi-process details: wrapped modules that still look like the family's module, and a
per-rank dump of the trained weights for tests."""

from __future__ import annotations

import os
from pathlib import Path

import torch

#: Test hook: each rank writes its trainable tensors to `<dir>/rank-<i>.safetensors` at the end.
RANK_DUMP_ENV = "DIFFSYNTH_RANK_DUMP"


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


def dump_rank_weights(tensors: dict[str, torch.Tensor], rank: int) -> None:
    folder = os.environ.get(RANK_DUMP_ENV)
    if not folder:
        return
    from safetensors.torch import save_file

    Path(folder).mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(Path(folder) / f"rank-{rank}.safetensors"))
