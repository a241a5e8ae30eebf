"""`TrainingInputs` <-> one safetensors file, without pickle.

Tensors go into the file; everything else (ints, floats, strings, tuples, None, nested
dataclasses) into a JSON tree in the file's metadata, with tensors referenced by name. A
dataclass is recorded by its import path (`module:QualName`) and, when read back, imported only
from the packages the caller allows (the family's own) and only if it is a dataclass: a cache
file can name no other code to run.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from diffsynth.errors import UserError
from diffsynth.types import TrainingInputs

FORMAT = 1
METADATA_KEY = "diffsynth.cache"


class CacheFormatError(UserError):
    """A cache file that cannot be read back as written (damaged, or not ours)."""


def _encode(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(value, torch.Tensor):
        # own storage, contiguous, on the CPU: safetensors refuses shared or strided views
        tensors[path] = value.detach().to("cpu").contiguous().clone()
        return {"tensor": path}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return {"list": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode(v, tensors, f"{path}.{k}") for k, v in value.items()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {
            "dataclass": f"{cls.__module__}:{cls.__qualname__}",
            "fields": {f.name: _encode(getattr(value, f.name), tensors, f"{path}.{f.name}") for f in dataclasses.fields(value)},
        }
    raise UserError(f"encoder cache: cannot store {path} of type {type(value).__name__} (tensors, numbers, text, tuples, lists, dicts, dataclasses)")


def import_dataclass(path: str, allowed_packages: tuple[str, ...]) -> type:
    """The dataclass `module:QualName`, imported only from `allowed_packages` (top-level names)."""
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname or module_name.split(".")[0] not in allowed_packages:
        raise CacheFormatError(
            f"encoder cache: class {path!r} is not from this family's package ({', '.join(allowed_packages)})"
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise CacheFormatError(f"encoder cache: class {path!r} no longer exists (rebuild the cache)") from None
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise CacheFormatError(f"encoder cache: {path!r} is not a dataclass")
    return obj


def _decode(tree: Any, tensors: dict[str, torch.Tensor], allowed: tuple[str, ...]) -> Any:
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if not isinstance(tree, dict) or len(tree) not in (1, 2):
        raise CacheFormatError(f"encoder cache: unreadable value {str(tree)[:60]!r}")
    if "tensor" in tree:
        if tree["tensor"] not in tensors:
            raise CacheFormatError(f"encoder cache: tensor {tree['tensor']!r} missing from the entry")
        return tensors[tree["tensor"]]
    if "float" in tree:
        return float(tree["float"])
    if "tuple" in tree:
        return tuple(_decode(v, tensors, allowed) for v in tree["tuple"])
    if "list" in tree:
        return [_decode(v, tensors, allowed) for v in tree["list"]]
    if "dict" in tree:
        return {k: _decode(v, tensors, allowed) for k, v in tree["dict"].items()}
    if "dataclass" in tree:
        cls = import_dataclass(tree["dataclass"], allowed)
        values = {k: _decode(v, tensors, allowed) for k, v in tree["fields"].items()}
        names = {f.name for f in dataclasses.fields(cls)}
        if set(values) != names:
            raise CacheFormatError(f"encoder cache: {tree['dataclass']} has other fields now (rebuild the cache)")
        init = {f.name for f in dataclasses.fields(cls) if f.init}
        obj = cls(**{k: v for k, v in values.items() if k in init})
        for k, v in values.items():
            if k not in init:
                object.__setattr__(obj, k, v)
        return obj
    raise CacheFormatError(f"encoder cache: unreadable value {str(tree)[:60]!r}")


def write_entry(path: Path, inputs: TrainingInputs, info: dict[str, Any]) -> None:
    """Write `inputs` (and `info`, plain JSON) to `path` atomically: a temporary file renamed."""
    import os

    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = {
        "latents": _encode(inputs.latents, tensors, "latents"),
        "loss_mask": _encode(inputs.loss_mask, tensors, "loss_mask"),
        "conditioning": _encode(inputs.conditioning, tensors, "conditioning"),
    }
    meta = json.dumps({"format": FORMAT, "inputs": tree, **info}, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata={METADATA_KEY: meta})
    os.replace(tmp, path)


def read_info(path: Path) -> dict[str, Any]:
    """The entry's JSON (header only; no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several kinds for a damaged file
        raise CacheFormatError(f"encoder cache: {path} is damaged ({exc}); delete it and rebuild") from None
    if meta is None:
        raise CacheFormatError(f"encoder cache: {path} is not a diffsynth cache entry")
    info = json.loads(meta)
    if info.get("format") != FORMAT:
        raise CacheFormatError(f"encoder cache: {path} has format {info.get('format')}, expected {FORMAT} (rebuild the cache)")
    return info


def read_entry(path: Path, allowed_packages: tuple[str, ...]) -> TrainingInputs:
    from safetensors.torch import load_file

    info = read_info(path)
    tensors = load_file(str(path))
    tree = info["inputs"]
    return TrainingInputs(
        latents=_decode(tree["latents"], tensors, allowed_packages),
        conditioning=_decode(tree["conditioning"], tensors, allowed_packages),
        loss_mask=_decode(tree["loss_mask"], tensors, allowed_packages),
    )


def inputs_to(inputs: TrainingInputs, device: torch.device) -> TrainingInputs:
    """`inputs` with every tensor (conditioning included, through dataclasses) on `device`."""

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device)
        if isinstance(value, tuple):
            return tuple(move(v) for v in value)
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                object.__setattr__(value, f.name, move(getattr(value, f.name)))
        return value

    return TrainingInputs(move(inputs.latents), move(inputs.conditioning), move(inputs.loss_mask))
