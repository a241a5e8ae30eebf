"""Read a checkpoint's tensor names and shapes without loading any tensor (and without torch).

A safetensors file starts with an 8-byte little-endian length and a JSON header; reading it
costs microseconds even for a 40 GB file. Detectors in family specs run on this header.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from diffsynth.errors import UserError

_MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class CheckpointHeader:
    """Keys and shapes of one checkpoint (all shards of it merged)."""

    files: tuple[Path, ...]
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str] = field(default_factory=dict)

    def has(self, *keys: str) -> bool:
        """True when every key is present."""
        return all(k in self.tensors for k in keys)

    def has_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.tensors)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.tensors[key].shape

    def count_indexed(self, pattern: str) -> int:
        """Number of distinct indices N in keys matching `pattern` with one `(\\d+)` group.

        `count_indexed(r"transformer_blocks\\.(\\d+)\\.")` gives the number of blocks.
        """
        regex = re.compile(pattern)
        found = {int(m.group(1)) for k in self.tensors if (m := regex.match(k))}
        return max(found) + 1 if found else 0


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Return ({key: TensorInfo}, metadata) of one .safetensors file. A file that is not one, or
    is shorter than its header says (a download cut short), is a UserError naming it."""
    try:
        with open(path, "rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) != 8:
                raise UserError(f"{path}: not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", raw_len)
            if length <= 0 or length > _MAX_HEADER_BYTES:
                raise UserError(f"{path}: not a safetensors file (bad header length)")
            raw = fh.read(length)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise UserError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from exc
    if len(raw) < length:
        raise UserError(f"{path}: truncated safetensors file ({size} bytes; its header alone needs {8 + length})")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a safetensors file (header is not JSON)") from exc
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    tensors = {k: _tensor_info(path, k, v) for k, v in header.items()}
    needed = 8 + length + max((v["data_offsets"][1] for v in header.values()), default=0)
    if size < needed:
        raise UserError(f"{path}: truncated safetensors file ({size} bytes, its header describes {needed}); download it again")
    return tensors, metadata


def _tensor_info(path: Path, key: str, entry: object) -> TensorInfo:
    """One header entry, checked: {"dtype": str, "shape": [int...], "data_offsets": [begin, end]}."""
    ok = (
        isinstance(entry, dict)
        and isinstance(entry.get("dtype"), str)
        and isinstance(entry.get("shape"), list)
        and all(isinstance(n, int) and n >= 0 for n in entry["shape"])
        and isinstance(entry.get("data_offsets"), list)
        and len(entry["data_offsets"]) == 2
        and all(isinstance(n, int) and n >= 0 for n in entry["data_offsets"])
    )
    if not ok:
        raise UserError(f"{path}: not a safetensors file (malformed header entry for {key!r})")
    return TensorInfo(tuple(entry["shape"]), entry["dtype"])


def read_torch_header(path: Path) -> dict[str, TensorInfo]:
    """Keys and shapes of a `.pth`/`.bin` state dict, memory-mapped, never unpickling objects."""
    import torch

    state = load_torch_state(path)
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return {
        k: TensorInfo(tuple(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in state.items()
        if isinstance(v, torch.Tensor)
    }


def load_torch_state(path: Path) -> dict:
    """`torch.load(weights_only=True, mmap=True)`: tensors only, never arbitrary pickled objects."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        raise UserError(
            f"{path}: refused: it holds pickled Python objects, not only tensors "
            "(re-save it as a state dict of tensors or as .safetensors)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a loadable .pth/.bin checkpoint ({first[:200]})") from exc


def read_header(files: Iterable[Path]) -> CheckpointHeader:
    """Merge the headers of all shards of one checkpoint."""
    files = tuple(files)
    tensors: dict[str, TensorInfo] = {}
    metadata: dict[str, str] = {}
    for path in files:
        if path.suffix == ".safetensors":
            part, meta = read_safetensors_header(path)
            metadata.update(meta)
        elif path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
            part = read_torch_header(path)
        else:
            raise UserError(
                f"{path}: unsupported checkpoint format (expected .safetensors, .pth or .bin)"
            )
        tensors.update(part)
    return CheckpointHeader(files=files, tensors=tensors, metadata=metadata)
